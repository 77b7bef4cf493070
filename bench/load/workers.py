"""Client processes: one cell's load spread over N spawned workers on one clock (`bench run
--workers N`), and the pool itself (also `bench perf --workers N`, bench.perf.workers).

Every process stamps time.monotonic() (CLOCK_MONOTONIC: one clock for every process on a Linux
host) relative to the parent's t0, so merged records lie on one time axis with no offset to
correct. Workers warm up, then wait on one barrier (`WorkerLink.ready`), so their measured windows
start together. The parent can ask them to stop dispatching (`WorkerPool.stop_dispatch`), e.g. when
a cell's stop_when is met or on Ctrl-C.

A cell's share per process (bench.load.cell.CellLoad.worker): a closed loop's streams and requests
split evenly, an open loop's one arrival schedule dealt out round-robin (so every arrival keeps its
time, index and prompt whichever process sends it). Records stream back to the parent, which
writes, counts and judges them exactly as in one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import clients
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client
from bench.load.cell import CellLoad, run_cell_load
from bench.load.clock import Clock, run_async
from bench.load.control import StopControl
from bench.load.dispatch import RecordSink
from bench.load.health import CellOutcome
from bench.plan import Cell
from bench.records.record import RequestRecord
from bench.scenario import Scenario
from bench.workload.prompts import Calibration, prompt_source
from bench.workload.specs import cell_requests

# Spawning N interpreters that import bench, then warming each up, on a busy machine.
READY_DEADLINE_S = 120.0
# How often a worker checks that its parent still lives (see _end_with_parent).
PARENT_CHECK_S = 0.5


def split_evenly(total: int, workers: int) -> list[int]:
    """`total` shared over at most `workers` parts: as even as possible, every part at least one."""
    workers = max(1, min(workers, total))
    share, extra = divmod(total, workers)
    return [share + (1 if index < extra else 0) for index in range(workers)]


@dataclass
class WorkerLink:
    """A worker process's side: the shared t0, the start barrier, the way back, the stop flag."""

    worker: int
    workers: int
    t0: float
    _barrier: Any
    _results: Any
    _stop: Any
    parent_pid: int  # the process that started the pool
    _abort: Any = None  # set with _stop when in-flight requests must end now (grace over)

    def ready(self) -> None:
        """Block until every worker is ready (call after warmup, right before measuring)."""
        self._barrier.wait(READY_DEADLINE_S)

    def send(self, item: Any) -> None:
        """Stream one item (a record) to the parent as soon as it exists."""
        self._results.put(("item", self.worker, item))

    def stop_requested(self) -> bool:
        return bool(self._stop.is_set())

    def wait_stop(self, timeout_s: float) -> bool:
        return bool(self._stop.wait(timeout_s))

    def abort_requested(self) -> bool:
        return self._abort is not None and self._abort.is_set()


WorkerMain = Callable[[Any, WorkerLink], Any]


def _end_with_parent(parent_pid: int) -> None:
    """End this worker when its parent dies (SIGKILLed: a lost Ray task, `kill -9` of bench) rather
    than send load for nobody; a dead parent's children are re-parented, so getppid() changes.
    (PR_SET_PDEATHSIG would fire when the parent's starting *thread* ends, not the process.)"""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _entry(main: WorkerMain, plan: Any, link: WorkerLink) -> None:
    _end_with_parent(link.parent_pid)
    try:
        result = main(plan, link)
        link._results.put(("done", link.worker, result, None))
    except BaseException:  # noqa: BLE001 - the parent must hear of any failure, not hang
        link._barrier.abort()
        link._results.put(("done", link.worker, None, traceback.format_exc()))


class WorkerPool:
    """N spawned processes running `main(plan, link)`; `collect()` gathers what they send."""

    def __init__(self, main: WorkerMain, plans: list[Any], t0: float) -> None:
        # spawn: no forked copy of a parent's event loop, threads or open sockets.
        context = multiprocessing.get_context("spawn")
        self._barrier = context.Barrier(len(plans))
        self._results = context.Queue()
        self._stop = context.Event()
        self._abort = context.Event()
        self.processes = [
            context.Process(target=_entry, daemon=True, args=(main, plan, WorkerLink(
                index, len(plans), t0, self._barrier, self._results, self._stop, os.getpid(), self._abort)))
            for index, plan in enumerate(plans)
        ]
        for process in self.processes:
            process.start()

    def stop_dispatch(self) -> None:
        """Ask every worker to send no new requests (those in flight finish)."""
        self._stop.set()

    def abort(self) -> None:
        """Ask every worker to end its in-flight requests now (recorded as interrupted)."""
        self._abort.set()
        self._stop.set()

    def collect(self, on_item: Callable[[int, Any], None], deadline_s: float,
                cancelled: threading.Event | None = None) -> list[Any]:
        """Pass streamed items to on_item until every worker is done; their results in worker order.

        Raises RuntimeError when a worker failed or none answered within deadline_s.
        """
        results: dict[int, Any] = {}
        failures: list[str] = []
        try:
            while len(results) + len(failures) < len(self.processes):
                if cancelled is not None and cancelled.is_set():
                    raise RuntimeError("client workers cancelled")
                try:
                    message = self._results.get(timeout=deadline_s)
                except queue.Empty:
                    raise RuntimeError(f"client workers sent nothing for {deadline_s:g} s") from None
                if message[0] == "item":
                    on_item(message[1], message[2])
                elif message[3] is not None:
                    failures.append(message[3])
                    results[message[1]] = None
                else:
                    results[message[1]] = message[2]
        finally:
            self.close()
        if failures:
            raise RuntimeError(f"a client worker failed:\n{failures[0]}")
        return [results[index] for index in sorted(results)]

    def close(self) -> None:
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


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
        parts = min(parts, load.streams, load.requests or parts)
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
    requests = cell_requests(plan.cell, scenario, prompts, worker=link.worker)
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
        http = make_http_client(plan.base_url, plan.api_key, plan.load.in_flight_cap,
                                timeout_s=scenario.load.timeout_s, transport=plan.transport)
        try:
            async def send(spec: RequestSpec) -> RequestRecord:
                return await clients.send(http, spec, clock.t0)

            async def ready() -> None:
                await asyncio.to_thread(link.ready)

            return await run_cell_load(plan.load, requests, send, link.send, clock, stop,
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
        def relay_record(_worker: int, record: Any) -> None:
            loop.call_soon_threadsafe(on_record, record)

        outcomes = await asyncio.to_thread(pool.collect, relay_record, timeout_s)
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
