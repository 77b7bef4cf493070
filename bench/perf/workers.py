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
import os
from dataclasses import dataclass

from bench.load.clock import Clock, run_async
from bench.perf.drive import StepResult, closed_loop
from bench.records.record import RequestRecord, Surface
from bench.load.workers import READY_DEADLINE_S, WorkerLink, WorkerPool, split_evenly


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process runs: its share of the streams (the clock comes with the link)."""

    base_url: str
    surface: Surface
    concurrency: int
    tokens: int
    duration_s: float
    transport: str
    cell_id: str
    cpu: int | None


def split_streams(concurrency: int, workers: int) -> list[int]:
    """Streams per worker: as even as possible, every worker at least one."""
    return split_evenly(concurrency, workers)


def _worker_main(plan: WorkerPlan, link: WorkerLink) -> tuple[StepResult, list[RequestRecord]]:
    """One worker process: pin, run the closed loop, return its step and records."""
    if plan.cpu is not None:
        os.sched_setaffinity(0, {plan.cpu})

    async def ready() -> None:
        await asyncio.to_thread(link.ready)

    step, records, _ = run_async(closed_loop(
        plan.base_url, plan.surface, plan.concurrency, tokens=plan.tokens,
        duration_s=plan.duration_s, cell_id=plan.cell_id, clock=Clock(link.t0),
        transport=plan.transport, worker=link.worker, ready=ready))
    return step, records


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
    plans = [WorkerPlan(base_url=base_url, surface=surface, concurrency=share, tokens=tokens,
                        duration_s=duration_s, transport=transport, cell_id=cell_id,
                        cpu=cpus[index % len(cpus)] if cpus else None)
             for index, share in enumerate(split_streams(concurrency, workers))]
    pool = WorkerPool(_worker_main, plans, clock.t0)
    try:
        results = pool.collect(lambda _worker, _item: None, READY_DEADLINE_S + duration_s + 60.0)
    except RuntimeError as error:
        raise RuntimeError(str(error).replace("client worker", "perf worker")) from None
    steps = [step for step, _ in results]
    records = [record for _, worker_records in results for record in worker_records]
    return merge_steps(steps), records, clock
