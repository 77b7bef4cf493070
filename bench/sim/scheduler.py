"""The scheduler and runners, modelled on Ollama's server/sched.go and the runner's slot semaphore.

Synchronous state machine driven from the event loop: a request first enters the pending queue
(capacity MAX_QUEUE; full → 503 at once). One logical scheduler loop takes pending requests one at
a time: a loaded runner that needs no reload gets the request at once (it then waits, unbounded,
for one of NUM_PARALLEL slots); a loading runner, a reload (num_ctx changed), or an eviction
(MAX_LOADED_MODELS or memory) *blocks* the loop, and arrivals pile up in the pending queue.
Go's buffered channel hands a send straight to a waiting receiver; `submit` mirrors that, which
also makes bursts deterministic: N simultaneous requests to a cold model serve MAX_QUEUE + 2.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bench.sim import perf
from bench.sim.catalog import ModelSpec
from bench.sim.config import SimConfig

MAX_QUEUE_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class QueueFullError(Exception):
    def __init__(self) -> None:
        super().__init__(MAX_QUEUE_MESSAGE)


class RunnerState(Enum):
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    GONE = "gone"


@dataclass
class Runner:
    """One loaded model: its memory layout, slots and keep-alive bookkeeping."""

    model: ModelSpec
    num_ctx: int  # per slot, as the request asked
    num_parallel: int
    layout: perf.MemoryLayout
    slots: asyncio.Semaphore
    state: RunnerState = RunnerState.LOADING
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unloaded: asyncio.Event = field(default_factory=asyncio.Event)
    ref_count: int = 0
    keep_alive_s: float = 300.0
    last_used_s: float = 0.0
    expires_at_epoch_s: float | None = None
    expire_timer: asyncio.TimerHandle | None = None
    # When the simulated load finishes (monotonic s): a request that waited for it reports this,
    # not the moment the event loop got round to waking it, as the end of its load_duration.
    ready_at_s: float = 0.0
    # Decode bookkeeping read by the perf model on every step.
    generating: int = 0
    max_generating: int = 0
    context_tokens_total: int = 0

    @property
    def runner_ctx_tokens(self) -> int:
        return self.num_ctx * self.num_parallel


@dataclass
class _Ticket:
    model: ModelSpec
    num_ctx: int
    keep_alive_s: float
    future: asyncio.Future[Runner]


class Lease:
    """A request's hold on a runner, released exactly once (by the stream's end or the response's)."""

    def __init__(self, scheduler: "Scheduler", runner: Runner) -> None:
        self.scheduler = scheduler
        self.runner = runner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.scheduler.release(self.runner)


