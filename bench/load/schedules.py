"""The arrival schedules: each one object, chosen by name (GuideLLM's strategies, k6's executors).

A schedule sends one repeat of a cell's requests through the dispatcher and returns when it is done,
stopped (Ctrl-C, abort_on) or told the cell knows enough (stop_when). Its name is the scenario's
`load.arrival` (closed, constant, poisson, trace), or `conversation` for a multi-turn workload; a
saturation sweep's steps are cells of these (closed for its synchronous and throughput steps, constant
or poisson for its rate steps, whose rates bench.run.sweep sets between cells). A new arrival shape
is a class with `for_cell` and `run`, registered in SCHEDULES under its `load.arrival` name.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from bench.load.arrival_shapes import ArrivalShape
from bench.load.clock import Clock
from bench.load.dispatch import Dispatcher, stopped_within
from bench.records.record import Phase
from bench.workload.specs import CellRequests, ConversationLike, ConversationStarter, TraceSteps

if TYPE_CHECKING:
    from bench.load.cell import CellLoad

Indexes = itertools.count  # request indexes of this client process: worker, worker + workers, ...


class Schedule(Protocol):
    """One repeat of a cell's requests, sent through the dispatcher."""

    async def run(self, d: Dispatcher, clock: Clock, repeat: int, indexes: Indexes[int]) -> None: ...


def _deadline_s(clock: Clock, duration_s: float | None) -> float | None:
    return clock.now_s() + duration_s if duration_s is not None else None


@dataclass(frozen=True)
class ClosedLoop:
    """N workers, each sending its next request when its last one ends (`arrival: closed`)."""

    name: ClassVar[str] = "closed"
    workers: int
    total: int | None  # requests over all workers; None: until the duration ends
    duration_s: float | None = None
    phase: Phase = "measure"

    @classmethod
    def for_cell(cls, load: CellLoad, requests: CellRequests) -> ClosedLoop:
        return cls(load.streams, load.requests, load.duration_s)

    async def run(self, d: Dispatcher, clock: Clock, repeat: int, indexes: Indexes[int]) -> None:
        workers, total, phase = self.workers, self.total, self.phase
        deadline_s = _deadline_s(clock, self.duration_s)
        issued = 0

        async def worker() -> None:
            nonlocal issued
            while not d.stop.stopped and not d.enough.is_set():
                if total is not None and issued >= total:
                    return
                if deadline_s is not None and clock.now_s() >= deadline_s:
                    return
                issued += 1
                await d.one(repeat, next(indexes), phase, clock.now_s())

        # A worker beyond the request count would only start and return: never start more.
        started = workers if total is None else min(workers, total)
        await d.wait_all([asyncio.ensure_future(worker()) for _ in range(started)])


@dataclass(frozen=True)
class Conversations:
    """Virtual users (a closed loop): each sends its conversation turn by turn, thinking between
    turns, then starts a new one; `total` counts requests (turns), not conversations."""

    name: ClassVar[str] = "conversation"
    users: int
    total: int | None
    start: ConversationStarter
    duration_s: float | None = None
    phase: Phase = "measure"

    @classmethod
    def for_cell(cls, load: CellLoad, requests: CellRequests) -> Conversations:
        assert requests.start_conversation is not None
        return cls(load.streams, load.requests, requests.start_conversation, load.duration_s)

    async def run(self, d: Dispatcher, clock: Clock, repeat: int, indexes: Indexes[int]) -> None:
        users, total, phase, start = self.users, self.total, self.phase, self.start
        deadline_s = _deadline_s(clock, self.duration_s)
        issued = 0
        conversation_indexes = itertools.count()

        def may_send() -> bool:
            if d.stop.stopped or d.enough.is_set() or (total is not None and issued >= total):
                return False
            return deadline_s is None or clock.now_s() < deadline_s

        async def user() -> None:
            nonlocal issued
            while may_send():
                conversation = start(repeat, next(conversation_indexes), phase)
                while may_send() and not conversation.finished:
                    pause_s = conversation.think_time_s()
                    if pause_s > 0 and (await stopped_within(d, pause_s) or not may_send()):
                        return
                    issued += 1
                    if not await d.turn(conversation, next(indexes), phase, clock.now_s()):
                        break

        await d.wait_all([asyncio.ensure_future(user()) for _ in range(users)])


def arrival_offsets_s(arrival: str, rate_rps: float, rng: random.Random) -> Iterator[float]:
    """Endless arrival times (seconds from the start) at a steady rate: constant spacing, or Poisson."""
    return steady_shape(arrival, rate_rps).offsets_s(rng)


def steady_shape(arrival: str, rate_rps: float | None) -> ArrivalShape:
    return ArrivalShape(arrival="constant" if arrival == "constant" else "poisson", rate_rps=rate_rps)


