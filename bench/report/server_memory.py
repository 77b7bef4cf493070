"""The memory answer on hosts without NVML (Apple Silicon, AMD, a remote server): what the server
itself reports in /api/ps, per cell, labelled as the server's figure and never as a measurement."""

from __future__ import annotations

from bench import numbers as fmt
from bench.report.data import RunView
from bench.report.page import Block, Note, Table


def has_nvml(view: RunView) -> bool:
    gpu = view.run.gpu
    return gpu is not None and len(gpu) > 0 and "mem_used_bytes" in gpu and gpu["mem_used_bytes"].notna().any()


def blocks(view: RunView, suffix: str) -> list[Block]:
    """A note saying whose figure it is, and the per-cell peaks; nothing when NVML measured the GPU
    or the server reported nothing."""
    if has_nvml(view):
        return []
    peaks = view.analysis.ps_peaks
    if peaks.empty:
        return []
    note = Note(f"No NVML on this host{suffix} (Apple Silicon, AMD, or a server bench does not run on): the memory "
                "figures here are the server's own report (/api/ps size: the loaded model with its KV cache and "
                "buffers; size_vram: the part in GPU memory — on Apple Silicon, unified memory). They are the "
                "server's estimate of what it allocated, not a measurement by bench.")
    rows = []
    for cell_id, row in peaks.iterrows():
        share = row["size_vram_bytes"] / row["size_bytes"] if row["size_bytes"] else None
        rows.append((str(view.cells.at[cell_id, "label"]), fmt.size_gib(row["size_bytes"]), fmt.size_gib(row["size_vram_bytes"]),
                     fmt.DASH if share is None else f"{share:.0%}"))
    table = Table(("cell", "size (server-reported)", "size_vram (server-reported)", "in GPU memory"), tuple(rows),
                  caption=f"Peak server-reported memory per cell{suffix}, from /api/ps polls during the cell",
                  numeric=(False, True, True, True))
    return [note, table]
