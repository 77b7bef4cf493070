"""What the scheduler keeps per request and per loaded model (server/sched.go LlmRequest, runnerRef)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

from bench.sim.backend import Runner
from bench.sim.catalog import ModelSpec
from bench.sim.options import RunnerOptions

MAX_QUEUE_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"


class QueueFullError(Exception):
    def __init__(self) -> None:
        super().__init__(MAX_QUEUE_MESSAGE)


class ScheduleError(Exception):
    """A load failed; str() is the error Ollama returns (HTTP 500)."""


class RunnerState(Enum):
    LOADING = "loading"  # only v0.12.6 async-load architectures are visible while loading
    READY = "ready"
    UNLOADING = "unloading"
    GONE = "gone"


@dataclass
class ScheduleRequest:
    """LlmRequest: what one request asks the scheduler for."""

    model: ModelSpec
    options: RunnerOptions
    num_ctx_auto: bool
    num_batch_auto: bool
    keep_alive_s: float | None  # None: the request did not set keep_alive
    shift: bool | None = None
    oom_retry_attempted: bool = False
    future: asyncio.Future[LoadedModel] | None = None


@dataclass
class LoadedModel:
    """runnerRef: a loaded runner and its scheduling bookkeeping."""

    model: ModelSpec
    options: RunnerOptions  # num_ctx is the runner's clamped per-slot context
    num_parallel: int
    keep_alive_s: float
    num_ctx_auto: bool
    num_batch_auto: bool
    context_shift: bool
    runner: Runner | None = None
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    state: RunnerState = RunnerState.READY
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    unloaded: asyncio.Event = field(default_factory=asyncio.Event)
    ref_count: int = 0
    expire_timer: asyncio.TimerHandle | None = None
    expires_at_epoch_s: float | None = None
    # When the load finished (monotonic s): a request that waited for it ends its load_duration here.
    ready_at_s: float = 0.0
    requested_num_ctx: int = 0  # what the loading request asked for (v0.12.6 /api/ps shows it)
    load_error: str | None = None

    @property
    def vram_bytes(self) -> int:
        return self.runner.memory.size_vram_bytes if self.runner is not None else 0
