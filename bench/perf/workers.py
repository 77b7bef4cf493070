"""Several client processes as one closed-loop measurement (`bench perf --workers N`).

When one core cannot drive the target, the streams are split across N processes, each pinned to
its own client CPU where the machine has enough. Every process stamps time.monotonic()
(CLOCK_MONOTONIC: one clock for every process on a Linux host) relative to the parent's t0, so
the merged records lie on one time axis with no offset to correct; each record's `worker` says
which process sent it. The processes warm up, then wait on one barrier, so their measured
windows start together.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import traceback
from dataclasses import dataclass
from typing import Any

from bench.load import Clock, run_async
from bench.perf.drive import StepResult, closed_loop
from bench.records import RequestRecord, Surface

# Spawning N interpreters that import bench, then warming each up, on a busy machine.
READY_DEADLINE_S = 120.0


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process runs: its share of the streams, on the shared clock."""

    worker: int
    base_url: str
    surface: Surface
    concurrency: int
    tokens: int
    duration_s: float
    transport: str
    cell_id: str
    t0: float  # the parent's Clock.t0, so every worker's record times share one origin
    cpu: int | None


def split_streams(concurrency: int, workers: int) -> list[int]:
    """Streams per worker: as even as possible, every worker at least one."""
    workers = max(1, min(workers, concurrency))
    share, extra = divmod(concurrency, workers)
    return [share + (1 if index < extra else 0) for index in range(workers)]


def _worker_main(plan: WorkerPlan, barrier: Any, results: Any) -> None:
    """Entry point of one worker process: pin, run the closed loop, send back step and records."""
    try:
        if plan.cpu is not None:
            os.sched_setaffinity(0, {plan.cpu})

        async def ready() -> None:
            await asyncio.to_thread(barrier.wait, READY_DEADLINE_S)

        step, records, _ = run_async(closed_loop(
            plan.base_url, plan.surface, plan.concurrency, tokens=plan.tokens,
            duration_s=plan.duration_s, cell_id=plan.cell_id, clock=Clock(plan.t0),
            transport=plan.transport, worker=plan.worker, ready=ready))
        results.put((plan.worker, step, records, None))
    except BaseException:  # noqa: BLE001 - the parent must hear of any failure, not hang
        barrier.abort()
        results.put((plan.worker, None, [], traceback.format_exc()))


def merge_steps(steps: list[StepResult]) -> StepResult:
    """One step from the workers' steps: counts and CPU add up; the window is the longest one
    (all started at the barrier's release)."""
    return StepResult(surface=steps[0].surface, concurrency=sum(s.concurrency for s in steps),
                      requests=sum(s.requests for s in steps), ok=sum(s.ok for s in steps),
                      errors=sum(s.errors for s in steps),
                      wall_s=max(s.wall_s for s in steps), cpu_s=sum(s.cpu_s for s in steps),
                      tokens=sum(s.tokens for s in steps))


def run_workers(base_url: str, surface: Surface, concurrency: int, workers: int, *,
                duration_s: float, cpus: list[int | None], tokens: int = 32,
                transport: str = "fast", cell_id: str = "perf",
                ) -> tuple[StepResult, list[RequestRecord], Clock]:
    """The closed loop at `concurrency` streams split over `workers` processes; merged result.

    Worker i runs on cpus[i % len(cpus)] (None: not pinned).
    """
    clock = Clock()
    shares = split_streams(concurrency, workers)
    context = multiprocessing.get_context("spawn")  # no forked copy of a parent's loop or threads
    barrier = context.Barrier(len(shares))
    results = context.Queue()
    processes = []
    for index, share in enumerate(shares):
        plan = WorkerPlan(worker=index, base_url=base_url, surface=surface, concurrency=share,
                          tokens=tokens, duration_s=duration_s, transport=transport,
                          cell_id=cell_id, t0=clock.t0, cpu=cpus[index % len(cpus)] if cpus else None)
        process = context.Process(target=_worker_main, args=(plan, barrier, results), daemon=True)
        process.start()
        processes.append(process)
    collected: list[tuple[int, StepResult | None, list[RequestRecord], str | None]] = []
    try:
        deadline_s = READY_DEADLINE_S + duration_s + 60.0
        for _ in processes:
            collected.append(results.get(timeout=deadline_s))
    except queue.Empty:
        raise RuntimeError(f"perf workers sent no result within {deadline_s:g} s") from None
    finally:
        _stop(processes)
    failures = [error for _, step, _, error in collected if error is not None]
    if failures:
        raise RuntimeError(f"a perf worker failed:\n{failures[0]}")
    collected.sort(key=lambda item: item[0])
    steps = [step for _, step, _, _ in collected if step is not None]
    records = [record for _, _, worker_records, _ in collected for record in worker_records]
    return merge_steps(steps), records, clock


def _stop(processes: list[Any]) -> None:
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
