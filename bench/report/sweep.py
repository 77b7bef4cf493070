"""Section: saturation sweep — achieved against offered rate, TTFT against rate, the answer."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.analysis.sweep import KNEE_TTFT_FACTOR, SweepResult
from bench import numbers as fmt
from bench.report import plotting
from bench.report.data import RunView
from bench.report.page import Block, Figure, Note, Section, Table


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    for view in views:
        for result in view.analysis.sweeps:
            prefix = f"{view.label}: " if len(views) > 1 else ""
            blocks.append(Note(prefix + " · ".join(result.lines()), "answer"))
            blocks.append(Figure(_figure(result), "Left: what the server delivered against what was "
                                 "offered (the dashed diagonal is keeping up). Right: TTFT p50 and p95 "
                                 "per step. Dotted lines: capacity, knee and the highest load within "
                                 "the SLOs."))
            blocks.append(_table(result))
    if not blocks:
        return None
    return Section("sweep", "Saturation sweep",
                   "A synchronous step (one request at a time), a throughput step (many in flight), "
                   "then constant rates in between. Capacity: the most requests/s any step achieved. "
                   f"Knee: the highest rate whose median TTFT stayed within {KNEE_TTFT_FACTOR:g}× the "
                   "synchronous step's. With SLOs, the highest rate whose cell met them.",
                   tuple(blocks))


def _figure(result: SweepResult) -> plotting.Plot:
    figure, (rate_ax, ttft_ax) = plotting.new_figure(1, 2, height_in=3.4)
    measured = [s for s in result.steps if s.achieved_rps is not None]
    # The throughput step is closed loop (many in flight, no offered rate): drawn apart.
    steps = [s for s in measured if s.step != "throughput"]
    closed = [s for s in measured if s.step == "throughput"]
    offered = np.array([s.offered_rps if s.offered_rps is not None else s.achieved_rps for s in steps], float)
    achieved = np.array([s.achieved_rps for s in steps], float)
    order = np.argsort(offered)
    rate_ax.plot(offered[order], achieved[order], marker="o", color=plotting.PALETTE[0], label="achieved")
    top = float(np.nanmax(np.concatenate([offered, achieved]))) if len(steps) else 1.0
    rate_ax.plot([0, top], [0, top], linestyle="--", color="#999999", linewidth=1, label="offered")
    scale, unit = plotting.time_unit([s.ttft_p95_s or np.nan for s in measured])
    for name, color in (("ttft_p50_s", plotting.PALETTE[0]), ("ttft_p95_s", plotting.PALETTE[1])):
        values = np.array([getattr(s, name) if getattr(s, name) is not None else np.nan for s in steps], float)
        ttft_ax.plot(offered[order], values[order] * scale, marker="o", color=color,
                     label=name.removesuffix("_s").replace("_", " "))
    for step in closed:
        if step.achieved_rps is None:
            continue  # a step with no measured request has no point to draw
        rate_ax.plot([step.achieved_rps], [step.achieved_rps], marker="X", markersize=9, linestyle="none",
                     color=plotting.PALETTE[3], label="throughput step (closed loop)")
        if step.ttft_p95_s is not None:
            ttft_ax.plot([step.achieved_rps], [step.ttft_p95_s * scale], marker="X", markersize=9,
                         linestyle="none", color=plotting.PALETTE[3], label="throughput step p95")
    for value, label, color in ((result.capacity_rps, "capacity", "#2ca02c"),
                                (result.knee_rps, "knee", "#9467bd"),
                                (result.slo_rps, "within SLOs", "#d62728")):
        if value is not None:
            for ax in (rate_ax, ttft_ax):
                ax.axvline(value, linestyle=":", color=color, label=label)
    rate_ax.set_title("Achieved against offered rate")
    rate_ax.set_xlabel("offered requests/s")
    rate_ax.set_ylabel("successful requests/s")
    ttft_ax.set_title("TTFT by step")
    ttft_ax.set_xlabel("offered requests/s")
    ttft_ax.set_ylabel(f"TTFT ({unit})")
    ttft_ax.set_yscale("log")
    plotting.plain_tick_labels(ttft_ax.yaxis)
    rate_ax.set_ylim(bottom=0)
    rate_ax.legend(loc="upper left")
    ttft_ax.legend(loc="upper left")
    return plotting.render(figure, "Saturation sweep",
                           "Achieved against offered requests per second, and TTFT per sweep step.")


def _table(result: SweepResult) -> Table:
    rows = tuple((s.step, fmt.rate(s.offered_rps), fmt.rate(s.achieved_rps), fmt.rate(s.output_tps),
                  fmt.seconds(s.ttft_p50_s), fmt.seconds(s.ttft_p95_s), str(s.failed),
                  "; ".join(s.slo_failures) or ("met" if result.has_slos else "–"))
                 for s in result.steps)
    return Table(("step", "offered req/s", "achieved req/s", "output tok/s", "TTFT p50", "TTFT p95",
                  "failed", "SLOs"), rows, "Sweep steps (skipped steps have no numbers)",
                 numeric=(False, True, True, True, True, True, True, False))
