"""A run's adaptive settings in one place: the stop rule per cell and the study's pruning, what each
cell's stop verdict was, what was skipped, and how all of it is written into the manifest.

`bench run --adaptive` turns both on (with the defaults below where the scenario has no
stop_when / prune); `--full-grid` turns off what the scenario asks for.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.analysis.pruning import Skip
from bench.analysis.stopping import StopRule, StopVerdict
from bench.records.manifest import Manifest
from bench.plan import Cell
from bench.records import RequestRecord
from bench.run.adaptive import CellStopper
from bench.run.pruner import StudyPruner
from bench.scenario import Prune, Scenario

# --adaptive without a stop_when: the example rule. A p95 gets an interval only from
# bench.analysis.samples' minimum on (40 requests), so ttft_p95 is never judged before that.
DEFAULT_RULE = StopRule(within={"ttft_p95": 0.05, "output_tps": 0.05}, confidence=0.95, min_requests=20)


@dataclass
class AdaptiveStudy:
    rule: StopRule | None = None
    pruner: StudyPruner | None = None
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell_id -> StopVerdict JSON
    earlier_skips: list[dict[str, Any]] = field(default_factory=list)  # from a resumed session
    # cell_id -> [first send, last end] of every record (warmup too): the target's busy time
    spans_s: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def for_run(cls, scenario: Scenario, cells: list[Cell], adaptive: bool, full_grid: bool) -> AdaptiveStudy:
        if full_grid:
            return cls()
        rule = StopRule.from_scenario(scenario.stop_when) if scenario.stop_when is not None else (
            DEFAULT_RULE if adaptive else None)
        prune = scenario.prune if isinstance(scenario.prune, Prune) else (
            Prune() if scenario.prune or adaptive else None)
        pruner = StudyPruner(scenario, cells, prune.knee_growth) if prune is not None else None
        return cls(rule, pruner)

    @property
    def active(self) -> bool:
        return self.rule is not None or self.pruner is not None

    def observe(self, record: RequestRecord) -> None:
        """Per record (hot path: a dict lookup and two comparisons): the cell's busy span."""
        if record.sent_s is None or record.end_s is None:
            return
        span = self.spans_s.get(record.cell_id)
        if span is None:
            self.spans_s[record.cell_id] = [record.sent_s, record.end_s]
        else:
            span[0] = min(span[0], record.sent_s)
            span[1] = max(span[1], record.end_s)

    def target_busy_s(self) -> float:
        """Seconds the target was serving this study: each cell's first send to last answer, summed."""
        return sum(end - start for start, end in self.spans_s.values())

    def notes(self, labels: dict[str, str]) -> list[str]:
        """Lines for the printed summary and the report: every skip, every cell that hit its maximum."""
        lines = [f"skipped: {skip.get('reason')}" for skip in self.earlier_skips]
        lines += [f"skipped: {skip.reason}" for skip in (self.pruner.skips if self.pruner else [])]
        unmet = [(cell_id, v) for cell_id, v in self.verdicts.items() if not v.get("met")]
        lines += [f"{labels.get(cell_id, cell_id)}: {v.get('reason')}" for cell_id, v in unmet]
        if self.rule is not None and self.verdicts:
            lines.append(f"stop_when ({self.rule.describe()}, at least {self.rule.min_requests} requests): "
                         f"met in {len(self.verdicts) - len(unmet)} of {len(self.verdicts)} cells")
        if self.spans_s:
            lines.append(f"target busy {self.target_busy_s():.1f} s over {len(self.spans_s)} cells")
        return lines

    def limits(self, requests: int | None, duration_s: float | None) -> tuple[int | None, float | None]:
        """The cell's request count and seconds: stop_when's maximums replace the cell's own."""
        if self.rule is None:
            return requests, duration_s
        if self.rule.max_requests is None and self.rule.max_s is None:
            return requests, duration_s
        return self.rule.max_requests, self.rule.max_s

    def stopper(self, done: asyncio.Event | None = None) -> CellStopper | None:
        """A cell's stopper (None: no stop rule); it sets `done` once the rule is met."""
        return CellStopper(self.rule, done) if self.rule is not None else None

    def skip_reason(self, cell: Cell) -> str | None:
        return self.pruner.skipped.get(cell.cell_id) if self.pruner is not None else None

    async def check_load(self, cell: Cell, http: httpx.AsyncClient, pending: list[Cell]) -> Skip | None:
        if self.pruner is None or not self.pruner.first_of_group(cell):
            return None
        return await self.pruner.check_load(cell, http, pending)

    async def after_cell(self, cell: Cell, records: list[RequestRecord], http: httpx.AsyncClient,
                         pending: list[Cell]) -> list[Skip]:
        if self.pruner is None:
            return []
        return await self.pruner.after_cell(cell, records, http, pending)

    @staticmethod
    def ended_by(complete: bool, stop_reason: str | None, stopper: CellStopper,
                 requests: int | None, duration_s: float | None) -> str:
        """Which limit ended a cell whose rule was not met before it ended."""
        if not complete:
            return stop_reason or "interrupted"
        if duration_s is not None and (requests is None or len(stopper.records) < requests):
            return f"max_s {duration_s:g}"
        return f"max_requests {requests}"

    async def finish_cell(self, cell: Cell, stopper: CellStopper, ended_by: str) -> StopVerdict:
        verdict = await stopper.finish(ended_by)
        self.verdicts[cell.cell_id] = {**verdict.to_json(), "evaluations": stopper.judged}
        return verdict

    def take_up(self, cell_id: str, stop: dict[str, Any] | None, skip_reason: str | None) -> None:
        """A cell measured elsewhere (a Ray task): its stop verdict and skip, as if decided here."""
        if stop is not None:
            self.verdicts[cell_id] = stop
        if skip_reason and self.pruner is not None:
            self.pruner.skipped[cell_id] = skip_reason

    def pick_up(self, manifest: Manifest) -> None:
        """A resumed run keeps the earlier session's verdicts and skips (skipped cells stay skipped)."""
        for cell in manifest.cells:
            if cell.stop is not None:
                self.verdicts[cell.cell_id] = cell.stop
            if self.pruner is not None and cell.status == "skipped":
                self.pruner.skipped[cell.cell_id] = cell.skip_reason or "skipped"
        self.earlier_skips = [s for s in (manifest.adaptive or {}).get("skips") or [] if isinstance(s, dict)]

    def annotate(self, manifest: Manifest) -> None:
        """Write each cell's stop verdict / skip reason and the study's settings into the manifest."""
        if not self.active:
            return
        for cell in manifest.cells:
            verdict = self.verdicts.get(cell.cell_id)
            if verdict is not None:
                cell.stop = verdict
            reason = self.skip_reason_by_id(cell.cell_id)
            if reason is not None and cell.status in ("skipped", "pending"):
                cell.skip_reason = reason
        skips = self.earlier_skips + ([s.to_json() for s in self.pruner.skips] if self.pruner else [])
        manifest.adaptive = {
            "stop_when": None if self.rule is None else {
                "within": self.rule.within, "confidence": self.rule.confidence,
                "min_requests": self.rule.min_requests, "max_requests": self.rule.max_requests,
                "min_s": self.rule.min_s, "max_s": self.rule.max_s},
            "prune": None if self.pruner is None else {"knee_growth": self.pruner.study.knee_growth},
            "skips": skips,
            "target_busy_s": round(self.target_busy_s(), 3),
        }

    def skip_reason_by_id(self, cell_id: str) -> str | None:
        return self.pruner.skipped.get(cell_id) if self.pruner is not None else None
