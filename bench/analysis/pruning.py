"""Pruned studies: which cells of a sweep cannot win, judged from the cells measured so far.

Pure: cells (bench.plan), the measured cells' summary rows, the memory a server group's model
took, the SLOs → skips, each with the reason a person reads in the report. bench.run calls
`cells_to_skip` after every cell. Three rules, each a claim about Ollama, not about bench:

* **spilled / not loaded**: a server setting whose model spilled to the CPU (`/api/ps` size_vram <
  size) or never answered loses the recommendation anyway (bench.analysis.recommend excludes
  it), so its remaining cells (same model and num_ctx) are skipped after the first.
* **knee**: along one ladder of concurrencies (all other settings equal), once throughput grew
  less than `knee_growth` over the lower concurrencies and an SLO is already broken, higher
  concurrencies only queue: TTFT grows, tok/s does not, so they cannot meet the SLOs with more
  throughput.
* **dominated**: the same flat throughput, and another server setting already measured at this
  concurrency is at least as good on every metric (output tok/s, TTFT p95, TPOT p95): this
  setting's higher concurrencies cannot beat it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bench.analysis.recommend import Slo, slo_failures
from bench.plan import Cell
from bench.numbers import gib

Rule = Literal["spilled", "not-loaded", "knee", "dominated"]
# Compared for dominance: (summary column, higher is better).
DOMINANCE_METRICS: tuple[tuple[str, bool], ...] = (
    ("output_tps", True), ("ttft_p95_s", False), ("tpot_p95_s", False))


@dataclass(frozen=True)
class GroupMemory:
    """What /api/ps said of a server group's model after its first cell (None: not known)."""

    size_bytes: int | None
    size_vram_bytes: int | None

    @property
    def spilled(self) -> bool:
        return (self.size_bytes is not None and self.size_vram_bytes is not None
                and self.size_vram_bytes < self.size_bytes)


@dataclass(frozen=True)
class Skip:
    """Cells not run, and why ('NP=16 spilled at load ...')."""

    cell_ids: tuple[str, ...]
    rule: Rule
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"cells": list(self.cell_ids), "rule": self.rule, "reason": self.reason}


@dataclass(frozen=True)
class Study:
    """The sweep as pruning sees it: its cells, a label per server group, the SLOs."""

    cells: tuple[Cell, ...]
    group_labels: Mapping[int, str]
    slos: tuple[Slo, ...] = ()
    knee_growth: float = 0.05

    def _ladder(self, cell: Cell, with_server: bool = True) -> tuple[Any, ...]:
        server_names = cell.settings.server_env
        key = tuple(sorted((k, repr(v)) for k, v in cell.settings.row().items()
                           if k != "concurrency" and (with_server or k not in server_names)))
        return key + ((cell.server_group,) if with_server else ())



def _concurrencies(cells: list[Cell]) -> str:
    return ", ".join(f"c={cell.settings.concurrency}" for cell in cells)


def _number(row: Mapping[str, Any], column: str) -> float:
    value = row.get(column)
    return math.nan if value is None else float(value)


def _load_skip(study: Study, cell: Cell, row: Mapping[str, Any], memory: GroupMemory | None,
               pending: list[Cell]) -> Skip | None:
    """Spilled or never answering: the rest of the group with this model and context goes."""
    same_load = [c for c in pending if c.server_group == cell.server_group
                 and c.settings.model == cell.settings.model and c.settings.num_ctx == cell.settings.num_ctx]
    if not same_load:
        return None
    label = study.group_labels.get(cell.server_group, f"group {cell.server_group}")
    ids = tuple(c.cell_id for c in same_load)
    if not _number(row, "ok") > 0:
        return Skip(ids, "not-loaded", f"{label} could not load {cell.settings.model}: no "
                    f"successful request of {int(_number(row, 'requests') or 0)} at load; skipped "
                    f"{_concurrencies(same_load)}")
    if memory is not None and memory.spilled:
        share = 1 - (memory.size_vram_bytes or 0) / max(1, memory.size_bytes or 1)
        return Skip(ids, "spilled", f"{label} spilled at load (size_vram {gib(memory.size_vram_bytes)} "
                    f"of {gib(memory.size_bytes)}, {share:.0%} on CPU); skipped {_concurrencies(same_load)}")
    return None


