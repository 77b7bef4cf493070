"""One cell's load: its settings (CellLoad) and the driver that runs warmup then the measured
schedule for each repeat (`run_cell_load`), handing each record to `on_record` as it completes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.load.clock import Clock
from bench.load.control import StopControl
from bench.load.dispatch import Dispatcher, RecordSink, SendFn
from bench.workload.specs import ConversationStarter, SpecFactory, TraceSteps
from bench.load.health import CellOutcome
from bench.load.schedules import _closed_loop, _conversation_loop, _open_loop, _trace_loop


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
    d = Dispatcher(send, make_spec, on_record, stop, enough)
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
