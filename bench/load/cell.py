"""One cell's load: its settings (CellLoad) and the driver that runs warmup then the measured
schedule for each repeat (`run_cell_load`), handing each record to `on_record` as it completes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.load.arrival_shapes import ArrivalShape
from bench.load.clock import Clock
from bench.load.control import StopControl
from bench.load.dispatch import Dispatcher, RecordSink, SendFn
from bench.workload.specs import CellRequests, SpecFactory
from bench.load.health import CellOutcome
from bench.load.schedules import measured_schedule, warmup_schedule
from bench.records.cell_settings import UNCAPPED_IN_FLIGHT, CellSettings


@dataclass(frozen=True)
class CellLoad:
    """The load settings of one cell."""

    arrival: str = "closed"  # the schedule's name (bench.load.schedules.SCHEDULES): closed | constant | poisson | trace
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
    # An open loop's shape beyond a steady rate (bursts, ramp-up, stages); None: rate_rps, steady.
    shape: ArrivalShape | None = None

    @classmethod
    def for_cell(cls, settings: CellSettings, schedule_key: str, seed: int | None = None,
                 shape: ArrivalShape | None = None) -> CellLoad:
        """The load a planned cell offers (bench.plan decided its defaults)."""
        return cls(arrival=settings.arrival or "closed", concurrency=settings.concurrency,
                   rate_rps=settings.rate_rps, requests=settings.requests, duration_s=settings.duration_s,
                   warmup_requests=settings.warmup_requests, repeats=settings.repeat, seed=seed,
                   schedule_key=schedule_key, shape=shape)

    @property
    def streams(self) -> int:
        """Closed-loop streams (warmup, users): the concurrency; one when it sets none (an open loop)."""
        return self.concurrency if self.concurrency is not None else 1

    @property
    def in_flight_cap(self) -> int:
        """The most requests in flight at once: the concurrency, else UNCAPPED_IN_FLIGHT."""
        return self.concurrency if self.concurrency is not None else UNCAPPED_IN_FLIGHT


async def run_cell_load(load: CellLoad, requests: CellRequests | SpecFactory, send: SendFn,
                        on_record: RecordSink, clock: Clock, stop: StopControl,
                        enough: asyncio.Event | None = None,
                        ready: Callable[[], Awaitable[None]] | None = None) -> CellOutcome:
    """Drive one cell: for each repeat, warmup (a closed loop) then the measured schedule.

    `requests` is what the cell sends (bench.workload.specs.cell_requests), or a plain request
    maker for single requests. `enough` (optional) ends the measured schedule early once set, the
    cell still complete; `ready` is awaited once, after the first warmup (several client processes
    line up there).
    """
    if not isinstance(requests, CellRequests):
        requests = CellRequests(requests)
    warmup, measured = warmup_schedule(load, requests), measured_schedule(load, requests)
    d = Dispatcher(send, requests.make_spec, on_record, stop, enough)
    cpu_start_s, wall_start_s = time.process_time(), clock.now_s()
    for repeat in range(load.repeats):
        indexes = itertools.count(load.worker, load.workers)
        if warmup is not None and not stop.stopped:
            await warmup.run(d, clock, repeat, indexes)
        if ready is not None:
            await ready()
            ready = None
        if stop.stopped:
            break
        await measured.run(d, clock, repeat, indexes)
        if stop.stopped or d.enough.is_set():
            break
    d.outcome.cpu_s = time.process_time() - cpu_start_s
    d.outcome.wall_s = clock.now_s() - wall_start_s
    if stop.stopped:
        d.outcome.complete = False
    return d.outcome
