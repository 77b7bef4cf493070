"""Stop control shared by a run: stop dispatching (graceful) or abort in flight, and the
scenario's abort_on limits that ask for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bench.records.record import RequestRecord


@dataclass
class StopControl:
    """Interrupt state shared by the run: stop dispatching (graceful), or abort in-flight too."""

    stop_dispatch: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None

    def request_stop(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop_dispatch.set()

    def request_abort(self, reason: str) -> None:
        self.request_stop(reason)
        self.abort.set()

    @property
    def stopped(self) -> bool:
        return self.stop_dispatch.is_set()


@dataclass
class AbortTracker:
    """The scenario's abort_on limits, fed with measured records."""

    error_rate: float | None = None
    consecutive_failures: int | None = None
    min_requests: int = 20
    seen: int = 0
    failed: int = 0
    consecutive: int = 0

    def observe(self, record: RequestRecord) -> str | None:
        """Count one record; return why to abort, or None."""
        if record.phase != "measure":
            return None
        self.seen += 1
        if record.error_class is None:
            self.consecutive = 0
            return None
        self.failed += 1
        self.consecutive += 1
        if self.consecutive_failures is not None and self.consecutive >= self.consecutive_failures:
            return f"abort_on: {self.consecutive} consecutive failures (last: {record.error_class})"
        if (
            self.error_rate is not None
            and self.seen >= self.min_requests
            and self.failed / self.seen > self.error_rate
        ):
            return f"abort_on: error rate {self.failed / self.seen:.0%} > {self.error_rate:.0%}"
        return None
