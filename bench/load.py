"""Load schedules: closed loop (N workers) and open loop (constant or Poisson arrivals).

Owns the clock: every time is seconds since the run's t0 on time.monotonic(). Knows nothing of
HTTP: it calls a `send(spec) -> record` function (bench.clients.send bound to a client, or a
fake in tests) and hands each record to `on_record` the moment it completes.

Self-checks: dispatch lag (sent_s − scheduled_s) and the client process's CPU time. The client
is flagged `saturated` when lag p99 exceeds SATURATION_LAG_P99_S or its CPU time exceeds
SATURATION_CPU_FRACTION of wall time: then the numbers describe the client, not the server.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol, TypeVar

import numpy as np

from bench.clients.base import RequestInterrupted, RequestSpec
from bench.records import Phase, RequestRecord

SendFn = Callable[[RequestSpec], Awaitable[RequestRecord]]
# make_spec(repeat, request_index, phase, scheduled_s) -> the request to send
SpecFactory = Callable[[int, int, Phase, float], RequestSpec]
RecordSink = Callable[[RequestRecord], None]


class ConversationLike(Protocol):
    """A virtual user's conversation as the load engine drives it (bench.conversations)."""

    @property
    def finished(self) -> bool: ...

    def think_time_s(self) -> float: ...

    def next_spec(self, request_index: int, phase: Phase, scheduled_s: float) -> RequestSpec: ...

    def observe(self, record: RequestRecord) -> bool: ...


# start_conversation(repeat, conversation_index, phase) -> a new conversation
ConversationStarter = Callable[[int, int, Phase], ConversationLike]
# trace_steps(repeat) -> (offset seconds, conversation) per request of a trace, in time order; the
# same conversation object for the turns of one conversation (bench.trace, bench.specs).
TraceSteps = Callable[[int], list[tuple[float, ConversationLike]]]

SATURATION_LAG_P99_S = 0.05  # a loop this late means arrivals are no longer what was asked
SATURATION_CPU_FRACTION = 0.8  # of one core: past this, the client competes for its own loop
# Dispatch lags kept per cell: a uniform sample of this many (reservoir sampling), so an hour at
# hundreds of requests per second holds the client's memory flat; p99 of 10k draws is within a
# fraction of a percentile of the exact one.
LAG_SAMPLE_SIZE = 10_000

T = TypeVar("T")
LoopT = TypeVar("LoopT", bound=asyncio.AbstractEventLoop)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (less client CPU per request).

    The one event loop policy of every load bench drives: `bench run`, `bench perf` and its workers.
    The coroutine is closed on the way out, so one interrupted before its loop started is not
    reported "never awaited" at exit.
    """
    try:
        with asyncio.Runner(loop_factory=uninterrupted(_loop_factory())) as runner:
            return runner.run(coroutine)
    finally:
        coroutine.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # optional: not every platform has it (Windows)
    except ModuleNotFoundError as error:
        if error.name != "uvloop":
            raise
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def uninterrupted(factory: Callable[[], LoopT]) -> Callable[[], LoopT]:
    """`factory` with SIGINT and SIGTERM handled only after it returns.

    Ctrl-C (or a SIGTERM handler that raises KeyboardInterrupt, as `bench perf` installs) landing
    inside an event loop's constructor leaves a half-built loop whose __del__ prints a traceback at
    exit (AttributeError: no attribute '_ssock'). The Python-level handlers are swapped for a
    recorder instead of masking the signal, because a mask covers one thread and the kernel hands
    a process signal to any thread that does not block it. Held signals then go to the handlers
    that were in place, with the loop whole (and closed, if one raises).
    """
    def make() -> LoopT:
        if threading.current_thread() is not threading.main_thread():
            return factory()  # only the main thread may set handlers, and only it receives them
        held: list[tuple[int, FrameType | None]] = []
        previous = {signum: signal.signal(signum, lambda number, frame: held.append((number, frame)))
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            loop = factory()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        try:
            for signum, frame in held:
                _deliver(signum, frame, previous[signum])
        except BaseException:
            loop.close()
            raise
        return loop

    return make


def _deliver(signum: int, frame: FrameType | None, handler: Any) -> None:
    """Hand a held signal to the handler that was in place when it arrived."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action (SIGTERM: end the process), now
    # SIG_IGN, or None (a handler not set from Python): nothing to do


