"""Section: the run over its own time — throughput, requests in flight, TTFT, errors and the memory
the server reports, on one clock with each cell's span marked (k6's dashboard, Locust's charts).

One number per cell hides a ramp, a stall, a burst of 503s or a model reload in the middle of a
cell; a timeline shows them, and where one cell ended and the next began.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator, NullFormatter

from bench.analysis.recommend import scenario_slos
from bench.errors import BenchError
from bench.report import plotting
from bench.report.data import RunView, shared_time_range
from bench.report.page import Block, Figure, Section

GIB = 2**30
# Enough bins to show a stall of a few percent of the run, few enough that each holds tokens.
_BINS = 120
# More TTFT points than this are thinned (seeded) so a soak's page stays small; the caption says so.
_MAX_POINTS = 4000


@dataclass(frozen=True)
class _Span:
    number: int  # the cell's position in the run (the headline table's order), 1-based
    start_s: float
    end_s: float


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    xlim = shared_time_range(views)  # a comparison: every run on one time axis
    for view in views:
        if view.requests.empty or "sent_s" not in view.requests:
            continue
        times = pd.to_numeric(view.requests["sent_s"], errors="coerce")
        if not times.notna().any():
            continue
        suffix = f" — {view.label}" if len(views) > 1 else ""
        plot, thinned = _timeline(view, suffix, xlim)
        blocks.append(Figure(plot, _caption(view, thinned)))
    if not blocks:
        return None
    return Section("timeline", "Over the run's time",
                   "What each cell did from its first request to its last: a stall, a ramp, a burst of "
                   "errors or a reload shows here and not in a cell's averages.", tuple(blocks))


def _caption(view: RunView, thinned: int) -> str:
    memory = (" Bottom: the memory the server itself reports for its loaded models (/api/ps size and "
              "size_vram) — the server's figure, not a measurement by bench; on hosts without NVML "
              "(Apple Silicon, AMD) it is the memory answer there is." if _has_ps(view) else "")
    thin = f" TTFT shows {_MAX_POINTS} of {thinned} requests (a seeded sample)." if thinned else ""
    return ("Shaded bands: the cells, numbered in the run's order (the headline table's rows); warmup "
            "requests included. Output tokens/s counts each streamed chunk's tokens in the bin it arrived "
            "in; in flight counts requests between send and end; TTFT is one dot per successful request "
            "at its first token; errors and 503 rejections per second at their end (a panel only when there were any)." + memory + thin)


def _has_ps(view: RunView) -> bool:
    ps = view.run.ps
    return ps is not None and len(ps) > 0 and "size_bytes" in ps and ps["size_bytes"].notna().any()


def cell_spans(view: RunView) -> list[_Span]:
    """Each cell's first send to last end, numbered in the run's cell order."""
    requests = view.requests
    spans = []
    for number, cell_id in enumerate(view.cells.index, start=1):
        cell = requests[requests["cell_id"] == cell_id]
        start, end = pd.to_numeric(cell["sent_s"], errors="coerce").min(), pd.to_numeric(cell["end_s"], errors="coerce").max()
        if math.isfinite(start) and math.isfinite(end) and end > start:
            spans.append(_Span(number, float(start), float(end)))
    return spans


def _edges(requests: pd.DataFrame) -> np.ndarray:
    start = float(pd.to_numeric(requests["sent_s"], errors="coerce").min())
    end = float(np.nanmax(pd.to_numeric(requests["end_s"], errors="coerce").to_numpy(float), initial=start + 1.0))
    return np.linspace(start, max(end, start + 1e-3), _BINS + 1)


def output_rate(requests: pd.DataFrame, edges: np.ndarray) -> np.ndarray:
    """Output tokens per second in each bin: a chunk carries output tokens / chunks of its request."""
    tokens = np.zeros(len(edges) - 1)
    for chunks, count in zip(requests["chunk_times_s"], requests["output_tokens_used"]):
        times = np.asarray(chunks if chunks is not None else [], dtype=float)
        if len(times) and np.isfinite(count):
            tokens += np.histogram(times, bins=edges)[0] * (float(count) / len(times))
    return tokens / np.diff(edges)


def in_flight(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(times, requests in flight from that time on): a step function from sends and ends."""
    sent = pd.to_numeric(requests["sent_s"], errors="coerce").to_numpy(float)
    end = pd.to_numeric(requests["end_s"], errors="coerce").to_numpy(float)
    keep = np.isfinite(sent) & np.isfinite(end)
    times = np.concatenate([sent[keep], end[keep]])
    steps = np.concatenate([np.ones(keep.sum()), -np.ones(keep.sum())])
    order = np.lexsort((steps, times))  # at equal times an end (-1) before a send: no false peak
    return times[order], np.cumsum(steps[order])


