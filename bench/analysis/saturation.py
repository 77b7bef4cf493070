"""Saturation from stored records: where a closed loop stops gaining throughput and only queues,
and the server settings in effect that explain it.

Pure functions. A closed loop is saturated from concurrency N on when going to the next higher
concurrency gains almost no throughput (< FLAT_GROWTH) while the median TTFT grows by more than
TTFT_GROWTH: the extra requests wait in the server's queue. With NUM_PARALLEL slots, a server
saturates at N = NUM_PARALLEL at the latest (before, when one slot's decode already fills the
device), so the warning names both.

Ollama v0.33's defaults (envconfig/config.go) fill in what the managed server's environment
did not set; for a server bench did not start, only what /api/ps and /api/version say is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from bench.plan import describe_cell, varying_settings
from bench.records.cell_settings import CellSettings
from bench.records.manifest import Manifest

FLAT_GROWTH = 0.05  # throughput growing less than this between two concurrencies is flat
TTFT_GROWTH = 1.5  # ...while the median TTFT grows by more than this factor: requests queue

# Settings that never split a run's cells into series: the repeat index, and the offered load itself
# (the axis a series runs along; the report's plots against load draw the same lines).
_NOT_SERIES = ("repeat", "concurrency", "rate_rps")
_OPEN = ("constant", "poisson")  # open-loop arrivals: a concurrency there is only a cap

# Ollama v0.33 envconfig defaults of the settings that decide serving capacity.
OLLAMA_DEFAULTS: dict[str, str] = {
    "OLLAMA_NUM_PARALLEL": "1",
    "OLLAMA_MAX_QUEUE": "512",
    "OLLAMA_MAX_LOADED_MODELS": "3-per-GPU",
    "OLLAMA_KEEP_ALIVE": "5m",
    "OLLAMA_CONTEXT_LENGTH": "4096/32768/262144-by-GPU-memory",
    "OLLAMA_KV_CACHE_TYPE": "f16",
    "OLLAMA_FLASH_ATTENTION": "false",
}


@dataclass(frozen=True)
class Saturation:
    """One series of closed-loop cells that stopped scaling."""

    series: str  # the settings shared by the series ('' when nothing else varies)
    concurrency: int  # the highest concurrency still gaining throughput: where it saturates
    next_concurrency: int
    output_tps: float
    next_output_tps: float
    ttft_p50_s: float
    next_ttft_p50_s: float
    num_parallel: str  # the server's NUM_PARALLEL (with '(default)' when unset), or 'unknown'

    def sentence(self) -> str:
        where = f"{self.series}: " if self.series else ""
        return (f"{where}saturated at concurrency {self.concurrency}, server NUM_PARALLEL={self.num_parallel}: "
                f"from concurrency {self.concurrency} to {self.next_concurrency} output tok/s went "
                f"{self.output_tps:.0f} → {self.next_output_tps:.0f} "
                f"({self.next_output_tps / self.output_tps - 1:+.0%}) while TTFT p50 went "
                f"{self.ttft_p50_s * 1000:.0f} → {self.next_ttft_p50_s * 1000:.0f} ms: {self.advice()}")

    def advice(self) -> str:
        """Why the extra requests only waited, and what would help: with a slot for every one of
        them (NUM_PARALLEL at least the next concurrency) they waited for the device, which one
        batch loop serves in turn, so more slots cannot help."""
        slots = self.num_parallel.split(" ")[0]
        if slots.isdigit() and int(slots) >= self.next_concurrency:
            return (f"every request had a slot (NUM_PARALLEL {slots} ≥ {self.next_concurrency}), so they "
                    "waited for the device: a larger NUM_PARALLEL will not help; offer no more load than "
                    "this, or a faster device or smaller model.")
        return "the extra requests only queue. Raise NUM_PARALLEL (if memory allows) or offer no more load than this."


def saturation_point(cells: pd.DataFrame) -> tuple[int, int] | None:
    """(index of the saturating cell, of the next) in closed-loop `cells` sorted by concurrency
    (cell_summary columns + `concurrency`), or None when throughput kept growing or TTFT stayed flat."""
    ok = cells[(cells["ok"] > 0) & cells["output_tps"].notna() & cells["ttft_p50_s"].notna()]
    for position in range(len(ok) - 1):
        low, high = ok.iloc[position], ok.iloc[position + 1]
        if not (low["output_tps"] > 0 and low["ttft_p50_s"] > 0):
            continue
        flat = high["output_tps"] < (1 + FLAT_GROWTH) * low["output_tps"]
        queued = high["ttft_p50_s"] > TTFT_GROWTH * low["ttft_p50_s"]
        if flat and queued:
            return position, position + 1
    return None


def find_saturation(cells: pd.DataFrame, series: str, num_parallel: str) -> Saturation | None:
    """The saturation of one series of closed-loop cells (see saturation_point)."""
    ordered = cells.sort_values("concurrency", kind="stable")
    ok = ordered[(ordered["ok"] > 0) & ordered["output_tps"].notna() & ordered["ttft_p50_s"].notna()]
    point = saturation_point(ok)
    if point is None:
        return None
    low, high = ok.iloc[point[0]], ok.iloc[point[1]]
    return Saturation(series, int(low["concurrency"]), int(high["concurrency"]), float(low["output_tps"]),
                      float(high["output_tps"]), float(low["ttft_p50_s"]), float(high["ttft_p50_s"]),
                      num_parallel)


def effective_num_parallel(cell_setting: str | None, server_env: Mapping[str, str] | None) -> str:
    """The NUM_PARALLEL a cell's server ran with: the cell's own axis value, the managed server's
    environment, Ollama's default when bench started the server without it, else 'unknown'."""
    if cell_setting is not None:
        return cell_setting
    if server_env is None:
        return "unknown (a server bench did not start)"
    value = server_env.get("OLLAMA_NUM_PARALLEL")
    return str(value) if value else f"{OLLAMA_DEFAULTS['OLLAMA_NUM_PARALLEL']} (default)"


