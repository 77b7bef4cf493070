"""The arrival schedules of one repeat of a cell: closed loop (N workers), conversations (virtual
users), open loop (constant or Poisson arrivals) and trace replay."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

from bench.load.clock import Clock
from bench.load.dispatch import Dispatcher, stopped_within
from bench.workload.specs import ConversationLike, ConversationStarter
from bench.records.model import Phase

if TYPE_CHECKING:
    from bench.load.cell import CellLoad


async def _closed_loop(d: Dispatcher, clock: Clock, workers: int, total: int | None,
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


async def _conversation_loop(d: Dispatcher, clock: Clock, users: int, total: int | None,
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
                if pause_s > 0 and (await stopped_within(d, pause_s) or not may_send()):
                    return
                issued += 1
                if not await d.turn(conversation, next(indexes), phase, clock.now_s()):
                    break

    await d.wait_all([asyncio.ensure_future(user()) for _ in range(users)])


async def _trace_loop(d: Dispatcher, clock: Clock, steps: list[tuple[float, ConversationLike]],
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
        if delay_s > 0 and await stopped_within(d, delay_s):
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


async def _open_loop(d: Dispatcher, clock: Clock, load: CellLoad, repeat: int) -> None:
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
