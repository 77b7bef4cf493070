"""One request's life inside a runner: its planned output, slot wait, prefill, paced decode, faults."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench.sim import perf, textgen
from bench.sim.catalog import ModelSpec
from bench.sim.config import FaultConfig, SimConfig
from bench.sim.scheduler import Runner, Scheduler


class SimulatedCut(Exception):
    """Raised inside a stream to drop the connection without a done line (fault injection)."""


@dataclass(frozen=True)
class FaultPlan:
    """Which faults hit one request, and at which output token."""

    error: bool = False
    cut_at: int | None = None
    stall_at: int | None = None
    malformed_at: int | None = None
    no_done: bool = False  # end the body without the final done line / [DONE]


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
    )


@dataclass(frozen=True)
class Job:
    """What a request will produce, decided before it runs (deterministic from the seeds)."""

    model: ModelSpec
    prompt_tokens: int
    output_tokens: list[str]
    done_reason: str  # stop | length


def plan_job(
    config: SimConfig, model: ModelSpec, prompt_key: str, prompt_tokens: int, options: dict[str, Any], format_spec: Any
) -> Job:
    """Output text is a function of (sim seed, prompt, options.seed, temperature); its natural
    length depends only on the prompt, so temperature changes the words, never the timing."""
    temperature = options.get("temperature")
    rng = random.Random(textgen.stable_int("text", config.seed, prompt_key, options.get("seed"), temperature))
    if format_spec:
        tokens = textgen.chunk_text(textgen.structured_text(format_spec, rng))
    else:
        tokens = textgen.prose_tokens(rng, textgen.natural_length(config.seed, prompt_key))
    num_predict = options.get("num_predict")
    if isinstance(num_predict, (int, float)) and not isinstance(num_predict, bool) and num_predict > 0:
        if int(num_predict) < len(tokens):
            return Job(model, prompt_tokens, tokens[: int(num_predict)], "length")
    return Job(model, prompt_tokens, tokens, "stop")


@dataclass
class Timings:
    """Nanosecond metrics as the final native line reports them.

    load, prompt_eval and eval durations are the simulated hardware's (the model's times divided
    by --speed), not what the event loop delivered: a sleep is late by up to a millisecond of timer
    granularity plus any scheduling lag, which belongs to the simulator, not to the simulated GPU.
    So they scale exactly with --speed; total_duration stays measured (it covers all of them).
    """

    arrival_s: float
    acquired_s: float = 0.0
    prompt_eval_duration_ns: int = 0
    eval_start_s: float = 0.0
    eval_end_s: float = 0.0  # the last token's due time
    eval_count: int = 0
    done_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def after_acquire(cls, arrival_s: float, runner: Runner) -> "Timings":
        """Start a request's timings once it holds `runner`; a wait on its load ends when the load did."""
        now_s = time.monotonic()
        waited_for_load = arrival_s < runner.ready_at_s <= now_s
        return cls(arrival_s=arrival_s, acquired_s=runner.ready_at_s if waited_for_load else now_s)

    def metrics(self, prompt_eval_count: int) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "total_duration": int((now - self.arrival_s) * 1e9),
            "load_duration": int((self.acquired_s - self.arrival_s) * 1e9),
            "prompt_eval_count": prompt_eval_count,
            "prompt_eval_duration": self.prompt_eval_duration_ns,
            "eval_count": self.eval_count,
            "eval_duration": int(max(0.0, self.eval_end_s - self.eval_start_s) * 1e9),
        }


async def run_job(scheduler: Scheduler, runner: Runner, job: Job, timings: Timings, faults: FaultPlan) -> AsyncIterator[str]:
    """Wait for a slot, prefill, then yield output tokens paced by the roofline step time.

    Every await here is a cancellation point: a client that disconnects frees its slot at once.
    """
    config = scheduler.config
    assert config.gpu is not None
    bpe = config.kv_bytes_per_element
    async with runner.slots:
        runner.generating += 1
        runner.max_generating = max(runner.max_generating, runner.generating)
        context_tokens = 0
        try:
            # One deadline chain from the slot's start: a late wake-up (timer granularity is ~1 ms)
            # shortens the next wait instead of adding up, so short prompts' TTFT follows --speed.
            prefill_s = perf.prefill_s(job.model, config.gpu, runner.layout, job.prompt_tokens) * scheduler.jitter.factor()
            prefill_wall_s = scheduler.scaled(prefill_s)
            deadline_s = time.monotonic() + prefill_wall_s
            await asyncio.sleep(prefill_wall_s)
            runner.context_tokens_total += job.prompt_tokens
            context_tokens = job.prompt_tokens
            timings.prompt_eval_duration_ns = int(prefill_wall_s * 1e9)
            timings.eval_start_s = timings.eval_end_s = deadline_s
            for index, token in enumerate(job.output_tokens):
                step_s = perf.decode_step_s(
                    job.model, config.gpu, runner.layout, runner.generating, runner.context_tokens_total, bpe
                )
                deadline_s += scheduler.scaled(step_s * scheduler.jitter.factor())
                if faults.stall_at == index:
                    deadline_s += config.faults.stall_s
                delay_s = deadline_s - time.monotonic()
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                runner.context_tokens_total += 1
                context_tokens += 1
                timings.eval_count = index + 1
                timings.eval_end_s = deadline_s
                if faults.cut_at == index:
                    raise SimulatedCut()
                yield token
            timings.done_reason = job.done_reason
        finally:
            runner.generating -= 1
            runner.context_tokens_total -= context_tokens
