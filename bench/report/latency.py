"""Section 3: latency against load, TTFT distributions, the latency/throughput frontier, and on the
native API where TTFT goes (queue wait, model load, prefill)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.report import plotting
from bench.report.data import RunView, describe_settings, load_label, load_series, request_spread, series_settings
from bench.report.page import Block, Figure, Note, Section

_MAX_CDF_PANELS = 12


def build(views: list[RunView]) -> Section | None:
    if not any(v.measured.get("ttft_s", pd.Series(dtype=float)).notna().any() for v in views):
        return None
    blocks: list[Block] = []
    for kind in ("closed", "open"):
        if load_series(views, kind):
            blocks.append(Figure(_percentiles_against_load(views, kind),
                                 "Line: p50 (half the requests were faster). Shaded: the middle 80% of "
                                 "requests (p10–p90). Triangles: p95 (one in twenty was slower), with a bar for its "
                                 "95% bootstrap interval where the cell had the 40 successful requests one needs; "
                                 "with fewer a p95 is close to its slowest request and gets no bar. A latency "
                                 "axis spanning ten times or more is logarithmic."))
    blocks.append(Figure(_ttft_cdfs(views), "Read across at 0.95 to find a cell's TTFT p95. A curve further "
                                            "left is faster; a long tail to the right means some requests waited."))
    frontier = _frontier(views)
    if frontier is not None:
        blocks.append(Figure(frontier, "Each point is a cell; lines join cells that differ only in load. Up and "
                                       "to the right is more throughput bought with more latency."))
    split = _native_ttft_split(views)
    if split is not None:
        blocks.append(Figure(split, "From Ollama's own timings (means per cell, v0.30+ meanings). load_duration is "
                                    "the time the scheduler took to hand the request a runner: waiting in Ollama's "
                                    "scheduler queue plus any cold load. prefill = prompt_eval_duration, only the "
                                    "prompt tokens not already in llama-server's prompt cache. The first token also "
                                    "needs one decode step (estimated by the cell's TPOT). The rest of TTFT is waiting "
                                    "for one of NUM_PARALLEL slots of a busy runner (not in load_duration), the "
                                    "network and server overhead: at low load it is not a queue wait."))
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
            # p50 is the line (runs told apart by its style, baseline dashed); p95 is markers only, so
            # no line style means two things in one figure.
            style = plotting.series_style(names, line.name, line.run_index, len(views))
            if len(views) == 1:
                style = {**style, "linestyle": "-"}
            x = line.cells["offered_load"].to_numpy(float)
            xs.extend(x)
            p50 = line.cells[f"{metric}_p50_s"].to_numpy(float) * scale
            ax.plot(x, p50, label=plotting.series_label(line.name, line.run_label, len(views)), **style)
            spread = spreads[(line.run_label, metric)]
            low = np.array([spread.at[c, "low"] if c in spread.index else np.nan for c in line.cells.index]) * scale
            high = np.array([spread.at[c, "high"] if c in spread.index else np.nan for c in line.cells.index]) * scale
            ax.fill_between(x, low, high, color=style["color"], alpha=0.13, linewidth=0)
            p95 = line.cells[f"{metric}_p95_s"].to_numpy(float) * scale
            ax.plot(x, p95, color=style["color"], linestyle="none", marker="^", markersize=5, alpha=0.9)
            # The p95's bootstrap interval where the cell had the samples for one (summary.csv has it).
            plotting.interval_bars(ax, x, line.cells[f"{metric}_p95_ci_lo_s"].to_numpy(float) * scale,
                                   line.cells[f"{metric}_p95_ci_hi_s"].to_numpy(float) * scale, str(style["color"]),
                                   center=p95)
        ax.set_title(title)
        ax.set_ylabel(f"{metric.upper()} ({unit})")
        plotting.latency_axis(ax, values.to_numpy().ravel())
        plotting.headroom(ax)
        plotting.load_axis(ax, xs, load_label(kind).replace("offered load: ", ""))
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D

    key: list[Artist] = [Line2D([], [], color="#555555", linewidth=1.6),
                         Line2D([], [], color="#555555", linestyle="none", marker="^", markersize=5)]
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles + key, labels + ["p50 (line)", "p95 (▲, bar: its 95% CI)"], loc="outside lower center",
                  ncols=min(4, len(handles) + 2))
    figure.suptitle("Latency against offered load (p50, p10–p90 band, p95)", fontweight="bold")
    return plotting.render(figure, "Latency percentiles against offered load",
                           "Two line charts: TTFT and TPOT against offered load, median with the p10–p90 band "
                           "shaded, p95 as triangles with their 95% intervals.")


def _ttft_cdfs(views: list[RunView]) -> plotting.Plot:
    """One panel per setting other than load (small multiples), a line per offered load coloured from
    a qualitative palette, runs overlaid in line styles; one legend below for the whole figure."""
    split = series_settings(views)
    panels: dict[str, list[tuple[int, RunView, str]]] = {}
    for run_index, view in enumerate(views):
        for cell_id, row in view.cells.iterrows():
            if row.get("ok", 0) <= 0:
                continue
            panels.setdefault(describe_settings(row.to_dict(), split), []).append((run_index, view, str(cell_id)))
    names = list(panels)[:_MAX_CDF_PANELS]
    loads = sorted({float(view.cells.at[cid, "offered_load"]) for entries in panels.values()
                    for _, view, cid in entries if np.isfinite(view.cells.at[cid, "offered_load"])})
    columns = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plotting.new_figure(rows, columns, height_in=2.6 if rows > 1 else 3.2, sharex=True, sharey=True)
    every_ttft = np.concatenate([v.measured.get("ttft_s", pd.Series(dtype=float)).to_numpy(float) for v in views])
    scale, unit = plotting.time_unit(every_ttft)
    finite = every_ttft[np.isfinite(every_ttft) & (every_ttft > 0)]
    # One cold load can be 10x the warm TTFT: a log axis keeps the warm curves apart.
    log_x = len(finite) > 0 and float(finite.max()) / float(finite.min()) >= 10
    load_colors = {load: plotting.QUALITATIVE[i % len(plotting.QUALITATIVE)] for i, load in enumerate(loads)}
    for ax, name in zip(axes, names):
        if log_x:
            ax.set_xscale("log")
            plotting.plain_tick_labels(ax.xaxis)
        for run_index, view, cell_id in panels[name]:
            ok = view.measured[view.measured["error_class"].isna()] if len(view.measured) else view.measured
            ttft = np.sort(ok.loc[ok["cell_id"] == cell_id, "ttft_s"].dropna().to_numpy(float)) * scale
            if not len(ttft):
                continue
            load = float(view.cells.at[cell_id, "offered_load"])
            share = np.arange(1, len(ttft) + 1) / len(ttft)
            ax.step(ttft, share, where="post", color=load_colors.get(load, "#555555"), linewidth=1.6,
                    linestyle=plotting.RUN_LINESTYLES[run_index % len(plotting.RUN_LINESTYLES)] if len(views) > 1 else "-")
        ax.axhline(0.95, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_ylim(0, 1.06)  # headroom: a curve that reaches 1 is not drawn on the top edge
        ns = sorted({int(view.cells.at[cid, "ok"]) for _, view, cid in panels[name]})
        n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"
        ax.set_title(f"{plotting.shorten(name or 'all cells', 32)} ({n_text})", fontsize=10)
        ax.tick_params(labelbottom=True)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    for ax in axes[::columns]:
        ax.set_ylabel("share of requests")
    for ax in axes[-columns:]:
        ax.set_xlabel(f"TTFT ({unit})")
    from matplotlib.lines import Line2D

    kind = "closed" if any((v.cells["arrival_kind"] == "closed").any() for v in views) else "open"
    load_name = "c" if kind == "closed" else "rps"
    handles = [Line2D([], [], color=color, linewidth=2, label=f"{load_name}={load:g}") for load, color in load_colors.items()]
    if len(views) > 1:
        handles += [Line2D([], [], color="#555555", linestyle=plotting.RUN_LINESTYLES[i % len(plotting.RUN_LINESTYLES)],
                           label=plotting.shorten(view.label, 30)) for i, view in enumerate(views)]
    if handles:
        figure.legend(handles=handles, loc="outside lower center", ncols=min(8, len(handles)))
    more = f" (first {_MAX_CDF_PANELS} of {len(panels)} settings)" if len(panels) > _MAX_CDF_PANELS else ""
    figure.suptitle(f"TTFT distribution per cell: one panel per setting, a colour per offered load{more}",
                    fontweight="bold")
    return plotting.render(figure, "TTFT distribution per cell",
                           "Cumulative distributions of time to first token: small multiples, one panel per "
                           "setting, one curve per offered load.")


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
    plotting.latency_axis(ttft_ax, np.concatenate([line.cells["ttft_p95_s"].to_numpy(float) for line in lines]))
    user_ax.set_ylim(bottom=0)
    for ax in (ttft_ax, user_ax):
        ax.set_xlabel("output tokens/s (all requests)")
        ax.set_xlim(left=0)
        plotting.headroom(ax)
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
                load, prefill, ttft = group["load_s"].mean(), group["prefill_s"].mean(), group["ttft_s"].mean()
                # The first token also needs one decode step; a request's TPOT is the best estimate.
                first_step = group["tpot_s"].mean() if group["tpot_s"].notna().any() else 0.0
                rest = ttft - np.nansum([load, prefill, first_step])
                rest = max(0.0, rest) if np.isfinite(rest) else np.nan
                # The server's own count of the wait for a slot (total − load − prefill − decode,
                # Ollama v0.33 meanings), within the rest; what remains is network and client.
                slot = group["slot_wait_s"].mean() if "slot_wait_s" in group else np.nan
                slot = min(slot, rest) if np.isfinite(slot) and np.isfinite(rest) else np.nan
                rows.append({"label": (f"{view.label} · " if len(views) > 1 else "") + label,
                             "load": load, "slot": slot,
                             "wait": rest - slot if np.isfinite(slot) else rest,
                             "prefill": prefill, "first_step": first_step, "ttft": ttft})
    if not rows:
        return None
    frame = pd.DataFrame(rows).fillna(0.0)
    scale, unit = plotting.time_unit(frame["ttft"].to_numpy(float))
    figure, (ax,) = plotting.new_figure(1, 1, height_in=plotting.bar_height_in(len(frame)) + 0.6)
    y = np.arange(len(frame))
    left = np.zeros(len(frame))
    for column, name, color in (("load", "scheduler queue + load (load_duration)", "#d62728"),
                                ("slot", "slot wait (server-counted)", "#6baed6"),
                                ("wait", "rest: network, client", "#c6dbef"),
                                ("prefill", "prefill of uncached tokens", "#2ca02c"),
                                ("first_step", "first decode step (≈ TPOT)", "#ff7f0e")):
        widths = frame[column].to_numpy(float) * scale
        ax.barh(y, widths, left=left, color=color, label=name, height=0.65)
        left += widths
    ax.scatter(frame["ttft"].to_numpy(float) * scale, y, marker="|", s=220, color="black", label="mean TTFT",
               zorder=3)
    ax.set_yticks(y, [plotting.shorten(label, 40) for label in frame["label"]])
    ax.invert_yaxis()
    ax.set_xlabel(f"mean time ({unit})")
    ax.set_title("Where TTFT goes (native API, mean per cell)")
    plotting.figure_legend(figure, ax, columns=3)
    return plotting.render(figure, "Where TTFT goes on the native API",
                           "Stacked bars per native cell: load_duration, the server-counted slot wait, the "
                           "unexplained rest (HTTP, client), prefill and the first decode step.")


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
