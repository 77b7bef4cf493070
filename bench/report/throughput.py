"""Section 2: throughput against offered load (and against OLLAMA_NUM_PARALLEL when swept)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import plotting
from bench.report.data import RunView, clean, describe_settings, load_label, load_series, series_settings
from bench.report.page import Figure, Section

NUM_PARALLEL = "OLLAMA_NUM_PARALLEL"


def build(views: list[RunView]) -> Section | None:
    blocks = []
    for kind in ("closed", "open"):
        lines = load_series(views, kind)
        # A cell with no successful request has throughput 0 by definition, not a measurement.
        if lines and any((line.cells["ok"] > 0).any() for line in lines):
            blocks.append(Figure(_against_load(views, kind),
                                 "Top: aggregate output tokens per second of all requests together. Bottom: "
                                 "the median speed one user sees (a request's output tokens / its generation time)."))
    swept = _num_parallel_figure(views)
    if swept is not None:
        blocks.append(Figure(swept, "Each line holds the other settings fixed; the best NUM_PARALLEL is where the "
                                    "line flattens out."))
    if not blocks:
        return None
    return Section("throughput", "Throughput against load",
                   "How much the server delivers as more requests are offered at once.", tuple(blocks))


def _against_load(views: list[RunView], kind: str) -> plotting.Plot:
    lines = load_series(views, kind)
    names = list(dict.fromkeys(line.name for line in lines))
    figure, (total_ax, user_ax) = plotting.new_figure(2, 1, height_in=2.9, sharex=True)
    xs: list[float] = []
    for line in lines:
        style = plotting.series_style(names, line.name, line.run_index, len(views))
        label = plotting.series_label(line.name, line.run_label, len(views))
        x = line.cells["offered_load"].to_numpy(float)
        xs.extend(x)
        total_ax.plot(x, line.cells["output_tps"].to_numpy(float), label=label, **style)
        user_ax.plot(x, line.cells["user_tps_p50"].to_numpy(float), label=label, **style)
    total_ax.set_title("Output throughput against offered load")
    total_ax.set_ylabel("output tokens/s (all requests)")
    user_ax.set_ylabel("tokens/s per request (p50)")
    total_ax.set_ylim(bottom=0)
    user_ax.set_ylim(bottom=0)
    plotting.load_axis(user_ax, xs, load_label(kind))
    total_ax.tick_params(labelbottom=True)
    plotting.legend(total_ax)
    return plotting.render(figure, "Output throughput against offered load",
                           "Line chart: output tokens per second against offered load, one line per setting.")


def _num_parallel_figure(views: list[RunView]) -> plotting.Plot | None:
    swept = [v for v in views if NUM_PARALLEL in v.cells and v.cells[NUM_PARALLEL].map(clean).dropna().nunique() > 1]
    if not swept:
        return None
    split = tuple(n for n in series_settings(swept) if n != NUM_PARALLEL) + ("concurrency", "rate_rps")
    split = tuple(dict.fromkeys(split))
    figure, (ax,) = plotting.new_figure(1, 1, height_in=3.8)
    entries: list[tuple[str, int, str, pd.DataFrame]] = []
    for run_index, view in enumerate(views):
        if view not in swept:
            continue
        cells = view.cells[view.cells[NUM_PARALLEL].map(clean).notna()].copy()
        cells["num_parallel"] = pd.to_numeric(cells[NUM_PARALLEL], errors="coerce")
        keys = [describe_settings(row, split) for row in cells.to_dict("records")]
        for key in dict.fromkeys(keys):
            entries.append((key, run_index, view.label,
                            cells[[k == key for k in keys]].sort_values("num_parallel")))
    names = list(dict.fromkeys(e[0] for e in entries))
    xs: list[float] = []
    for name, run_index, run_label, cells in entries:
        style = plotting.series_style(names, name, run_index, len(views))
        x = cells["num_parallel"].to_numpy(float)
        xs.extend(x)
        ax.plot(x, cells["output_tps"].to_numpy(float),
                label=plotting.series_label(name, run_label, len(views)), **style)
    ax.set_title("Output throughput against OLLAMA_NUM_PARALLEL")
    ax.set_ylabel("output tokens/s (all requests)")
    ax.set_ylim(bottom=0)
    plotting.load_axis(ax, [x for x in xs if np.isfinite(x)], "OLLAMA_NUM_PARALLEL (parallel slots per model)")
    plotting.legend(ax)
    return plotting.render(figure, "Output throughput against OLLAMA_NUM_PARALLEL",
                           "Line chart: output tokens per second against NUM_PARALLEL, one line per load.")
