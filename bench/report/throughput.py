"""Section 2: throughput against offered load (and against OLLAMA_NUM_PARALLEL when swept)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.recommend import Candidate, is_num_parallel_sweep, num_parallel_of
from bench.records import number_or_none
from bench.report import plotting
from bench.report.data import (RunView, describe_settings, gpu_capacity, load_label, load_series,
                               request_spread, series_settings, throughput_spread)
from bench import numbers as fmt
from bench.report.page import Block, Figure, Note, Section, Table

NUM_PARALLEL = "OLLAMA_NUM_PARALLEL"


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    for kind in ("closed", "open"):
        lines = load_series(views, kind)
        # A cell with no successful request has throughput 0 by definition, not a measurement.
        if lines and any((line.cells["ok"] > 0).any() for line in lines):
            blocks.append(Figure(_against_load(views, kind),
                                 "Top: aggregate output tokens per second of all requests together; shaded: how it "
                                 "varied over time (25th–75th percentile over 8 equal slices of the cell's "
                                 "measurement window) — a spread, not a confidence interval. Bottom: the speed one "
                                 "user sees (a request's output tokens / its generation time), median with the "
                                 "10th–90th percentile of requests shaded. n: successful requests per cell."))
            # No "offer more load" for a setting already ruled out (it spilled to the CPU).
            live = [line for line in lines if not _ruled_out(views[line.run_index], line.cells)]
            blocks.extend(saturation_notes(live, kind, len(views) > 1))
    table = rates_table(views)
    if table is not None:
        blocks.append(table)
    swept = _num_parallel_figure(views)
    if swept is not None:
        blocks.append(Figure(swept, "One line per offered concurrency. Top left: throughput grows while extra slots "
                                    "share each weight read, then flattens. Top right and bottom left: what that costs "
                                    "each user. Red dotted lines: the scenario's SLOs. Red band: the model did not fit "
                                    "in GPU memory (/api/ps size_vram < size). Green band: the recommendation. Bottom "
                                    "right: the loaded model's size per setting in GiB (the part on the GPU, the part "
                                    "spilled to the CPU) against the GPU's memory."))
    if not blocks:
        return None
    return Section("throughput", "Throughput against load",
                   "How much the server delivers as more requests are offered at once.", tuple(blocks))


def _repeat_interval(row: pd.Series) -> str:
    low, high = row.get("output_tps_repeats_ci_lo"), row.get("output_tps_repeats_ci_hi")
    if number_or_none(low) is None or number_or_none(high) is None:
        return fmt.DASH
    return f"{fmt.rate(low)}–{fmt.rate(high)}"


def rates_table(views: list[RunView]) -> Table | None:
    """Per cell: output, input and total tokens/s, the mean requests in flight and, with repeats,
    the run-to-run interval of output tokens/s (what GuideLLM, `vllm bench serve` and AIPerf show)."""
    several = len(views) > 1
    rows = []
    any_repeats = any((pd.to_numeric(v.cells.get("repeats"), errors="coerce") > 1).any()
                      for v in views if "repeats" in v.cells)
    for view in views:
        for cell_id, row in view.cells.iterrows():
            if not row.get("ok", 0):
                continue
            rows.append(((view.label,) if several else ()) + (str(row["label"]),
                        fmt.rate(row.get("output_tps")), fmt.rate(row.get("input_tps")),
                        fmt.rate(row.get("total_tps")), fmt.rate(row.get("inflight_mean")))
                        + ((fmt.integer(row.get("repeats")), _repeat_interval(row)) if any_repeats else ()))
    if not rows:
        return None
    columns = (("run",) if several else ()) + ("cell", "output tok/s", "input tok/s", "total tok/s",
                                               "mean in flight") + (
        ("repeats", "output tok/s, 95% CI over repeats") if any_repeats else ())
    lead = 2 if several else 1
    return Table(columns, tuple(rows), numeric=(False,) * lead + (True,) * (len(columns) - lead),
                 caption="Token throughput per cell: input tok/s counts the server's prompt tokens (cached ones "
                         "included); mean in flight is time-weighted over the measurement window"
                         + ("; the interval is a Student-t interval over the repeats' own throughputs "
                            "(run-to-run noise)" if any_repeats else "") + ".")


def _against_load(views: list[RunView], kind: str) -> plotting.Plot:
    lines = load_series(views, kind)
    names = list(dict.fromkeys(line.name for line in lines))
    figure, (total_ax, user_ax) = plotting.new_figure(2, 1, height_in=3.0, sharex=True)
    spreads = {view.label: (throughput_spread(view), request_spread(view, "user_tps")) for view in views}
    xs: list[float] = []
    counts = {int(n) for line in lines for n in line.cells["ok"] if n > 0}
    same_n = len(counts) == 1
    counts_at: dict[float, list[int]] = {}
    for line in lines:
        style = plotting.series_style(names, line.name, line.run_index, len(views))
        label = plotting.series_label(line.name, line.run_label, len(views))
        x = line.cells["offered_load"].to_numpy(float)
        xs.extend(x)
        total = line.cells["output_tps"].to_numpy(float)
        slices, users = spreads[line.run_label]
        low, high = _band(slices, line.cells.index, total)
        total_ax.plot(x, total, label=label, **style)
        total_ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
        if "output_tps_repeats_ci_lo" in line.cells:  # run-to-run interval, with --repeats
            plotting.interval_bars(total_ax, x, line.cells["output_tps_repeats_ci_lo"].to_numpy(float),
                                   line.cells["output_tps_repeats_ci_hi"].to_numpy(float), str(style["color"]),
                                   center=total)
        for x_value, n in zip(x, line.cells["ok"].to_numpy(int)):
            if n > 0:  # a cell with no successful request is not drawn (the answer section names it)
                counts_at.setdefault(float(x_value), []).append(int(n))
        user = line.cells["user_tps_p50"].to_numpy(float)
        user_ax.plot(x, user, label=label, **style)
        low, high = _band(users, line.cells.index, user)
        user_ax.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)
    total_ax.set_title("Output throughput against offered load"
                       + (f" (n = {counts.pop()} requests per cell)" if same_n else ""))
    total_ax.set_ylabel("output tokens/s (all requests)")
    user_ax.set_title("Per-user speed against offered load")
    user_ax.set_ylabel("tokens/s per request")
    for ax in (total_ax, user_ax):
        ax.set_ylim(bottom=0)
        plotting.headroom(ax)
    plotting.load_axis(user_ax, xs, load_label(kind))
    if not same_n:
        # n per offered load under its tick (a range when the lines differ there): inside the plot a
        # label is struck through by whichever line passes near the bottom.
        plotting.tick_counts(user_ax.xaxis, {x: (min(ns), max(ns)) for x, ns in counts_at.items()})
    total_ax.tick_params(labelbottom=True)
    plotting.legend(total_ax)
    return plotting.render(figure, "Output throughput against offered load",
                           "Line charts: output tokens per second (with spread over time) and per-user speed "
                           "(with spread over requests) against offered load, one line per setting.")


# Throughput that still grows by more than this between the two highest offered loads has not
# levelled off: the run did not find the server's saturation point.
_STILL_RISING = 0.10


def saturation_notes(lines: list[Any], kind: str, several: bool) -> list[Note]:
    """A note per line whose throughput still rose at the highest offered load (no knee found)."""
    rising: list[str] = []
    for line in lines:
        cells = line.cells[line.cells["ok"] > 0]
        if len(cells) < 2:
            continue
        last, before = cells.iloc[-1], cells.iloc[-2]
        if not (before["output_tps"] > 0 and last["output_tps"] > (1 + _STILL_RISING) * before["output_tps"]):
            continue
        unit = "concurrency" if kind == "closed" else "rate"
        name = " · ".join(part for part in ((line.run_label if several else ""), line.name) if part)
        rising.append(f"{name + ' ' if name else ''}{last['output_tps'] / before['output_tps'] - 1:+.0%} from {unit} "
                      f"{before['offered_load']:g} to {last['offered_load']:g}")
    if not rising:
        return []
    return [Note("Throughput still rose at the highest offered load (" + "; ".join(rising) + "). Saturation was "
                 "not reached: offer more load to find where throughput levels off.", "warning")]


def _ruled_out(view: RunView, cells: pd.DataFrame) -> bool:
    """Whether /api/ps showed any of these cells' model partly on the CPU (size_vram < size)."""
    return any(view.analysis.gpu_fit.get(str(cell_id)) is False for cell_id in cells.index)