def effective_settings(server_env: dict[str, str]) -> list[tuple[str, str]]:
    """Every capacity setting of a managed server: its environment's value, else Ollama's default."""
    rows = [(name, server_env[name] if name in server_env else f"{default} (default)")
            for name, default in OLLAMA_DEFAULTS.items()]
    rows += [(name, value) for name, value in sorted(server_env.items()) if name not in OLLAMA_DEFAULTS]
    return rows


def run_saturations(manifest: Manifest, summary: pd.DataFrame) -> tuple[Saturation, ...]:
    """Every closed-loop series of a run that stopped scaling, in cell order (`summary`: its
    cell_summary). A series is the closed-loop cells that differ only in concurrency, named by the
    other settings that vary across the run, as the report's lines against load are."""
    settings = {cell.cell_id: cell.settings for cell in sorted(manifest.cells, key=lambda c: c.cell_index)}
    if summary.empty or not settings:
        return ()
    rows = {cell_id: cell.row() for cell_id, cell in settings.items()}
    names = [name for name in varying_settings(rows.values()) if name not in _NOT_SERIES]
    series: dict[str, list[str]] = {}
    for cell_id, cell in settings.items():
        if _is_closed(cell):
            series.setdefault(describe_cell(rows[cell_id], names), []).append(cell_id)
    found = []
    for name, cell_ids in series.items():
        ordered = sorted(cell_ids, key=lambda cell_id: _concurrency(settings[cell_id]))
        cells = summary.reindex(ordered).assign(concurrency=[_concurrency(settings[c]) for c in ordered])
        num_parallel = effective_num_parallel(settings[ordered[0]].server_setting("OLLAMA_NUM_PARALLEL"),
                                              _server_env(manifest, ordered[0]))
        saturation = find_saturation(cells, name, num_parallel)
        if saturation is not None:
            found.append(saturation)
    return tuple(found)


def _is_closed(cell: CellSettings) -> bool:
    """A closed-loop cell with a concurrency: a point on a line against offered load."""
    return cell.rate_rps is None and cell.arrival not in _OPEN and cell.concurrency is not None


def _concurrency(cell: CellSettings) -> int:
    return cell.concurrency if cell.concurrency is not None else 0


def _server_env(manifest: Manifest, cell_id: str) -> Mapping[str, str] | None:
    """The environment of the server a cell ran on; {} for a managed server bench knows nothing
    of; None for a server bench did not start (its settings are unknown, not Ollama's defaults)."""
    if manifest.target.kind not in ("sim", "managed") and not manifest.servers:
        return None
    server_id = next((cell.server_id for cell in manifest.cells if cell.cell_id == cell_id), None)
    env = {server.server_id: dict(server.env) for server in manifest.servers}
    return env.get(server_id, {}) if server_id is not None else {}
