"""Section 6: memory — NVML VRAM, process RSS and /api/ps timelines, and the KV-cache estimates against the fit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.records import KV_JSON
from bench import numbers as fmt
from bench.report import plotting, server_memory
from bench.report.data import RunView, gpu_capacity, server_spans, shared_time_range
from bench.report.page import Block, Figure, Note, Section, Table

GIB = 2**30


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    several = len(views) > 1
    xlim = shared_time_range(views)  # a comparison: every run's panels on one time axis
    for view in views:
        suffix = f" — {view.label}" if several else ""
        gpu = view.run.gpu
        if gpu is not None and len(gpu) and "mem_used_bytes" in gpu:
            blocks.append(Figure(_gpu_figure(gpu, suffix, xlim), "Measured by NVML on the GPU: device memory in use "
                                 "(and the server process's own share when bench started the server)."))
        proc = getattr(view.run, "proc", None)
        if proc is not None and len(proc) and "rss_bytes" in proc:
            blocks.append(Figure(_proc_figure(proc, suffix, xlim), "Measured by bench from /proc: resident memory of the "
                                 "server bench started and its children; with the real engine, the llama-server "
                                 "processes alone (their KV cache, weights and compute buffers), on the same clock."))
        blocks.extend(server_memory.blocks(view, suffix))
        ps = view.run.ps
        if ps is not None and len(ps) and "name" in ps and ps["name"].notna().any():
            semantics = view.analysis.semantics
            what = ("the buffers llama-server allocated (weights, KV cache, compute, output); with every layer on "
                    "the GPU size equals size_vram" if semantics.llama_server else
                    "Ollama's estimate (weights + KV cache + compute graph)")
            blocks.append(Figure(_ps_figure(ps, suffix, view, xlim), f"From /api/ps: size is {what}; size_vram the part on "
                                 "the GPU. size_vram below size means part of the model runs on the CPU "
                                 f"(read as {semantics.label}). Labels: the server setting live at the time; dotted line: "
                                 "the GPU's memory."))
            table = _loads_table(view, suffix)
            if table is not None:
                blocks.append(table)
        truncation = _truncation_note(view)
        if truncation is not None:
            blocks.append(truncation)
        kv = view.run.extras.get(KV_JSON)
        if isinstance(kv, dict) and kv.get("groups"):
            blocks.extend(_kv_blocks(kv, suffix))
    if not blocks:
        return None
    return Section("memory", "Memory", "GPU memory over the run, and how the KV cache grows with context.",
                   tuple(blocks))


def _requested_num_ctx(view: RunView) -> int | None:
    values = {v for v in view.cells.get("num_ctx", pd.Series(dtype=float)).dropna().tolist()} if "num_ctx" in view.cells else set()
    return int(next(iter(values))) if len(values) == 1 else None


def _loads_table(view: RunView, suffix: str) -> Table | None:
    loads = view.analysis.model_loads
    if not loads:
        return None
    requested = _requested_num_ctx(view)
    rows = []
    for load in loads:
        share = load.gpu_share
        rows.append((plotting.shorten(load.model, 36), _cells_during(view, load.first_seen_s, load.last_seen_s),
                     f"{load.first_seen_s:.1f} s",
                     fmt.DASH if load.effective_num_ctx is None else f"{load.effective_num_ctx:,}",
                     fmt.size_gib(load.size_bytes) if load.size_bytes is not None else fmt.DASH,
                     fmt.size_gib(load.size_vram_bytes) if load.size_vram_bytes is not None else fmt.DASH,
                     fmt.DASH if share is None else f"{share:.0%}",
                     "; ".join(load.notes(requested)) or fmt.DASH))
    return Table(("model", "cells served", "first seen", "effective num_ctx (per slot)", "size", "size_vram", "on GPU",
                  "note"),
                 tuple(rows), caption=f"Every load seen in /api/ps{suffix}: the context each runner really has",
                 numeric=(False, False, True, True, True, True, True, False))


def _cells_during(view: RunView, first_s: float, last_s: float) -> str:
    """Labels of the cells whose requests ran while this load was listed."""
    requests = view.requests
    if requests.empty or "sent_s" not in requests:
        return fmt.DASH
    overlapping = requests[(requests["sent_s"] <= last_s) & (requests["end_s"].fillna(requests["sent_s"]) >= first_s)]
    labels = [str(view.cells.at[c, "label"]) if c in view.cells.index else str(c)
              for c in dict.fromkeys(overlapping["cell_id"])]
    if not labels:
        return fmt.DASH
    return ", ".join(plotting.shorten(label, 40) for label in labels[:3]) + (" …" if len(labels) > 3 else "")


def _truncation_note(view: RunView) -> Note | None:
    found = view.analysis.truncated_prompts
    if not found:
        return None
    parts = [f"{view.cells.at[c, 'label'] if c in view.cells.index else c}: {counted:,.0f} of ~{sent:,.0f}"
             for c, (sent, counted) in found.items()]
    return Note("Prompts cut to fit the context — the server counted fewer prompt tokens than were sent ("
                + "; ".join(parts) + "). Ollama truncates a prompt longer than num_ctx (v0.33 keeps the first "
                "num_keep tokens and the tail, about half the context) instead of refusing it.")


def _gpu_figure(gpu: pd.DataFrame, suffix: str, xlim: tuple[float, float] | None = None) -> plotting.Plot:
    has_util = "util_gpu_pct" in gpu and gpu["util_gpu_pct"].notna().any()
    figure, axes = plotting.new_figure(2 if has_util else 1, 1, height_in=2.8, sharex=True)
    memory_ax = axes[0]
    for index, (device, samples) in enumerate(gpu.sort_values("t_s").groupby("device", sort=True)):
        color = plotting.PALETTE[index % len(plotting.PALETTE)]
        name = f"GPU {device}"
        memory_ax.plot(samples["t_s"], samples["mem_used_bytes"] / GIB, color=color, label=f"{name} used")
        if "server_proc_mem_bytes" in samples and samples["server_proc_mem_bytes"].notna().any():
            memory_ax.plot(samples["t_s"], samples["server_proc_mem_bytes"] / GIB, color=color, linestyle="--",
                           label=f"{name} server process")
        if "mem_total_bytes" in samples and samples["mem_total_bytes"].notna().any():
            memory_ax.axhline(float(samples["mem_total_bytes"].max()) / GIB, color=color, linestyle=":",
                              linewidth=1, label=f"{name} total")
        if has_util:
            axes[1].plot(samples["t_s"], samples["util_gpu_pct"], color=color, label=name)
    memory_ax.set_ylabel("GPU memory (GiB)")
    memory_ax.set_ylim(bottom=0)
    memory_ax.set_title(f"GPU memory (NVML){suffix}")
    plotting.legend(memory_ax)
    if has_util:
        axes[1].set_ylabel("GPU utilisation (%)")
        axes[1].set_ylim(0, 105)
    axes[-1].set_xlabel("time since the run started (s)")
    if xlim is not None:
        axes[-1].set_xlim(*xlim)
    return plotting.render(figure, "GPU memory over time", "Line chart: GPU memory used over the run, in GiB.")


def _proc_figure(proc: pd.DataFrame, suffix: str, xlim: tuple[float, float] | None = None) -> plotting.Plot:
    figure, (ax,) = plotting.new_figure(1, 1, height_in=2.8)
    samples = proc.sort_values("t_s")
    mib = 2**20
    ax.plot(samples["t_s"], samples["rss_bytes"] / mib, color=plotting.PALETTE[0], label="server process tree")
    if (samples["engine_rss_bytes"] > 0).any():
        ax.plot(samples["t_s"], samples["engine_rss_bytes"] / mib, color=plotting.PALETTE[1], linestyle="--",
                label="llama-server processes")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time since the run started (s)")
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_title(f"Server memory (process RSS){suffix}")
    plotting.legend(ax)
    return plotting.render(figure, "Server process memory over time",
                           "Line chart: resident memory of the managed server and its llama-server children, in MiB.")


def _ps_figure(ps: pd.DataFrame, suffix: str, view: RunView,
               xlim: tuple[float, float] | None = None) -> plotting.Plot:
    figure, (ax,) = plotting.new_figure(1, 1, height_in=3.6)
    polls = np.sort(ps["t_s"].dropna().unique())
    models = sorted(str(m) for m in ps["name"].dropna().unique())
    for index, model in enumerate(models):
        rows = ps[ps["name"] == model].groupby("t_s")[["size_bytes", "size_vram_bytes"]].max()
        # A poll that did not list the model means it was not loaded: draw 0 there.
        rows = rows.reindex(polls).fillna(0.0)
        color = plotting.PALETTE[index % len(plotting.PALETTE)]
        short = plotting.shorten(model, 36)
        ax.step(polls, rows["size_bytes"] / GIB, where="post", color=color, label=f"{short} size")
        ax.step(polls, rows["size_vram_bytes"] / GIB, where="post", color=color, linestyle="--",
                label=f"{short} size_vram")
    capacity = gpu_capacity(view)
    top = float(np.nanmax(ps["size_bytes"].to_numpy(float))) / GIB if ps["size_bytes"].notna().any() else 1.0
    if capacity is not None:
        ax.axhline(capacity[0] / GIB, color="#444444", linestyle=":", linewidth=1.2, label=capacity[1])
        top = max(top, capacity[0] / GIB)
    ax.set_ylim(0, top * 1.18)
    for start, end, label in server_spans(view):
        ax.axvline(start, color="#bbbbbb", linewidth=0.8, zorder=0)
        ax.text(start, top * 1.16, f" {label}", fontsize=8, va="top", ha="left", color="#333333")
    ax.set_ylabel("memory (GiB)")
    ax.set_xlabel("time since the run started (s)")
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_title(f"Loaded models (/api/ps){suffix}")
    plotting.legend(ax)
    return plotting.render(figure, "Loaded models over time (/api/ps)",
                           "Step chart: size and size_vram of each loaded model over the run, in GiB.")


def _kv_blocks(kv: dict[str, Any], suffix: str) -> list[Any]:
    blocks: list[Block] = []
    rows = []
    sources: set[str] = set()
    for group in kv["groups"]:
        per_token = dict(group.get("bytes_per_token") or {})
        ratios = dict(group.get("ratio_to_measured") or {})
        if group.get("process_source") != "engine_rss":
            per_token["process_rss"] = None  # not a KV measurement (kv.json written before that was known)
        if group.get("measured_source") == "ollama_ps":
            ratios["ollama_ps"] = None  # 1.00 by construction
        rows.append((str(group.get("model")), str(group.get("cache_type")),
                     *(_per_token(per_token.get(name)) for name in ("rule_of_thumb", "exact", "ollama_ps", "nvml",
                                                                     "process_rss")),
                     *(_ratio(ratios.get(name)) for name in ("rule_of_thumb", "exact", "ollama_ps"))))
        sources.add(str(group.get("measured_source")))
    blocks.append(Table(
        ("model", "KV cache type", "rule of thumb", "exact (GQA)", "/api/ps fit", "NVML fit", "process RSS fit",
         "rule ÷ measured", "exact ÷ measured", "/api/ps ÷ measured"),
        tuple(rows), caption=f"KV cache bytes per token of context{suffix} " + _measured_caption(sources),
        numeric=(False, False) + (True,) * 8))
    for group in kv["groups"]:
        plot = _kv_fit_figure(group, suffix)
        if plot is not None:
            blocks.append(Figure(plot, "Points: memory measured per cell at its total context (num_ctx × "
                                       "NUM_PARALLEL). Lines: the least-squares fit, and the estimates' slopes "
                                       "drawn through the fit's intercept."))
    for group in kv["groups"]:
        if not _measured(group):
            blocks.append(Note(f"{group.get('model')}: no KV measurement in this run — no NVML reading of the "
                               "server and no llama-server process (the simulated engine holds no KV cache); the "
                               "table shows /api/ps's estimate and the formulas only.", "info"))
    for note in kv.get("notes") or []:
        blocks.append(Note(str(note)))
    return blocks


def _measured_caption(sources: set[str]) -> str:
    real = sorted(s for s in sources if s in ("nvml", "process_rss"))
    if real:
        return f"(measured = the {' / '.join(real)} fit)"
    return "(nothing measured: '÷ measured' compares with /api/ps's estimate, Ollama's own figure)"


def _measured(group: dict[str, Any]) -> bool:
    """Whether the group has a real memory measurement (NVML, or llama-server processes' RSS)."""
    return group.get("measured_source") in ("nvml", "process_rss")


def _per_token(value: Any) -> str:
    return fmt.DASH if value is None else f"{float(value) / 1024:.1f} KiB"


def _ratio(value: Any) -> str:
    return fmt.DASH if value is None else f"{float(value):.2f}×"


def _kv_fit_figure(group: dict[str, Any], suffix: str) -> plotting.Plot | None:
    points = pd.DataFrame(group.get("points") or [])
    if points.empty or "ctx_total" not in points:
        return None
    measured = [c for c in ("nvml_bytes", "process_rss_bytes", "ollama_ps_bytes")
                if c in points and points[c].notna().any()
                and (c != "process_rss_bytes" or group.get("process_source") == "engine_rss")]
    if not measured:
        return None
    figure, (ax,) = plotting.new_figure(1, 1, height_in=3.6)
    ctx = points["ctx_total"].to_numpy(float)
    span = np.linspace(0, ctx.max() * 1.05, 50)
    fits = group.get("fits") or {}
    names = {"nvml_bytes": ("NVML (measured)", "nvml", "#1f77b4"),
             "process_rss_bytes": ("process RSS (measured)", "process_rss", "#9467bd"),
             "ollama_ps_bytes": ("/api/ps (Ollama's estimate)", "ollama_ps", "#ff7f0e")}
    intercept = None
    for column in measured:
        label, fit_key, color = names[column]
        ax.scatter(ctx, points[column].to_numpy(float) / GIB, color=color, label=label, zorder=3)
        fit = fits.get(fit_key)
        if fit:
            ax.plot(span, (fit["fixed_bytes"] + fit["bytes_per_token"] * span) / GIB, color=color, linewidth=1.2,
                    label=f"fit: {fit['bytes_per_token'] / 1024:.1f} KiB/token")
            intercept = fit["fixed_bytes"] if intercept is None else intercept
    per_token = group.get("bytes_per_token") or {}
    if intercept is not None:
        for key, label, style in (("exact", "exact estimate", "--"), ("rule_of_thumb", "rule of thumb", ":")):
            if per_token.get(key):
                ax.plot(span, (intercept + per_token[key] * span) / GIB, color="#2ca02c" if key == "exact" else "#7f7f7f",
                        linestyle=style, label=f"{label}: {per_token[key] / 1024:.1f} KiB/token")
    ax.set_xlabel("total context (num_ctx × NUM_PARALLEL, tokens)")
    ax.set_ylabel("memory (GiB)")
    ax.set_xlim(left=0)
    ax.set_title(plotting.shorten(f"KV cache: {group.get('model')} ({group.get('cache_type')}){suffix}", 70))
    plotting.figure_legend(figure, ax, columns=3)
    return plotting.render(figure, "KV cache fit", "Scatter with lines: memory against total context, with "
                                                   "the fitted and estimated bytes per token.")
