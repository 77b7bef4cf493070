"""Who hears a run as it goes besides its own records: each record once written (calibration
probes included) and each cell's start and end. A Ray task's stream to its driver is one
(bench.run.ray_task); the cell loop tells every observer it was given, in order."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from bench.records import RequestRecord

CellEvent = Literal["started", "ended"]


class RunObserver(Protocol):
    """Hears the records and the cells of a run (bench.run.runner.CellLoop)."""

    def record_seen(self, record: RequestRecord) -> None:
        """A record, just written to requests.jsonl."""

    def cell_event(self, event: CellEvent, cell_id: str, details: dict[str, Any]) -> None:
        """"started" as a cell begins; "ended" once its last record is out, with details
        {status, stop, skip_reason, server, outcome} (CellLoop._tell_cell)."""
