"""Pruned studies while they run: after each cell (and after a server group's first warmup), ask
bench.analysis.pruning which cells cannot win and mark them skipped.

The memory check reads GET /api/ps once, as any Ollama serves it: size_vram < size means part of
the model sits in host memory (Ollama's scheduler offloads layers it cannot fit on the GPU).
"""

from __future__ import annotations

from typing import Any

import httpx

from bench.analysis.metrics import cell_summary
from bench.analysis.pruning import GroupMemory, Skip, Study, cells_to_skip
from bench.analysis.recommend import parse_slo
from bench.endpoints import PS_PATH
from bench.plan import Cell
from bench.records import RequestRecord
from bench.run.adaptive import records_frame
from bench.scenario import Scenario
from bench.telemetry.ollama_ps import parse_ps
from bench.inputs.server_json import server_json
from bench.numbers import gib


def group_labels(cells: list[Cell]) -> dict[int, str]:
    """A short label per server group: the server settings that vary, as progress shows them (`NP=16`)."""
    short = {"OLLAMA_NUM_PARALLEL": "NP"}
    values: dict[str, set[str]] = {}
    for cell in cells:
        for name, value in cell.server_env:
            values.setdefault(name, set()).add(value)
    varying = {name for name, seen in values.items() if len(seen) > 1}
    return {cell.server_group: " ".join(f"{short.get(name, name.removeprefix('OLLAMA_'))}={value}"
                                        for name, value in cell.server_env if name in varying)
            or f"group {cell.server_group}" for cell in cells}


class StudyPruner:
    """The run's pruning state: cells measured so far (summary rows), skips made, and why."""

    def __init__(self, scenario: Scenario, cells: list[Cell], knee_growth: float) -> None:
        slos = tuple(parse_slo(f"{metric}={value}") for metric, value in scenario.slos.items())
        self.study = Study(tuple(cells), group_labels(cells), slos, knee_growth)
        self.measured: dict[str, dict[str, Any]] = {}
        self.skips: list[Skip] = []
        self.skipped: dict[str, str] = {}  # cell_id -> reason
        self._memory_checked: set[int] = set()

    def first_of_group(self, cell: Cell) -> bool:
        return cell.server_group not in self._memory_checked and len(
            {c.server_group for c in self.study.cells}) > 1

    async def check_load(self, cell: Cell, http: httpx.AsyncClient, pending: list[Cell]) -> Skip | None:
        """After the first warmup of a server group: a spilled model skips the group, this cell too."""
        memory = await read_memory(http, str(cell.settings.model))
        if memory is None:
            return None  # nothing loaded yet (no warmup): judged after the cell instead
        self._memory_checked.add(cell.server_group)
        if not memory.spilled:
            return None
        same = [c for c in [cell, *pending] if c.server_group == cell.server_group
                and c.settings.model == cell.settings.model and c.settings.num_ctx == cell.settings.num_ctx]
        label = self.study.group_labels.get(cell.server_group, "")
        share = 1 - (memory.size_vram_bytes or 0) / max(1, memory.size_bytes or 1)
        skip = Skip(tuple(c.cell_id for c in same), "spilled",
                    f"{label} spilled at load (size_vram {gib(memory.size_vram_bytes)} of "
                    f"{gib(memory.size_bytes)}, {share:.0%} on CPU): skipped "
                    + ", ".join(f"c={c.settings.concurrency}" for c in same))
        self._add(skip)
        return skip

    async def after_cell(self, cell: Cell, records: list[RequestRecord], http: httpx.AsyncClient,
                         pending: list[Cell]) -> list[Skip]:
        """Judge a finished cell; returns (and records) the skips it makes certain."""
        measured = [r for r in records if r.phase == "measure"]
        summary = cell_summary(records_frame(measured)) if measured else None
        row = (summary.loc[cell.cell_id].to_dict() if summary is not None and cell.cell_id in summary.index
               else {"ok": 0, "requests": len(measured)})
        self.measured[cell.cell_id] = row
        memory = None
        if self.first_of_group(cell):
            self._memory_checked.add(cell.server_group)
            memory = await read_memory(http, str(cell.settings.model))
        skips = cells_to_skip(self.study, cell, self.measured,
                              [c for c in pending if c.cell_id not in self.skipped], memory)
        for skip in skips:
            self._add(skip)
        return skips

    def _add(self, skip: Skip) -> None:
        self.skips.append(skip)
        for cell_id in skip.cell_ids:
            self.skipped[cell_id] = skip.reason


async def read_memory(http: httpx.AsyncClient, model: str) -> GroupMemory | None:
    """/api/ps's size and size_vram of `model` (None: not loaded, or no /api/ps)."""
    try:
        response = await http.get(PS_PATH)
        response.raise_for_status()
        rows = parse_ps(server_json(response.content, PS_PATH), 0.0)
    except (httpx.HTTPError, ValueError):  # ServerJSONError is a ValueError
        return None
    loaded = [row for row in rows if row.name is not None and _same_model(row.name, model)]
    if not loaded:
        return None
    return GroupMemory(loaded[0].size_bytes, loaded[0].size_vram_bytes)


def _same_model(listed: str, asked: str) -> bool:
    # /api/ps lists "llama3.1:8b"; a scenario may say "llama3.1" (tag latest) or the full name.
    return listed == asked or listed == f"{asked}:latest" or listed.split(":")[0] == asked

