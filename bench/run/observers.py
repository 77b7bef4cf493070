"""Who hears a run as it goes: each cell's start, its load's start, every record once written
(calibration probes included), the end of the warmup and each cell's end. The cell loop
(bench.run.runner.CellLoop) tells its observers in one fixed order: its own features first
(bench.run.cell_observers: stop rule, sweep, progress, the manifest's write, pruning, abort_on and a
vanished server),
then those it was given (a Ray task's stream to its driver, bench.run.ray_task)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx

from bench.load.cell import CellLoad
from bench.load.health import CellOutcome
from bench.plan import Cell
from bench.records import RequestRecord

CellStatus = Literal["pending", "complete", "partial", "skipped"]


@dataclass(eq=False)
class CellRun:
    """One cell as the loop runs it: what its observers read, and the few things they may change
    (its load's limits before it starts, `enough` to end it early, why it was skipped, its stop
    verdict). `outcome` stays None for a cell skipped before it ran."""

    cell: Cell
    label: str
    load: CellLoad
    http: httpx.AsyncClient | None = None  # None: skipped before its server was asked
    pending_after: tuple[Cell, ...] = ()  # the cells after it not run yet (pruning may skip them)
    enough: asyncio.Event = field(default_factory=asyncio.Event)  # set: the cell's load may end now
    outcome: CellOutcome | None = None
    status: CellStatus = "pending"
    skip_reason: str | None = None
    stop: dict[str, Any] | None = None  # the stop rule's verdict (StopVerdict JSON)
    server: dict[str, Any] | None = None  # the managed server that measured it (Targets.servers)

    @property
    def ran(self) -> bool:
        """Whether its load ran (a cell skipped before it began has no outcome)."""
        return self.outcome is not None

    def report(self) -> CellReport:
        """What a cell's end says to someone elsewhere (picklable: a Ray task's driver)."""
        return CellReport(self.status, self.stop, self.skip_reason, self.server, self.outcome)


@dataclass(frozen=True)
class CellReport:
    """A cell's end as its task's driver hears it (bench.run.ray_groups): kept even if the task is lost later."""

    status: CellStatus
    stop: dict[str, Any] | None
    skip_reason: str | None
    server: dict[str, Any] | None
    outcome: CellOutcome | None  # the client's CPU and dispatch lags, for client health


class RunObserver(Protocol):
    """Hears the cells and records of a run, in this order per cell: `cell_started`, records
    (calibration probes), `load_started`, records, `load_warm` (not with --workers), `cell_ended`.
    A cell skipped before it ran hears `cell_ended` alone; one stopped before its load, no end."""

    def cell_started(self, run: CellRun) -> None:
        """A cell begins, before its calibration probes; its load's limits may change here."""

    def load_started(self, run: CellRun) -> None:
        """The cell's load starts now (calibrated, after its gap)."""

    def record_seen(self, record: RequestRecord) -> None:
        """A record, just written to requests.jsonl (on a Ray driver: a task's, in its order)."""

    async def load_warm(self, run: CellRun) -> None:
        """The warmup requests are done (the model is loaded)."""

    async def cell_ended(self, run: CellRun) -> None:
        """The cell's load is over (or it was skipped): its status, verdict and server are set by now,
        except for what the observers before this one settle."""


class SilentObserver:
    """A RunObserver that ignores everything: a subclass hears only what it overrides."""

    def cell_started(self, run: CellRun) -> None:
        return None

    def load_started(self, run: CellRun) -> None:
        return None

    def record_seen(self, record: RequestRecord) -> None:
        return None

    async def load_warm(self, run: CellRun) -> None:
        return None

    async def cell_ended(self, run: CellRun) -> None:
        return None