class Clock:
    """Run-relative monotonic time."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.t0_epoch_s = time.time() - (time.monotonic() - self.t0)

    def now_s(self) -> float:
        return time.monotonic() - self.t0


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


@dataclass(frozen=True)
class CellLoad:
    """The load settings of one cell."""

    arrival: str = "closed"  # closed | constant | poisson
    concurrency: int | None = 1  # closed: workers; open: cap on in-flight (None = no cap)
    rate_rps: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0
    repeats: int = 1
    seed: int | None = None
    schedule_key: str = ""  # seeds the Poisson arrivals (the cell id), so runs repeat exactly
    # One client process's slice of the cell (bench run --workers N): request indexes worker,
    # worker+workers, ...; an open loop sends those arrivals of the one schedule. Concurrency,
    # requests and warmup are already this worker's share.
    worker: int = 0
    workers: int = 1
    warmup_total: int | None = None  # the whole cell's warmup (None: warmup_requests)


@dataclass
class CellOutcome:
    """What the load engine observed for one cell (the records went to the sink)."""

    complete: bool
    dispatched: int = 0
    completed: int = 0
    dispatch_lags_s: list[float] = field(default_factory=list)  # all, or a uniform sample
    cpu_s: float = 0.0
    wall_s: float = 0.0
    lags_seen: int = 0
    _lag_rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add_lag(self, lag_s: float) -> None:
        """Keep a dispatch lag: every one up to LAG_SAMPLE_SIZE, then a uniform sample (Algorithm R)."""
        self.lags_seen += 1
        if len(self.dispatch_lags_s) < LAG_SAMPLE_SIZE:
            self.dispatch_lags_s.append(lag_s)
            return
        slot = self._lag_rng.randrange(self.lags_seen)
        if slot < LAG_SAMPLE_SIZE:
            self.dispatch_lags_s[slot] = lag_s


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


class _Dispatcher:
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
        pending = {task for task in tasks if not task.done()}
        abort_waiter = asyncio.ensure_future(self.stop.abort.wait())
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


async def _closed_loop(d: _Dispatcher, clock: Clock, workers: int, total: int | None,
                       deadline_s: float | None, repeat: int, phase: Phase,
                       indexes: itertools.count[int]) -> None:
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


async def _conversation_loop(d: _Dispatcher, clock: Clock, users: int, total: int | None,
                             deadline_s: float | None, repeat: int, phase: Phase,
                             indexes: itertools.count[int], start: ConversationStarter) -> None:
    """Closed loop of virtual users: each sends its conversation turn by turn, thinking between
    turns, then starts a new one; `total` counts requests (turns), not conversations."""
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
                if pause_s > 0 and (await _stopped_within(d, pause_s) or not may_send()):
                    return
                issued += 1
                if not await d.turn(conversation, next(indexes), phase, clock.now_s()):
                    break

    await d.wait_all([asyncio.ensure_future(user()) for _ in range(users)])


async def _trace_loop(d: _Dispatcher, clock: Clock, steps: list[tuple[float, ConversationLike]],
                      indexes: itertools.count[int]) -> None:
    """Each request at its trace offset; a conversation's turn waits for its previous turn."""
    start_s = clock.now_s()
    turn_locks: dict[int, asyncio.Lock] = {}
    tasks: list[asyncio.Task[None]] = []

    async def send_turn(conversation: ConversationLike, scheduled_s: float, lock: asyncio.Lock) -> None:
        async with lock:  # asyncio locks are FIFO: turns go out in trace order
            await d.turn(conversation, next(indexes), "measure", scheduled_s)

    for offset_s, conversation in steps:
        scheduled_s = start_s + offset_s
        delay_s = scheduled_s - clock.now_s()
        if delay_s > 0 and await _stopped_within(d, delay_s):
            break
        if d.stop.stopped:
            break
        lock = turn_locks.setdefault(id(conversation), asyncio.Lock())
        tasks.append(asyncio.ensure_future(send_turn(conversation, scheduled_s, lock)))
        tasks = [t for t in tasks if not t.done() or t.cancelled() or t.exception() is not None]
    await d.wait_all(tasks)


def arrival_offsets_s(arrival: str, rate_rps: float, rng: random.Random) -> Iterator[float]:
    """Endless arrival times (seconds from the start): constant spacing, or Poisson (exponential gaps)."""
    offset = 0.0
    while True:
        yield offset
        offset += 1.0 / rate_rps if arrival == "constant" else rng.expovariate(rate_rps)


