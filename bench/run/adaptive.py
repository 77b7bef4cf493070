"""Adaptive cells while they run: feed measured records to the stop rule, stop the load once met.

The hot path (`observe`, once per completed request) appends the record and compares a count;
the bootstrap runs in a thread at geometrically spaced request counts
(bench.analysis.stopping.next_check), one evaluation at a time, so dispatch never waits on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import fields

import pandas as pd

from bench.analysis.stopping import StopRule, StopVerdict, final_verdict, judge, next_check
from bench.records import RequestRecord

_COLUMNS = ("cell_id", "phase", "repeat", "surface", "error_class", "scheduled_s", "sent_s",
            "first_token_s", "end_s", "chunk_times_s", "output_tokens", "load_duration_ns",
            "prompt_eval_duration_ns")
assert set(_COLUMNS) <= {f.name for f in fields(RequestRecord)}


def records_frame(records: list[RequestRecord]) -> pd.DataFrame:
    """The columns request_metrics reads, from records still in memory."""
    return pd.DataFrame({name: [getattr(r, name) for r in records] for name in _COLUMNS})


class CellStopper:
    """One cell's stop rule: `observe` every record; `done` is set when the rule is met (the cell's
    own event when given: whatever else sets it ends the cell too, and the rule stops judging)."""

    def __init__(self, rule: StopRule, done: asyncio.Event | None = None) -> None:
        self.rule = rule
        self.done = done if done is not None else asyncio.Event()
        self.records: list[RequestRecord] = []
        self.verdict: StopVerdict | None = None
        self.judged = 0  # bootstraps run for this cell (the cost docs/scaling.md states)
        self._start_s: float | None = None
        self._last_end_s = 0.0
        self._next_check = rule.min_requests_for_metrics()
        self._pending: asyncio.Task[None] | None = None

    def observe(self, record: RequestRecord) -> None:
        if record.phase != "measure":
            return
        self.records.append(record)
        if record.sent_s is not None and (self._start_s is None or record.sent_s < self._start_s):
            self._start_s = record.sent_s
        self._last_end_s = max(self._last_end_s, record.end_s or 0.0)
        if len(self.records) >= self._next_check and self._pending is None and not self.done.is_set():
            self._next_check = next_check(len(self.records), self._next_check)
            self._pending = asyncio.get_running_loop().create_task(self._judge(list(self.records)))

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._start_s is None else max(0.0, self._last_end_s - self._start_s)

    async def _judge(self, snapshot: list[RequestRecord]) -> None:
        try:
            self.judged += 1
            verdict = await asyncio.to_thread(judge, records_frame(snapshot), self.rule, self.elapsed_s)
            if verdict.met and not self.done.is_set():
                self.verdict = verdict
                self.done.set()
        finally:
            self._pending = None

    async def finish(self, ended_by: str) -> StopVerdict:
        """The cell's verdict once its load ended (met earlier, or `ended_by` a limit/interrupt)."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
        if self.verdict is None:
            self.judged += 1
            self.verdict = await asyncio.to_thread(final_verdict, records_frame(self.records),
                                                   self.rule, self.elapsed_s, ended_by)
        return self.verdict