class Scheduler:
    """Owns the loaded runners and the pending queue; every method runs on the server's loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.loaded: dict[str, Runner] = {}
        self._pending: deque[_Ticket] = deque()
        self._blocked = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.jitter = perf.Jitter(config.seed)
        self.rejected_total = 0
        self.loads_total = 0

    # ---- public API used by the routes -------------------------------------------------------
    def scaled(self, simulated_s: float) -> float:
        return simulated_s / self.config.speed

    def effective_num_ctx(self, model: ModelSpec, requested: int | None) -> int:
        # Ollama caps a request's context at what the model was trained for.
        num_ctx = requested if requested and requested > 0 else self.config.context_length
        return min(num_ctx, model.context_length)

    def num_parallel_for(self, model: ModelSpec) -> int:
        return 1 if model.embedding_only else self.config.num_parallel

    async def acquire(self, model: ModelSpec, num_ctx: int, keep_alive_s: float) -> Runner:
        """Get a loaded runner (ref-counted); raises QueueFullError when the pending queue is full."""
        future: asyncio.Future[Runner] = asyncio.get_running_loop().create_future()
        self._submit(_Ticket(model, num_ctx, keep_alive_s, future))
        try:
            runner = await future
        except asyncio.CancelledError:
            future.cancel()
            raise
        try:
            await runner.ready.wait()
        except asyncio.CancelledError:
            self.release(runner)
            raise
        return runner

    def release(self, runner: Runner) -> None:
        """A request is done with the runner; start its keep-alive countdown when idle."""
        runner.ref_count -= 1
        runner.last_used_s = time.monotonic()
        if runner.ref_count > 0 or runner.state is not RunnerState.READY:
            return
        if runner.keep_alive_s <= 0:
            self._unload(runner)
        elif math.isinf(runner.keep_alive_s):
            runner.expires_at_epoch_s = None
        else:
            delay_s = self.scaled(runner.keep_alive_s)
            runner.expires_at_epoch_s = time.time() + delay_s
            runner.expire_timer = asyncio.get_running_loop().call_later(delay_s, self._on_expired, runner)

    def expire(self, model: ModelSpec) -> None:
        """keep_alive 0 on a load-only request: unload now, or as soon as the runner is idle."""
        runner = self.loaded.get(model.name)
        if runner is not None:
            self._expire(runner)

    # ---- the scheduler loop, as a state machine ----------------------------------------------
    def _submit(self, ticket: _Ticket) -> None:
        if not self._blocked and not self._pending:
            self._process(ticket)  # the loop was waiting on the channel: direct hand-off
        elif len(self._pending) < self.config.max_queue:
            self._pending.append(ticket)
        else:
            self.rejected_total += 1
            raise QueueFullError()

    def _drain(self) -> None:
        while not self._blocked and self._pending:
            self._process(self._pending.popleft())

    def _block_until(self, event: asyncio.Event, ticket: _Ticket) -> None:
        self._blocked = True

        async def resume() -> None:
            await event.wait()
            self._blocked = False
            self._process(ticket)
            self._drain()

        self._spawn(resume())

    def _process(self, ticket: _Ticket) -> None:
        if ticket.future.done():  # the client went away while pending
            return
        runner = self.loaded.get(ticket.model.name)
        if runner is not None:
            if runner.state is RunnerState.LOADING:
                self._block_until(runner.ready, ticket)  # the runner is locked while it loads
            elif runner.state is RunnerState.UNLOADING:
                self._block_until(runner.unloaded, ticket)
            elif runner.num_ctx != ticket.num_ctx:
                self._expire(runner)  # reload: unload when idle, and wait for it
                self._block_until(runner.unloaded, ticket)
            else:
                self._hand_over(ticket, runner)
            return
        victim = self._runner_to_evict(ticket)
        if victim is not None:
            self._expire(victim)
            self._block_until(victim.unloaded, ticket)
            return
        self._hand_over(ticket, self._start_load(ticket))

    def _runner_to_evict(self, ticket: _Ticket) -> Runner | None:
        if not self.loaded:
            return None
        others_vram = sum(r.layout.size_vram_bytes for r in self.loaded.values())
        free_bytes = self._gpu_free_bytes() - others_vram
        needed = perf.memory_layout(
            ticket.model, ticket.num_ctx * self.num_parallel_for(ticket.model), self.config.kv_bytes_per_element, free_bytes
        )
        too_many = len(self.loaded) >= self.config.max_loaded_models
        if not too_many and needed.gpu_layers == needed.total_layers:
            return None
        # Least recently used, idle runners first (sched.go findRunnerToUnload).
        return min(self.loaded.values(), key=lambda r: (r.ref_count > 0, r.last_used_s))

    def _gpu_free_bytes(self) -> int:
        assert self.config.gpu is not None
        return self.config.gpu.memory_bytes - self.config.gpu_overhead_bytes

    def _hand_over(self, ticket: _Ticket, runner: Runner) -> None:
        if ticket.future.done():
            return
        runner.ref_count += 1
        runner.keep_alive_s = ticket.keep_alive_s  # the latest request's keep_alive wins
        runner.last_used_s = time.monotonic()
        runner.expires_at_epoch_s = None
        if runner.expire_timer is not None:
            runner.expire_timer.cancel()
            runner.expire_timer = None
        ticket.future.set_result(runner)

    def _start_load(self, ticket: _Ticket) -> Runner:
        num_parallel = self.num_parallel_for(ticket.model)
        layout = perf.memory_layout(
            ticket.model, ticket.num_ctx * num_parallel, self.config.kv_bytes_per_element, self._gpu_free_bytes()
        )
        runner = Runner(
            model=ticket.model,
            num_ctx=ticket.num_ctx,
            num_parallel=num_parallel,
            layout=layout,
            slots=asyncio.Semaphore(num_parallel),
            keep_alive_s=ticket.keep_alive_s,
            last_used_s=time.monotonic(),
        )
        self.loaded[ticket.model.name] = runner
        self.loads_total += 1
        load_wall_s = self.scaled(perf.load_s(ticket.model) * self.jitter.factor())
        runner.ready_at_s = time.monotonic() + load_wall_s

        async def load() -> None:
            await asyncio.sleep(load_wall_s)
            runner.state = RunnerState.READY
            runner.ready.set()
            if runner.ref_count == 0:  # every waiter went away during the load
                runner.ref_count = 1
                self.release(runner)

        self._spawn(load())
        return runner

    def _expire(self, runner: Runner) -> None:
        runner.keep_alive_s = 0.0
        if runner.expire_timer is not None:
            runner.expire_timer.cancel()
            runner.expire_timer = None
        if runner.ref_count == 0 and runner.state is RunnerState.READY:
            self._unload(runner)

    def _on_expired(self, runner: Runner) -> None:
        runner.expire_timer = None
        if runner.ref_count == 0 and runner.state is RunnerState.READY:
            self._unload(runner)

    def _unload(self, runner: Runner) -> None:
        runner.state = RunnerState.UNLOADING

        async def unload() -> None:
            await asyncio.sleep(self.scaled(perf.UNLOAD_S))
            if self.loaded.get(runner.model.name) is runner:
                del self.loaded[runner.model.name]
            runner.state = RunnerState.GONE
            runner.unloaded.set()

        self._spawn(unload())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