def _failures(requests: pd.DataFrame, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(errors per second, rejections per second) per bin, at each failed request's end."""
    end = pd.to_numeric(requests["end_s"], errors="coerce").to_numpy(float)
    kind = requests["error_class"] if "error_class" in requests else pd.Series(None, index=requests.index)
    rejected = (kind == "rejected").to_numpy()
    failed = kind.notna().to_numpy() & ~rejected
    width = np.diff(edges)
    return (np.histogram(end[failed & np.isfinite(end)], bins=edges)[0] / width,
            np.histogram(end[rejected & np.isfinite(end)], bins=edges)[0] / width)


def _ttft_points(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    ok = requests[requests["error_class"].isna()] if "error_class" in requests else requests
    at = pd.to_numeric(ok["first_token_s"], errors="coerce").to_numpy(float)
    ttft = ok["ttft_s"].to_numpy(float)
    keep = np.isfinite(at) & np.isfinite(ttft) & (ttft > 0)
    at, ttft = at[keep], ttft[keep]
    if len(at) <= _MAX_POINTS:
        return at, ttft, 0
    chosen = np.sort(np.random.default_rng(0).choice(len(at), _MAX_POINTS, replace=False))
    return at[chosen], ttft[chosen], len(at)


def _timeline(view: RunView, suffix: str, xlim: tuple[float, float] | None = None) -> tuple[plotting.Plot, int]:
    requests = view.requests
    edges = _edges(requests)
    errors, rejected = _failures(requests, edges)
    failed = bool(errors.any() or rejected.any())
    panels = ["tokens", "flight", "ttft"] + (["failures"] if failed else []) + (["memory"] if _has_ps(view) else [])
    figure, axes = plotting.new_figure(len(panels), 1, height_in=1.55, sharex=True)
    by_name = dict(zip(panels, axes))
    middles = (edges[:-1] + edges[1:]) / 2
    by_name["tokens"].plot(middles, output_rate(requests, edges), color=plotting.PALETTE[0], linewidth=1.3)
    by_name["tokens"].set_ylabel("output tok/s")
    times, flying = in_flight(requests)
    by_name["flight"].step(times, flying, where="post", color=plotting.PALETTE[4], linewidth=1.1)
    by_name["flight"].set_ylabel("in flight")
    by_name["flight"].yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    thinned = _ttft_panel(by_name["ttft"], view, requests)
    if failed:
        _failure_panel(by_name["failures"], errors, rejected, edges)
    if "memory" in by_name:
        _ps_panel(by_name["memory"], view)
    for name, ax in by_name.items():
        if name != "ttft":
            ax.set_ylim(bottom=0)
        plotting.headroom(ax, 0.12)
    _shade_cells(axes, cell_spans(view))
    axes[-1].set_xlabel("time since the run started (s)")
    if xlim is not None:
        axes[-1].set_xlim(*xlim)  # sharex: every panel
    axes[0].set_title(f"The run over time, cell by cell{suffix}" + ("" if failed else " (no errors or rejections)"),
                      pad=14)  # room for the cell numbers
    return plotting.render(figure, "The run over time", "Stacked time series over the whole run: output tokens "
                           "per second, requests in flight, TTFT per request"
                           + (", failures per second" if failed else "")
                           + (", and the server-reported model memory" if "memory" in by_name else "")
                           + "; cells shaded and numbered."), thinned


def _ttft_panel(ax: Axes, view: RunView, requests: pd.DataFrame) -> int:
    at, ttft, thinned = _ttft_points(requests)
    scale, unit = plotting.time_unit(ttft)
    ax.plot(at, ttft * scale, linestyle="none", marker="o", markersize=2.2, alpha=0.55, color=plotting.PALETTE[2])
    ax.set_ylabel(f"TTFT ({unit})")
    if len(ttft) and float(ttft.max()) / float(ttft.min()) >= 10:
        ax.set_yscale("log")  # one cold load at 10x the warm TTFT would flatten every other dot
        plotting.plain_tick_labels(ax.yaxis)
        ax.yaxis.set_minor_formatter(NullFormatter())  # a short panel: 10, 100, 1000 only
    try:
        slos = {slo.metric: slo.threshold for slo in scenario_slos(view.manifest)}
    except BenchError:
        slos = {}
    for metric in ("ttft_p95", "ttft_p99", "ttft_p50"):
        if metric in slos:
            ax.axhline(float(slos[metric]) * scale, color="#d62728", linestyle=":", linewidth=1.2)
            ax.annotate(f"SLO {metric}", (0.995, float(slos[metric]) * scale), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=7.5, color="#b3261e", zorder=5,
                        bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.5})
            break
    return thinned


def _failure_panel(ax: Axes, errors: np.ndarray, rejected: np.ndarray, edges: np.ndarray) -> None:
    ax.set_ylabel("failed /s")
    # Filled steps, not bars: one path per series keeps the page small (a bar is an element each).
    ax.stairs(errors + rejected, edges, fill=True, color=plotting.PALETTE[1], alpha=0.8, label="503 rejected")
    ax.stairs(errors, edges, fill=True, color=plotting.PALETTE[3], label="errors")
    ax.legend(loc="upper left", fontsize=7.5, ncols=2)


def _ps_panel(ax: Axes, view: RunView) -> None:
    ps = view.run.ps
    if ps is None:
        return
    polls = ps.groupby("t_s")[["size_bytes", "size_vram_bytes"]].sum(min_count=1).fillna(0.0).sort_index()
    ax.step(polls.index, polls["size_bytes"] / GIB, where="post", color=plotting.PALETTE[5],
            label="size (server-reported)")
    ax.step(polls.index, polls["size_vram_bytes"] / GIB, where="post", color=plotting.PALETTE[0],
            linestyle="--", label="size_vram (server-reported)")
    ax.set_ylabel("GiB (/api/ps)")
    ax.legend(loc="lower right", fontsize=7.5, ncols=2)


def _shade_cells(axes: list[Axes], spans: list[_Span]) -> None:
    if not spans:
        return
    total = max(s.end_s for s in spans) - min(s.start_s for s in spans)
    for index, span in enumerate(spans):
        for ax in axes:
            ax.axvspan(span.start_s, span.end_s, color="#888888", alpha=0.10 if index % 2 == 0 else 0.04,
                       linewidth=0, zorder=0)
        # A number only where it fits: a cell narrower than 2% of the run stays unlabelled.
        if total > 0 and (span.end_s - span.start_s) / total >= 0.02:
            axes[0].annotate(str(span.number), ((span.start_s + span.end_s) / 2, 1.0),
                             xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7,
                             color="#444444")