async def _open_loop(d: _Dispatcher, clock: Clock, load: CellLoad, repeat: int) -> None:
    assert load.rate_rps is not None
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

    for count, offset_s in enumerate(arrival_offsets_s(load.arrival, load.rate_rps, rng)):
        if load.requests is not None and count >= load.requests:
            break
        if load.duration_s is not None and offset_s >= load.duration_s:
            break
        if count % load.workers != load.worker:
            continue  # another client process sends this arrival
        scheduled_s = start_s + offset_s
        delay_s = scheduled_s - clock.now_s()
        if delay_s > 0 and await _stopped_within(d, delay_s):
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


async def _stopped_within(d: _Dispatcher, delay_s: float) -> bool:
    """Sleep delay_s unless the run stops or the cell knows enough first (then True)."""
    waiters = {asyncio.ensure_future(d.stop.stop_dispatch.wait()), asyncio.ensure_future(d.enough.wait())}
    try:
        done, _ = await asyncio.wait(waiters, timeout=delay_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


async def run_cell_load(load: CellLoad, make_spec: SpecFactory, send: SendFn,
                        on_record: RecordSink, clock: Clock, stop: StopControl,
                        start_conversation: ConversationStarter | None = None,
                        enough: asyncio.Event | None = None,
                        ready: Callable[[], Awaitable[None]] | None = None,
                        trace_steps: TraceSteps | None = None) -> CellOutcome:
    """Drive one cell: for each repeat, warmup (closed loop) then the measured schedule.

    With `start_conversation`, the closed loop's workers are virtual users holding conversations.
    `enough` (optional) ends the measured schedule early once set, the cell still complete;
    `ready` is awaited once, after the first warmup (several client processes line up there).
    """
    d = _Dispatcher(send, make_spec, on_record, stop, enough)
    cpu_start_s, wall_start_s = time.process_time(), clock.now_s()
    for repeat in range(load.repeats):
        indexes = itertools.count(load.worker, load.workers)
        if load.warmup_requests and not stop.stopped:
            workers = min(load.concurrency or 1, load.warmup_requests)
            if start_conversation is not None:
                await _conversation_loop(d, clock, workers, load.warmup_requests, None, repeat,
                                         "warmup", indexes, start_conversation)
            else:
                await _closed_loop(d, clock, workers, load.warmup_requests, None, repeat, "warmup",
                                   indexes)
        if ready is not None:
            await ready()
            ready = None
        if stop.stopped:
            break
        if trace_steps is not None:
            await _trace_loop(d, clock, trace_steps(repeat), indexes)
        elif start_conversation is not None:
            deadline_s = clock.now_s() + load.duration_s if load.duration_s is not None else None
            await _conversation_loop(d, clock, load.concurrency or 1, load.requests, deadline_s,
                                     repeat, "measure", indexes, start_conversation)
        elif load.arrival == "closed":
            deadline_s = clock.now_s() + load.duration_s if load.duration_s is not None else None
            await _closed_loop(d, clock, load.concurrency or 1, load.requests, deadline_s, repeat,
                               "measure", indexes)
        else:
            await _open_loop(d, clock, load, repeat)
        if stop.stopped or d.enough.is_set():
            break
    d.outcome.cpu_s = time.process_time() - cpu_start_s
    d.outcome.wall_s = clock.now_s() - wall_start_s
    if stop.stopped:
        d.outcome.complete = False
    return d.outcome


@dataclass(frozen=True)
class ClientHealth:
    cpu_s: float
    wall_s: float
    dispatch_lag_p99_s: float | None
    saturated: bool


def client_health(outcomes: list[CellOutcome]) -> ClientHealth:
    """Was the load generator itself the bottleneck? (see SATURATION_* above)"""
    lags = [lag for outcome in outcomes for lag in outcome.dispatch_lags_s]
    cpu_s = sum(outcome.cpu_s for outcome in outcomes)
    wall_s = sum(outcome.wall_s for outcome in outcomes)
    lag_p99_s = float(np.percentile(lags, 99)) if lags else None
    saturated = (lag_p99_s is not None and lag_p99_s > SATURATION_LAG_P99_S) or (
        wall_s > 1.0 and cpu_s / wall_s > SATURATION_CPU_FRACTION
    )
    return ClientHealth(cpu_s=round(cpu_s, 3), wall_s=round(wall_s, 3),
                        dispatch_lag_p99_s=lag_p99_s, saturated=saturated)