@dataclass(frozen=True)
class OpenLoop:
    """Arrivals at a rate, whatever is in flight (`arrival: constant` or `poisson`), capped by
    `concurrency` when it is set. Seeded by the cell id, so a rerun sends the same schedule."""

    name: ClassVar[str] = "open"
    load: CellLoad

    @classmethod
    def for_cell(cls, load: CellLoad, requests: CellRequests) -> OpenLoop:
        return cls(load)

    async def run(self, d: Dispatcher, clock: Clock, repeat: int, indexes: Indexes[int]) -> None:
        load = self.load
        # A shape from the scenario (bursts, ramp-up, stages: bench.load.arrival_shapes), else the steady rate.
        shape = load.shape or steady_shape(load.arrival, load.rate_rps)
        rng = random.Random(f"{load.seed}:{load.schedule_key}:{repeat}:arrivals")
        cap = asyncio.Semaphore(load.concurrency) if load.concurrency else None
        start_s = clock.now_s()
        tasks: list[asyncio.Task[None]] = []

        async def capped(index: int, scheduled_s: float) -> None:
            try:
                await d.one(repeat, index, "measure", scheduled_s)
            finally:
                if cap is not None:
                    cap.release()

        for count, offset_s in enumerate(shape.offsets_s(rng)):
            if load.requests is not None and count >= load.requests:
                break
            if load.duration_s is not None and offset_s >= load.duration_s:
                break
            if count % load.workers != load.worker:
                continue  # another client process sends this arrival
            scheduled_s = start_s + offset_s
            delay_s = scheduled_s - clock.now_s()
            if delay_s > 0 and await stopped_within(d, delay_s):
                break
            if d.stop.stopped or d.enough.is_set():
                break
            if cap is not None:
                # Over the cap the request waits here; its lateness shows as dispatch lag.
                await cap.acquire()
            # The schedule's own numbering after the cell's warmup: the same index (and so the same
            # prompt) for an arrival whichever process sends it.
            first_index = load.warmup_requests if load.warmup_total is None else load.warmup_total
            tasks.append(asyncio.ensure_future(capped(first_index + count, scheduled_s)))
            # Drop finished tasks so an hour-long run keeps a short list; failures stay to raise.
            tasks = [t for t in tasks if not t.done() or t.cancelled() or t.exception() is not None]
        await d.wait_all(tasks)


@dataclass(frozen=True)
class TraceReplay:
    """Each request at its trace offset; a conversation's turn waits for its previous turn
    (`arrival: trace`)."""

    name: ClassVar[str] = "trace"
    steps: TraceSteps

    @classmethod
    def for_cell(cls, load: CellLoad, requests: CellRequests) -> TraceReplay:
        assert requests.trace_steps is not None
        return cls(requests.trace_steps)

    async def run(self, d: Dispatcher, clock: Clock, repeat: int, indexes: Indexes[int]) -> None:
        steps = self.steps(repeat)
        start_s = clock.now_s()
        turn_locks: dict[int, asyncio.Lock] = {}
        tasks: list[asyncio.Task[None]] = []

        async def send_turn(conversation: ConversationLike, scheduled_s: float, lock: asyncio.Lock) -> None:
            async with lock:  # asyncio locks are FIFO: turns go out in trace order
                await d.turn(conversation, next(indexes), "measure", scheduled_s)

        for offset_s, conversation in steps:
            scheduled_s = start_s + offset_s
            delay_s = scheduled_s - clock.now_s()
            if delay_s > 0 and await stopped_within(d, delay_s):
                break
            if d.stop.stopped:
                break
            lock = turn_locks.setdefault(id(conversation), asyncio.Lock())
            tasks.append(asyncio.ensure_future(send_turn(conversation, scheduled_s, lock)))
            tasks = [t for t in tasks if not t.done() or t.cancelled() or t.exception() is not None]
        await d.wait_all(tasks)


class ScheduleKind(Protocol):
    def for_cell(self, load: CellLoad, requests: CellRequests) -> Schedule: ...


# Every schedule by the name that picks it.
SCHEDULES: dict[str, ScheduleKind] = {
    "closed": ClosedLoop,
    "conversation": Conversations,
    "constant": OpenLoop,
    "poisson": OpenLoop,
    "trace": TraceReplay,
}


def schedule_name(load: CellLoad, requests: CellRequests) -> str:
    """The measured schedule's name: the arrival, or `conversation` for a multi-turn closed loop."""
    if load.arrival == "closed" and requests.start_conversation is not None:
        return "conversation"
    return load.arrival


def measured_schedule(load: CellLoad, requests: CellRequests) -> Schedule:
    """The schedule a cell's measured requests follow."""
    name = schedule_name(load, requests)
    if name not in SCHEDULES:
        raise ValueError(f"arrival {name!r}: no such schedule (known: {', '.join(sorted(SCHEDULES))})")
    return SCHEDULES[name].for_cell(load, requests)


def warmup_schedule(load: CellLoad, requests: CellRequests) -> Schedule | None:
    """Warmup is a closed loop (of virtual users, for conversations) whatever the measured schedule."""
    if not load.warmup_requests:
        return None
    workers = min(load.streams, load.warmup_requests)
    if requests.start_conversation is not None:
        return Conversations(workers, load.warmup_requests, requests.start_conversation, phase="warmup")
    return ClosedLoop(workers, load.warmup_requests, phase="warmup")
