"""Section 5: keep_alive — cold against warm TTFT, and load_duration over the run (cold loads marked)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench import numbers as fmt
from bench.report import plotting
from bench.report.data import RunView
from bench.report.page import Block, Figure, Note, Section, Table


def _studied(view: RunView) -> bool:
    """A keep_alive study (some cell sets keep_alive) or a run where measured requests paid loads."""
    if any(settings.keep_alive is not None for settings in view.manifest.cell_settings().values()):
        return True
    measured = view.measured
    return bool(len(measured) and "cold" in measured and measured["cold"].astype(bool).any())


def build(views: list[RunView]) -> Section | None:
    relevant = [v for v in views if _studied(v)]
    if not relevant:
        return None
    blocks: list[Block] = []
    for view in relevant:
        timeline, study, problem = _analyse(view)
        if problem:
            blocks.append(Note(problem, "warning"))
        if timeline is not None and len(timeline):
            blocks.append(Figure(_timeline_figure(view, timeline, len(views) > 1),
                                 "Red crosses paid a model load (cold); grey dots found the model loaded (warm)."))
        if study is not None and study.cells:
            figure = _cold_warm_figure(view, study, len(views) > 1)
            if figure is not None:
                blocks.append(Figure(figure))
            blocks.append(_study_table(view, study, len(views) > 1))
    if not blocks:
        return None
    return Section("keepalive", "keep_alive: cold and warm starts",
                   "A request is cold when the model had to be loaded for it (native API: load_duration "
                   "> 100 ms; OpenAI API: a TTFT jump or /api/ps showing the model unloaded before it).",
                   tuple(blocks))


def _analyse(view: RunView) -> tuple[pd.DataFrame | None, Any, str]:
    try:
        from bench.analysis.server_studies import keep_alive_study, request_timeline

        return request_timeline(view.run), keep_alive_study(view.run), ""
    except Exception as error:  # noqa: BLE001 - fall back to load_duration alone
        answered = view.requests
        if len(answered):
            answered = answered[answered["error_class"].isna() & answered["sent_s"].notna()]
        return answered, None, f"keep_alive analysis unavailable ({type(error).__name__}: {error}); " \
                               "cold = load_duration > 100 ms only"


def _timeline_figure(view: RunView, timeline: pd.DataFrame, several: bool) -> plotting.Plot:
    figure, (ttft_ax, load_ax) = plotting.new_figure(2, 1, height_in=2.8, sharex=True)
    cold = timeline["cold"].fillna(False).astype(bool).to_numpy()
    sent = timeline["sent_s"].to_numpy(float)
    ttft = timeline["ttft_s"].to_numpy(float)
    load = timeline["load_s"].to_numpy(float)
    scale, unit = plotting.time_unit(ttft)
    ttft_ax.scatter(sent[~cold], ttft[~cold] * scale, s=12, color="#7f7f7f", label="warm")
    ttft_ax.scatter(sent[cold], ttft[cold] * scale, s=40, color="#d62728", marker="x", label="cold (model load)")
    ttft_ax.set_ylabel(f"TTFT ({unit})")
    ttft_ax.set_title(f"TTFT and load_duration over the run{' — ' + view.label if several else ''}")
    ttft_ax.set_ylim(bottom=0)
    plotting.legend(ttft_ax)
    has_load = np.isfinite(load)
    load_scale, load_unit = plotting.time_unit(load[has_load]) if has_load.any() else (1000.0, "ms")
    load_ax.scatter(sent[has_load & ~cold], load[has_load & ~cold] * load_scale, s=12, color="#7f7f7f")
    load_ax.scatter(sent[has_load & cold], load[has_load & cold] * load_scale, s=40, color="#d62728", marker="x")
    for start in sent[cold]:
        load_ax.axvline(start, color="#d62728", alpha=0.15, linewidth=1)
    load_ax.set_ylabel(f"load_duration ({load_unit})")
    load_ax.set_xlabel("time since the run started (s)")
    load_ax.set_ylim(bottom=0)
    if not has_load.any():
        load_ax.text(0.5, 0.5, "no load_duration: the OpenAI API does not report it", ha="center",
                     va="center", transform=load_ax.transAxes, color="#5b6475")
    return plotting.render(figure, "TTFT and load_duration over time",
                           "Scatter over time: TTFT and load_duration of each request, cold loads marked.")


def _cold_warm_figure(view: RunView, study: Any, several: bool) -> plotting.Plot | None:
    cells = [c for c in study.cells if np.isfinite(c.cold_ttft_p50_s) or np.isfinite(c.warm_ttft_p50_s)]
    if not cells:
        return None
    labels = view.cells["label"].to_dict()
    figure, (ax,) = plotting.new_figure(1, 1, height_in=plotting.bar_height_in(2 * len(cells)))
    values = np.array([[c.cold_ttft_p50_s, c.warm_ttft_p50_s] for c in cells], dtype=float)
    scale, unit = plotting.time_unit(values.ravel())
    y = np.arange(len(cells))
    ax.barh(y - 0.2, np.nan_to_num(values[:, 0]) * scale, height=0.38, color="#d62728", label="cold p50")
    ax.barh(y + 0.2, np.nan_to_num(values[:, 1]) * scale, height=0.38, color="#7f7f7f", label="warm p50")
    ax.set_yticks(y, [plotting.shorten(str(labels.get(c.cell_id, c.cell_id)), 40) for c in cells])
    ax.invert_yaxis()
    ax.set_xlabel(f"TTFT median ({unit})")
    ax.set_title(f"Cold against warm TTFT per cell{' — ' + view.label if several else ''}")
    ax.legend(loc="best")
    return plotting.render(figure, "Cold against warm TTFT",
                           "Bars: median TTFT of cold and of warm requests per cell.")


def _study_table(view: RunView, study: Any, several: bool) -> Table:
    labels = view.cells["label"].to_dict()
    rows = tuple((str(labels.get(c.cell_id, c.cell_id)), c.surface, fmt.text(c.keep_alive_sent),
                  c.server_keep_alive, fmt.integer(c.requests), fmt.integer(c.cold_requests),
                  fmt.integer(c.expected_cold_requests), fmt.seconds(c.cold_ttft_p50_s),
                  fmt.seconds(c.warm_ttft_p50_s), c.verdict) for c in study.cells)
    caption = (f"Cold penalty (median cold − median warm TTFT): {fmt.seconds(study.cold_penalty_s)}"
               + (f" — {view.label}" if several else ""))
    return Table(("cell", "surface", "keep_alive sent", "server keep_alive", "requests", "cold",
                  "expected cold", "cold TTFT p50", "warm TTFT p50", "verdict"), rows, caption=caption,
                 numeric=(False, False, False, False, True, True, True, True, True, False))