def _flat(study: Study, cell: Cell, row: Mapping[str, Any],
          measured: Mapping[str, Mapping[str, Any]]) -> tuple[bool, float]:
    """Whether throughput stopped growing at this cell (vs the ladder's lower concurrencies)."""
    lower = [c for c in study.cells if c.cell_id in measured and study._ladder(c) == study._ladder(cell)
             and (c.settings.concurrency or 0) < (cell.settings.concurrency or 0)]
    if not lower:
        return False, math.nan
    best_lower = max(_number(measured[c.cell_id], "output_tps") for c in lower)
    tps = _number(row, "output_tps")
    return bool(tps < (1 + study.knee_growth) * best_lower), best_lower


def _dominator(study: Study, cell: Cell, row: Mapping[str, Any],
               measured: Mapping[str, Mapping[str, Any]]) -> Cell | None:
    """A cell of another server setting, same load, at least as good on every metric."""
    for other in study.cells:
        if (other.cell_id not in measured or other.server_group == cell.server_group
                or other.settings.concurrency != cell.settings.concurrency
                or study._ladder(other, with_server=False) != study._ladder(cell, with_server=False)):
            continue
        theirs = measured[other.cell_id]
        if all((_number(theirs, column) >= _number(row, column)) if higher else
               (_number(theirs, column) <= _number(row, column)) for column, higher in DOMINANCE_METRICS):
            return other
    return None


def cells_to_skip(study: Study, finished: Cell, measured: Mapping[str, Mapping[str, Any]],
                  pending: list[Cell], memory: GroupMemory | None = None) -> list[Skip]:
    """The skips that `finished` (just measured; its summary row in `measured`) makes certain.

    `pending` are the cells not yet run (in run order); `memory` is the group's model's
    /api/ps reading when `finished` was its group's first cell, else None.
    """
    row = measured.get(finished.cell_id)
    if row is None:
        return []
    groups = {cell.server_group for cell in study.cells}
    first_of_group = not any(c.cell_id in measured for c in study.cells
                             if c.server_group == finished.server_group and c.cell_id != finished.cell_id)
    if len(groups) > 1 and first_of_group:
        skip = _load_skip(study, finished, row, memory, pending)
        if skip is not None:
            return [skip]
    concurrency = finished.settings.concurrency
    if finished.settings.arrival != "closed" or concurrency is None:
        return []
    higher = [c for c in pending if study._ladder(c) == study._ladder(finished)
              and (c.settings.concurrency or 0) > concurrency]
    if not higher:
        return []
    flat, best_lower = _flat(study, finished, row, measured)
    if not flat:
        return []
    label = study.group_labels.get(finished.server_group, "")
    where = f"{label} c={concurrency}".strip()
    growth = f"{_number(row, 'output_tps'):.1f} tok/s vs {best_lower:.1f} below"
    failures = slo_failures(row, study.slos) if study.slos else []
    ids = tuple(c.cell_id for c in higher)
    if failures:
        return [Skip(ids, "knee", f"{where}: above the knee ({growth}) with SLOs broken "
                     f"({', '.join(failures)}); skipped {_concurrencies(higher)}")]
    dominator = _dominator(study, finished, row, measured)
    if dominator is not None:
        by = study.group_labels.get(dominator.server_group, f"group {dominator.server_group}")
        return [Skip(ids, "dominated", f"{where}: throughput flat ({growth}) and dominated by {by} at "
                     f"the same load on output tok/s, TTFT p95 and TPOT p95; skipped {_concurrencies(higher)}")]
    return []


def target_busy_s(requests: Any) -> float:
    """What a study cost the target: per cell, its first request sent to its last answer (warmup
    and calibration included), summed over cells. `requests` is a run's records frame."""
    if requests is None or len(requests) == 0:
        return 0.0
    spans = requests.groupby("cell_id").agg(start=("sent_s", "min"), end=("end_s", "max"))
    return float((spans["end"] - spans["start"]).clip(lower=0).sum())
