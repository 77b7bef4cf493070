"""`bench run --workers N`: one cell's load spread over N client processes (bench.workers).

Each process runs bench.load.run_cell_load on its share of the cell (bench.load.CellLoad.worker):
a closed loop's streams and requests split evenly, an open loop's one arrival schedule dealt out
round-robin (so every arrival keeps its time, index and prompt whichever process sends it). The
processes share the parent's t0 (one clock), start measuring at one barrier after their warmup,
and stream every record back to the parent, which writes, counts and judges them exactly as in
one process. The parent's stop (stop_when met, Ctrl-C, abort_on) reaches the workers as a flag.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading
from dataclasses import dataclass
from typing import Any

from bench import clients
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client
from bench.load import CellLoad, CellOutcome, Clock, RecordSink, StopControl, run_async, run_cell_load
from bench.plan import Cell
from bench.prompts import Calibration
from bench.run.checks import prompt_source
from bench.records import RequestRecord
from bench.specs import spec_factory
from bench.scenario import Scenario
from bench.workers import READY_DEADLINE_S, WorkerLink, WorkerPool, split_evenly


@dataclass(frozen=True)
class CellWorkerPlan:
    """What one client process needs to run its share of a cell (picklable)."""

    scenario: dict[str, Any]  # Scenario.model_dump(mode="json"): the resolved scenario
    cell: Cell
    load: CellLoad  # this worker's share
    calibrations: dict[tuple[str, str, str], Calibration]
    base_url: str
    api_key: str | None
    transport: str


def split_load(load: CellLoad, workers: int) -> list[CellLoad]:
    """The cell's load as `workers` shares (fewer when there is not enough to share)."""
    closed = load.arrival == "closed"
    parts = workers
    if closed:
        parts = min(parts, load.concurrency or 1, load.requests or parts)
    elif load.requests is not None:
        parts = min(parts, load.requests)
    parts = max(1, parts)
    streams = split_evenly(load.concurrency, parts) if load.concurrency else [None] * parts
    requests = split_evenly(load.requests, parts) if closed and load.requests else [load.requests] * parts
    warmups = (split_evenly(load.warmup_requests, parts) if load.warmup_requests else []) + [0] * parts
    return [dataclasses.replace(load, concurrency=streams[index], requests=requests[index],
                                warmup_requests=warmups[index], warmup_total=load.warmup_requests,
                                worker=index, workers=parts)
            for index in range(parts)]


def _worker_main(plan: CellWorkerPlan, link: WorkerLink) -> CellOutcome:
    """One client process: run its share, stream records back, return its outcome."""
    # Ctrl-C reaches the whole process group; the parent decides, and tells us through the link.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    scenario = Scenario.model_validate(plan.scenario)
    prompts = prompt_source(scenario)
    prompts.calibrations.update(plan.calibrations)
    make_spec = spec_factory(plan.cell, scenario, prompts, worker=link.worker)
    clock = Clock(link.t0)

    async def drive() -> CellOutcome:
        loop = asyncio.get_running_loop()
        stop, enough = StopControl(), asyncio.Event()
        finished = threading.Event()

        def watch_stop() -> None:
            stopped = False
            while not finished.is_set():
                if not stopped and link.wait_stop(0.2):
                    loop.call_soon_threadsafe(enough.set)
                    stopped = True
                if link.abort_requested():  # the parent's grace is over: cancel what is in flight
                    loop.call_soon_threadsafe(stop.request_abort, "interrupted")
                    return
                if stopped:
                    finished.wait(0.2)

        watcher = threading.Thread(target=watch_stop, daemon=True)
        watcher.start()
        http = make_http_client(plan.base_url, plan.api_key, plan.load.concurrency or 256,
                                timeout_s=scenario.load.timeout_s, transport=plan.transport)
        try:
            async def send(spec: RequestSpec) -> RequestRecord:
                return await clients.send(http, spec, clock.t0)

            async def ready() -> None:
                await asyncio.to_thread(link.ready)

            return await run_cell_load(plan.load, make_spec, send, link.send, clock, stop,
                                       enough=enough, ready=ready)
        finally:
            finished.set()
            await http.aclose()

    return run_async(drive())


async def run_cell_in_workers(plans: list[CellWorkerPlan], t0: float, on_record: RecordSink,
                              stop: StopControl, enough: asyncio.Event) -> CellOutcome:
    """Run a cell's shares in processes; records go to on_record on this loop; merged outcome."""
    loop = asyncio.get_running_loop()
    pool = WorkerPool(_worker_main, plans, t0)

    async def relay_stop() -> None:
        waiters = [asyncio.ensure_future(stop.stop_dispatch.wait()), asyncio.ensure_future(enough.wait())]
        aborted = asyncio.ensure_future(stop.abort.wait())
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            pool.stop_dispatch()
            await aborted  # grace over (or a second Ctrl-C): workers cancel and record their in-flight requests
            pool.abort()
        finally:
            for waiter in [*waiters, aborted]:
                waiter.cancel()

    relay = asyncio.ensure_future(relay_stop())
    timeout_s = max(plan.load.duration_s or 0.0 for plan in plans) + READY_DEADLINE_S + 600.0
    try:
        outcomes = await asyncio.to_thread(
            pool.collect, lambda _worker, record: loop.call_soon_threadsafe(on_record, record), timeout_s)
    finally:
        relay.cancel()
    await asyncio.sleep(0)  # let the records scheduled by the collector land before we return
    return merge_outcomes(outcomes)


def merge_outcomes(outcomes: list[CellOutcome]) -> CellOutcome:
    """One cell outcome from the workers': counts and CPU add up, wall is the longest."""
    merged = CellOutcome(complete=all(o.complete for o in outcomes),
                         dispatched=sum(o.dispatched for o in outcomes),
                         completed=sum(o.completed for o in outcomes),
                         cpu_s=sum(o.cpu_s for o in outcomes), wall_s=max(o.wall_s for o in outcomes))
    for outcome in outcomes:
        for lag_s in outcome.dispatch_lags_s:
            merged.add_lag(lag_s)
    return merged
