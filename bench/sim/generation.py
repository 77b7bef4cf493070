"""One request's life on a loaded runner, on Ollama's side: slot wait, the backend's stream, faults,
and the native metrics built from llama-server's timings (llm/llama_server.go 1713-1728)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from bench.sim.backend import CompletionRequest, CompletionTimings
from bench.sim.config import FaultConfig
from bench.sim.scheduler import LoadedModel, Scheduler

RUNTIME_OOM_MESSAGE = "CUDA error: out of memory"

# Ollama's token repeat limit (v0.33.0-0.33.2 llm/llama_server.go Completion, v0.12.6 llm/server.go
# the same; both versions the simulator follows): every
# piece llama-server streams is compared, whitespace trimmed, with the one before (the first with
# ""); on the 31st repeat in a row the completion stops before relaying that piece and returns
# ctx.Err(), which is nil, so the answer ends with no final line and no error. Deterministic in the
# token stream: a model stuck on one token (greedy decoding, small or made models) meets it.
# v0.34.4 changed it (after 100 repeats, an error: `prediction aborted, token repeat limit reached`).
TOKEN_REPEAT_LIMIT = 30


class SimulatedCut(Exception):
    """Raised inside a stream to drop the connection without a done line (fault injection)."""


class RuntimeOutOfMemory(Exception):
    """The runner failed a request with an out-of-memory error (fault injection)."""


@dataclass(frozen=True)
class FaultPlan:
    """Which faults hit one request, and at which output token."""

    error: bool = False
    cut_at: int | None = None
    stall_at: int | None = None
    malformed_at: int | None = None
    no_done: bool = False  # end the body without the final done line / [DONE]
    oom: bool = False


def plan_faults(faults: FaultConfig, rng: random.Random, token_count: int) -> FaultPlan:
    if not faults.any:
        return FaultPlan()

    def pick(rate: float) -> int | None:
        return rng.randint(1, max(1, token_count - 1)) if rng.random() < rate else None

    return FaultPlan(
        error=rng.random() < faults.error_rate,
        cut_at=pick(faults.cut_rate),
        stall_at=pick(faults.stall_rate),
        malformed_at=pick(faults.malformed_rate),
        # Drawn only when enabled, so the other faults' seeded sequence is what it always was.
        no_done=faults.no_done_rate > 0 and rng.random() < faults.no_done_rate,
        oom=faults.oom_rate > 0 and rng.random() < faults.oom_rate,
    )


@dataclass
class Timings:
    """What Ollama measures itself (arrival, scheduled) plus llama-server's final timings.

    load_duration = scheduled − arrival (queue wait + cold load, not the slot wait);
    total_duration = now − arrival; the rest comes from the backend (§3.3 of the digest).
    """

    arrival_s: float
    acquired_s: float = 0.0
    final: CompletionTimings | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The token repeat limit ended the completion: no final line / finish chunk / [DONE] follows.
    repeat_limited: bool = False

    @classmethod
    def after_acquire(cls, arrival_s: float, loaded: LoadedModel) -> "Timings":
        """Start a request's timings once it holds `loaded`; a wait on its load ends when the load did."""
        now_s = time.monotonic()
        waited_for_load = arrival_s < loaded.ready_at_s <= now_s
        return cls(arrival_s=arrival_s, acquired_s=loaded.ready_at_s if waited_for_load else now_s)

    @property
    def eval_count(self) -> int:
        return self.final.predicted_n if self.final else 0

    @property
    def prompt_eval_count(self) -> int:
        return self.final.cache_n + self.final.prompt_n if self.final else 0

    @property
    def done_reason(self) -> str:
        return "length" if self.final is not None and self.final.stop_type == "limit" else "stop"

    def metrics(self) -> dict[str, Any]:
        final = self.final or CompletionTimings(0, 0, 0.0, 0, 0.0)
        return {
            "total_duration": int((time.monotonic() - self.arrival_s) * 1e9),
            "load_duration": int((self.acquired_s - self.arrival_s) * 1e9),
            "prompt_eval_count": final.cache_n + final.prompt_n,
            "prompt_eval_duration": int(final.prompt_ms * 1e6),
            "eval_count": final.predicted_n,
            "eval_duration": int(final.predicted_ms * 1e6),
        }


async def run_completion(
    scheduler: Scheduler, loaded: LoadedModel, request: CompletionRequest, timings: Timings, faults: FaultPlan
) -> AsyncIterator[str]:
    """Wait for one of the runner's NUM_PARALLEL slots, then relay the backend's pieces.

    Every await is a cancellation point: a client that disconnects frees its slot at once.
    """
    assert loaded.runner is not None
    stall_s = scheduler.config.faults.stall_s
    async with loaded.slots:
        if faults.oom:
            scheduler.expire_all_for_runtime_oom()
            raise RuntimeOutOfMemory(RUNTIME_OOM_MESSAGE)
        index = 0
        last_piece, repeats = "", 0
        async with aclosing(loaded.runner.completion(request)) as events:
            async for event in events:
                # The final event counts too, as llama-server's stop event (content "") does.
                trimmed = "" if isinstance(event, CompletionTimings) else event.strip()
                if trimmed == last_piece:
                    repeats += 1
                    if repeats > TOKEN_REPEAT_LIMIT:
                        timings.repeat_limited = True
                        return
                else:
                    last_piece, repeats = trimmed, 0
                if isinstance(event, CompletionTimings):
                    timings.final = event
                    continue
                if faults.stall_at == index:
                    await asyncio.sleep(stall_s)
                if faults.cut_at == index:
                    raise SimulatedCut()
                index += 1
                yield event
