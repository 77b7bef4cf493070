"""Section 3: latency against load, TTFT distributions, the latency/throughput frontier, and on the
native API where TTFT goes (queue wait, model load, prefill)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.report import plotting
from bench.report.data import RunView, load_label, load_series, request_spread
from bench.report.page import Figure, Note, Section

_MAX_CDF_CELLS = 16


def build(views: list[RunView]) -> Section | None:
    if not any(v.measured.get("ttft_s", pd.Series(dtype=float)).notna().any() for v in views):
        return None
    blocks = []
    for kind in ("closed", "open"):
        if load_series(views, kind):
            blocks.append(Figure(_percentiles_against_load(views, kind),
                                 "Solid line: p50 (half the requests were faster). Shaded: the middle 80% of "
                                 "requests (p10–p90). Dashed: p95 (one in twenty was slower)."))
    blocks.append(Figure(_ttft_cdfs(views), "Read across at 0.95 to find a cell's TTFT p95. A curve further "
                                            "left is faster; a long tail to the right means some requests waited."))
    frontier = _frontier(views)
    if frontier is not None:
        blocks.append(Figure(frontier, "Each point is a cell; lines join cells that differ only in load. Up and "
                                       "to the right is more throughput bought with more latency."))
    split = _native_ttft_split(views)
    if split is not None:
        blocks.append(Figure(split, "From Ollama's own timings (v0.30+ meanings): load_duration = waiting in "
                                    "Ollama's scheduler queue + any cold load; prefill = prompt_eval_duration, only "
                                    "the prompt tokens not already in llama-server's prompt cache; slot wait = TTFT "
                                    "− load − prefill (waiting for one of NUM_PARALLEL slots, the first token, the "
                                    "network)."))
    hits = _prefix_cache_note(views)
    if hits is not None:
        blocks.append(hits)
    return Section("latency", "Latency", "Time to first token (TTFT) and time per output token (TPOT) "
                   "of successful measured requests.", tuple(blocks))


def _percentiles_against_load(views: list[RunView], kind: str) -> plotting.Plot:
    lines = load_series(views, kind)
    names = list(dict.fromkeys(line.name for line in lines))
    panels = (("ttft", "TTFT: time to first token"), ("tpot", "TPOT: time per output token"))
    figure, axes = plotting.new_figure(1, 2, height_in=3.9)
    spreads = {(view.label, metric): request_spread(view, f"{metric}_s") for view in views for metric, _ in panels}
    xs: list[float] = []
    for ax, (metric, title) in zip(axes, panels):
        values = pd.concat([line.cells[[f"{metric}_p50_s", f"{metric}_p95_s"]] for line in lines])
        scale, unit = plotting.time_unit(values.to_numpy().ravel())
        for line in lines:
            # Solid for every p50 here: dashes mean p95 in this figure, whatever the series.
            style = {**plotting.series_style(names, line.name, line.run_index, len(views)), "linestyle": "-"}
            x = line.cells["offered_load"].to_numpy(float)
            xs.extend(x)
            p50 = line.cells[f"{metric}_p50_s"].to_numpy(float) * scale
            ax.plot(x, p50, label=plotting.series_label(line.name, line.run_label, len(views)), **style)
            spread = spreads[(line.run_label, metric)]
            low = np.array([spread.at[c, "low"] if c in spread.index else np.nan for c in line.cells.index]) * scale
            high = np.array([spread.at[c, "high"] if c in spread.index else np.nan for c in line.cells.index]) * scale
            ax.fill_between(x, low, high, color=style["color"], alpha=0.13, linewidth=0)
            ax.plot(x, line.cells[f"{metric}_p95_s"].to_numpy(float) * scale, color=style["color"],
                    linestyle=(0, (2, 2)), linewidth=1.1, marker="^", markersize=4, alpha=0.85)
        ax.set_title(title)
        ax.set_ylabel(f"{metric.upper()} ({unit})")
        ax.set_ylim(bottom=0)
        plotting.load_axis(ax, xs, load_label(kind).replace("offered load: ", ""))
    from matplotlib.lines import Line2D

    key = [Line2D([], [], color="#555555", linewidth=1.6, label="p50"),
           Line2D([], [], color="#555555", linestyle=(0, (2, 2)), marker="^", markersize=4, label="p95")]
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles + key, labels + ["p50 (solid)", "p95 (dashed)"], loc="outside lower center",
                  ncols=min(6, len(handles) + 2))
    figure.suptitle("Latency against offered load (p50, p10–p90 band, p95)", fontweight="bold")
    return plotting.render(figure, "Latency percentiles against offered load",
                           "Two line charts: TTFT and TPOT against offered load, median with the p10–p90 band "
                           "shaded and p95 dashed.")


def _ttft_cdfs(views: list[RunView]) -> plotting.Plot:
    shown = views[:4]
    figure, axes = plotting.new_figure(len(shown), 1, height_in=3.2, sharex=True)
    every_ttft = np.concatenate([v.measured.get("ttft_s", pd.Series(dtype=float)).to_numpy(float) for v in shown])
    scale, unit = plotting.time_unit(every_ttft)
    finite = every_ttft[np.isfinite(every_ttft) & (every_ttft > 0)]
    # One cold load can be 10x the warm TTFT: a log axis keeps the warm curves apart.
    log_x = len(finite) > 0 and float(finite.max()) / float(finite.min()) >= 10
    for ax, view in zip(axes, shown):
        if log_x:
            ax.set_xscale("log")
            plotting.plain_tick_labels(ax.xaxis)
        ok = view.measured[view.measured["error_class"].isna()] if len(view.measured) else view.measured
        cell_ids = [cid for cid in view.cells.index][:_MAX_CDF_CELLS]
        colors = _cell_colors(len(cell_ids))
        for color, cell_id in zip(colors, cell_ids):
            ttft = np.sort(ok.loc[ok["cell_id"] == cell_id, "ttft_s"].dropna().to_numpy(float)) * scale
            if not len(ttft):
                continue
            share = np.arange(1, len(ttft) + 1) / len(ttft)
            ax.step(ttft, share, where="post", color=color, linewidth=1.6,
                    label=plotting.shorten(str(view.cells.at[cell_id, "label"]), 40))
        ax.axhline(0.95, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("share of requests")
        ax.set_title(f"TTFT distribution per cell{' — ' + view.label if len(views) > 1 else ''}")
        ax.set_xlabel(f"TTFT ({unit})")
        ax.tick_params(labelbottom=True)
        plotting.legend(ax)
    return plotting.render(figure, "TTFT distribution per cell",
                           "Cumulative distribution of time to first token, one curve per cell.")


def _cell_colors(count: int) -> list[str]:
    if count <= len(plotting.PALETTE):
        return list(plotting.PALETTE[:count])
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


def _frontier(views: list[RunView]) -> plotting.Plot | None:
    lines = load_series(views, "closed") + load_series(views, "open")
    lines = [line for line in lines if line.cells["output_tps"].notna().any()]
    if not lines:
        return None
    names = list(dict.fromkeys(line.name for line in lines))
    figure, (ttft_ax, user_ax) = plotting.new_figure(1, 2, height_in=3.6)
    scale, unit = plotting.time_unit(np.concatenate([line.cells["ttft_p95_s"].to_numpy(float) for line in lines]))
    for line in lines:
        style = plotting.series_style(names, line.name, line.run_index, len(views))
        label = plotting.series_label(line.name, line.run_label, len(views))
        throughput = line.cells["output_tps"].to_numpy(float)
        ttft_ax.plot(throughput, line.cells["ttft_p95_s"].to_numpy(float) * scale, label=label, **style)
        user_ax.plot(throughput, line.cells["user_tps_p50"].to_numpy(float), label=label, **style)
    ttft_ax.set_title("TTFT p95 against throughput")
    ttft_ax.set_ylabel(f"TTFT p95 ({unit})")
    user_ax.set_title("Per-user speed against throughput")
    user_ax.set_ylabel("tokens/s per request (p50)")
    for ax in (ttft_ax, user_ax):
        ax.set_xlabel("output tokens/s (all requests)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    plotting.figure_legend(figure, ttft_ax)
    return plotting.render(figure, "Latency/throughput frontier",
                           "Scatter with lines: TTFT p95 and per-user speed against output throughput.")


def _native_ttft_split(views: list[RunView]) -> plotting.Plot | None:
    rows = []
    for view in views:
        measured = view.measured
        if measured.empty or "surface" not in measured:
            continue
        native = measured[(measured["surface"] == "native") & measured["error_class"].isna()]
        for cell_id, group in native.groupby("cell_id", sort=False):
            if group["load_s"].notna().any() or group["prefill_s"].notna().any():
                label = str(view.cells.at[cell_id, "label"]) if cell_id in view.cells.index else str(cell_id)
                rows.append({"label": (f"{view.label} · " if len(views) > 1 else "") + label,
                             "queue": group["queue_wait_s"].mean(), "load": group["load_s"].mean(),
                             "prefill": group["prefill_s"].mean(), "ttft": group["ttft_s"].mean()})
    if not rows:
        return None
    frame = pd.DataFrame(rows).fillna(0.0)
    scale, unit = plotting.time_unit(frame["ttft"].to_numpy(float))
    figure, (ax,) = plotting.new_figure(1, 1, height_in=plotting.bar_height_in(len(frame)) + 0.6)
    y = np.arange(len(frame))
    left = np.zeros(len(frame))
    for column, name, color in (("queue", "slot wait (TTFT − load − prefill)", "#9ecae1"),
                                ("load", "scheduler queue + load (load_duration)", "#d62728"),
                                ("prefill", "prefill of uncached tokens", "#2ca02c")):
        widths = frame[column].to_numpy(float) * scale
        ax.barh(y, widths, left=left, color=color, label=name, height=0.65)
        left += widths
    ax.scatter(frame["ttft"].to_numpy(float) * scale, y, marker="|", s=220, color="black", label="mean TTFT",
               zorder=3)
    ax.set_yticks(y, [plotting.shorten(label, 40) for label in frame["label"]])
    ax.invert_yaxis()
    ax.set_xlabel(f"mean time ({unit})")
    ax.set_title("Where TTFT goes (native API, mean per cell)")
    plotting.figure_legend(figure, ax, columns=4)
    return plotting.render(figure, "Where TTFT goes on the native API",
                           "Stacked bars: mean queue wait, model load and prefill per native cell.")


def _prefix_cache_note(views: list[RunView]) -> Note | None:
    """Say where llama-server's prompt cache made prefill small (prefix_cache_hit, bench.analysis.metrics)."""
    parts = []
    for view in views:
        measured = view.measured
        if measured.empty or "prefix_cache_hit" not in measured:
            continue
        hits = measured[measured["prefix_cache_hit"].fillna(False).astype(bool)]
        if hits.empty:
            continue
        by_cell = hits.groupby("cell_id").size()
        names = [str(view.cells.at[c, "label"]) if c in view.cells.index else str(c) for c in by_cell.index]
        parts.append(f"{(view.label + ': ') if len(views) > 1 else ''}{len(hits)} request(s) in "
                     f"{', '.join(plotting.shorten(n, 30) for n in names[:6])}{' …' if len(names) > 6 else ''}")
    if not parts:
        return None
    return Note("Prompt-cache hits: " + "; ".join(parts) + " prefilled more than 4× faster per prompt token than "
                "their cell's median — their prompt shared a prefix with what a slot still held, so prefill was "
                "mostly skipped (prompt_eval_count still counts the cached tokens).")