def _band(spread: pd.DataFrame, cell_ids: pd.Index, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per cell, the value itself where the spread is unknown."""
    low = np.array([spread.at[c, "low"] if c in spread.index else np.nan for c in cell_ids], dtype=float)
    high = np.array([spread.at[c, "high"] if c in spread.index else np.nan for c in cell_ids], dtype=float)
    return np.where(np.isfinite(low), low, fallback), np.where(np.isfinite(high), high, fallback)


def _num_parallel_figure(views: list[RunView]) -> plotting.Plot | None:
    swept = [v for v in views if is_num_parallel_sweep(v.run)]
    if not swept:
        return None
    split = tuple(n for n in series_settings(swept) if n != NUM_PARALLEL) + ("concurrency", "rate_rps")
    split = tuple(dict.fromkeys(split))
    figure, axes = plotting.new_figure(2, 2, height_in=3.3)
    entries: list[tuple[str, int, str, pd.DataFrame]] = []
    for run_index, view in enumerate(views):
        if view not in swept:
            continue
        num_parallel = num_parallel_of(view.run)
        cells = view.cells[view.cells.index.isin(list(num_parallel))].copy()
        cells["num_parallel"] = cells.index.map(num_parallel)
        keys = [describe_settings(row, split) for row in cells.to_dict("records")]
        for key in dict.fromkeys(keys):
            entries.append((key, run_index, view.label,
                            cells[[k == key for k in keys]].sort_values("num_parallel")))
    names = list(dict.fromkeys(e[0] for e in entries))
    panels = (("output_tps", "Output throughput", "output tokens/s (all requests)"),
              ("ttft_p95_s", "TTFT p95", "TTFT p95"), ("tpot_p95_s", "TPOT p95", "TPOT p95"))
    latencies = pd.concat([cells[["ttft_p95_s", "tpot_p95_s"]] for *_, cells in entries])
    units = {column: plotting.time_unit(latencies[column].to_numpy(float)) for column in ("ttft_p95_s", "tpot_p95_s")}
    xs: list[float] = []
    for name, run_index, run_label, cells in entries:
        style = plotting.series_style(names, name, run_index, len(views))
        x = cells["num_parallel"].to_numpy(float)
        xs.extend(x)
        for ax, (column, _, _) in zip(axes, panels):
            scale = units[column][0] if column in units else 1.0
            values = cells[column].to_numpy(float) * scale
            ax.plot(x, values, label=plotting.series_label(name, run_label, len(views)), **style)
            if f"{column[:-2]}_ci_lo_s" in cells:  # a latency p95's bootstrap interval, where it has one
                plotting.interval_bars(ax, x, cells[f"{column[:-2]}_ci_lo_s"].to_numpy(float) * scale,
                                       cells[f"{column[:-2]}_ci_hi_s"].to_numpy(float) * scale,
                                       str(style["color"]), center=values)
    if len(views) == 1:
        _mark_sweep(axes[:3], views[0], units)
    _format_sweep_axes(axes, panels, units, latencies, [x for x in xs if np.isfinite(x)])
    _memory_panel(axes[3], swept[0] if len(swept) == 1 else None, [x for x in xs if np.isfinite(x)])
    plotting.figure_legend(figure, axes[0], columns=6)
    figure.suptitle("Sizing OLLAMA_NUM_PARALLEL: throughput, what it costs in latency, and in memory",
                    fontweight="bold")
    return plotting.render(figure, "Output throughput, latency and memory against OLLAMA_NUM_PARALLEL",
                           "Four charts against NUM_PARALLEL, one line per offered concurrency: output "
                           "tokens per second, TTFT p95 and TPOT p95 with SLOs, CPU spill and the "
                           "recommendation marked; and the model's memory per setting in GiB against the GPU.")


def _format_sweep_axes(axes: list[Any], panels: tuple[tuple[str, str, str], ...],
                       units: dict[str, tuple[float, str]], latencies: pd.DataFrame, xs: list[float]) -> None:
    for ax, (column, title, ylabel) in zip(axes, panels):
        ax.set_title(title)
        ax.set_ylabel(f"{ylabel} ({units[column][1]})" if column in units else ylabel)
        if column in units:  # a latency: log when it spans decades, so the SLO line is not at the floor
            plotting.latency_axis(ax, latencies[column].to_numpy(float))
        else:
            ax.set_ylim(bottom=0)
        plotting.headroom(ax, 0.14)
        plotting.load_axis(ax, xs, "OLLAMA_NUM_PARALLEL (slots)")


def _memory_panel(ax: Any, view: RunView | None, xs: list[float]) -> None:
    """Bars per NUM_PARALLEL: the loaded model's size (/api/ps) in GiB, the part on the GPU, the GPU."""
    ax.set_title("Memory per setting (/api/ps)")
    ax.set_ylabel("GiB")
    candidates = _candidates(view) if view is not None else []
    measured = [c for c in candidates if c.size_bytes]
    if not measured:
        ax.text(0.5, 0.5, "no /api/ps data in this run" if view is not None else "one run at a time",
                ha="center", va="center", transform=ax.transAxes, color="#666666")
        ax.set_xticks([])
        return
    gib = 2**30
    x = np.array([float(c.num_parallel) for c in measured])
    size = np.array([float(c.size_bytes or 0) / gib for c in measured])
    vram = np.array([float(c.size_vram_bytes or 0) / gib for c in measured])
    # Bars of equal visual width on the log2 axis the other panels use.
    widths = x * 0.45
    ax.bar(x, vram, width=widths, color="#1f77b4", label="on the GPU (size_vram)")
    ax.bar(x, size - vram, bottom=vram, width=widths, color="#d62728", hatch="//", alpha=0.6,
           label="on the CPU (size − size_vram)")
    for x_value, total in zip(x, size):
        ax.text(x_value, total, f"{total:.1f}", ha="center", va="bottom", fontsize=8)
    capacity = gpu_capacity(view) if view is not None else None
    top = float(size.max())
    if capacity is not None:
        ax.axhline(capacity[0] / gib, color="#444444", linestyle=":", linewidth=1.2, label=capacity[1])
        top = max(top, capacity[0] / gib)
    ax.set_ylim(0, top * 1.45)  # headroom: the legend sits above the tallest bar
    plotting.load_axis(ax, xs, "OLLAMA_NUM_PARALLEL (slots)")
    ax.legend(loc="upper left", fontsize=7.5, ncols=2)


def _candidates(view: RunView) -> list[Candidate]:
    recommendation = view.analysis.recommendation
    return list(recommendation.candidates) if recommendation is not None else []


# A label over the data: drawn above the lines on a white ground, so no marker strikes it through.
_LABEL_BOX: dict[str, Any] = {"zorder": 5, "bbox": {"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.0}}


def _mark_sweep(axes: list[Any], view: RunView, units: dict[str, tuple[float, str]]) -> None:
    """Shade spilled and recommended NUM_PARALLEL values; draw the SLO thresholds."""
    recommendation = view.analysis.recommendation
    chosen = recommendation.num_parallel if recommendation is not None else None
    spilled = [c.num_parallel for c in _candidates(view) if c.fits_in_gpu is False]
    for ax in axes:
        for value in spilled:
            ax.axvspan(value / 1.25, value * 1.25, color="#d62728", alpha=0.10, linewidth=0)
        if chosen is not None:
            ax.axvspan(chosen / 1.15, chosen * 1.15, color="#2ca02c", alpha=0.18, linewidth=0)
    if spilled:
        axes[0].text(spilled[-1], 0.97, "spills to CPU", ha="center", va="top", fontsize=8, color="#b3261e",
                     rotation=90, transform=axes[0].get_xaxis_transform(), **_LABEL_BOX)
    if chosen is not None:
        axes[0].text(chosen, 0.97, "recommended", ha="center", va="top", fontsize=8, color="#1b5e20",
                     rotation=90, transform=axes[0].get_xaxis_transform(), **_LABEL_BOX)
    slos = {slo.metric: slo.threshold for slo in recommendation.slos} if recommendation is not None else {}
    for ax, column, metric in ((axes[1], "ttft_p95_s", "ttft_p95"), (axes[2], "tpot_p95_s", "tpot_p95")):
        if metric in slos and slos[metric] is not None:
            ax.axhline(float(slos[metric]) * units[column][0], color="#d62728", linestyle=":", linewidth=1.4)
            ax.text(0.01, float(slos[metric]) * units[column][0], f"SLO {metric}", color="#b3261e", fontsize=8,
                    va="bottom", transform=ax.get_yaxis_transform())
