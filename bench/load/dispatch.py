"""The dispatcher every schedule sends through: requests as tasks, records to the sink the moment
they complete, what is in flight, and the waits that end early on a stop.

Knows nothing of HTTP: it calls a `send(spec) -> record` function (bench.clients.send bound to a
client, or a fake in tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bench.clients.base import RequestInterrupted, RequestSpec
from bench.load.control import StopControl
from bench.load.health import CellOutcome
from bench.records.record import Phase, RequestRecord
from bench.workload.specs import ConversationLike, SpecFactory

SendFn = Callable[[RequestSpec], Awaitable[RequestRecord]]
RecordSink = Callable[[RequestRecord], None]


class Dispatcher:
    """Sends requests as tasks, records results, and tracks what is in flight."""

    def __init__(self, send: SendFn, make_spec: SpecFactory, on_record: RecordSink,
                 stop: StopControl, enough: asyncio.Event | None = None) -> None:
        self.send, self.make_spec, self.on_record, self.stop = send, make_spec, on_record, stop
        # Set when the cell knows enough (stop_when, bench.run.adaptive): no new requests, the
        # cell stays complete; in-flight requests finish and are recorded.
        self.enough = enough if enough is not None else asyncio.Event()
        self.outcome = CellOutcome(complete=True)
        self.in_flight = 0
        self.max_in_flight = 0

    async def one(self, repeat: int, index: int, phase: Phase, scheduled_s: float) -> None:
        await self.send_spec(self.make_spec(repeat, index, phase, scheduled_s))

    async def turn(self, conversation: ConversationLike, index: int, phase: Phase,
                   scheduled_s: float) -> bool:
        """Send the conversation's next turn; False when the conversation ends here."""
        spec = conversation.next_spec(index, phase, scheduled_s)
        return await self.send_spec(spec, conversation)

    async def send_spec(self, spec: RequestSpec, conversation: ConversationLike | None = None) -> bool:
        self.outcome.dispatched += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            record = await self.send(spec)
        except RequestInterrupted as interrupted:
            # Cancelled in flight (grace over): the record says so; the cancellation goes on.
            self.outcome.completed += 1
            self.on_record(interrupted.record)
            raise
        finally:
            self.in_flight -= 1
        if record.sent_s is not None and record.scheduled_s is not None:
            self.outcome.add_lag(record.sent_s - record.scheduled_s)
        self.outcome.completed += 1
        # The conversation reads the reply (and drops its text unless stored) before it is written.
        keep_going = conversation.observe(record) if conversation is not None else True
        self.on_record(record)
        return keep_going

    async def wait_all(self, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for tasks; cancel them if the run is aborted (second Ctrl-C, grace over)."""
        pending: set[asyncio.Future[Any]] = {task for task in tasks if not task.done()}
        abort_waiter: asyncio.Future[Any] = asyncio.ensure_future(self.stop.abort.wait())
        try:
            while pending:
                done, pending = await asyncio.wait(
                    pending | {abort_waiter}, return_when=asyncio.FIRST_COMPLETED
                )
                if abort_waiter in done:
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    self.outcome.complete = False
                    return
                pending.discard(abort_waiter)
                failed = [task for task in done if not task.cancelled() and task.exception()]
                if failed:
                    # The run ends with this error (a full disk, a bug): the other workers stop
                    # here and their outcomes are collected, not left to print "Task exception
                    # was never retrieved" tracebacks after the one-line error.
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    for task in failed[1:]:
                        task.exception()
                    raise failed[0].exception()  # type: ignore[misc]
        finally:
            abort_waiter.cancel()


async def stopped_within(d: Dispatcher, delay_s: float) -> bool:
    """Sleep delay_s unless the run stops or the cell knows enough first (then True)."""
    waiters = {asyncio.ensure_future(d.stop.stop_dispatch.wait()), asyncio.ensure_future(d.enough.wait())}
    try:
        done, _ = await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)
