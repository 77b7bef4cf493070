"""What one simulated runner serves a closed loop of N clients, computed in virtual time.

The same timing as the live simulator (bench/sim/simulated.py): prompts queue on the runner's
device (bench/sim/device.py), the first token comes one decode step after the prompt, every step
costs roofline.decode_step_s for the slots decoding then, and prompts processed meanwhile stall it.
Here no one sleeps and there is no jitter (its mean is 1), so the answer is exact and repeatable:
the deterministic form of what `bench sim` serves, for predictions checked against real runs.
"""

from __future__ import annotations

import heapq
import statistics
from dataclasses import dataclass, field

from bench.sim import roofline
from bench.sim.catalog import GpuProfile, ModelSpec
from bench.sim.device import DeviceQueue


@dataclass(frozen=True)
class Workload:
    """A closed loop: `concurrency` clients, each sending its next request when the last ends."""

    prompt_tokens: int
    output_tokens: int
    concurrency: int
    requests: int  # measured ones, after the warm-up
    warmup_requests: int = 0
    kv_bytes_per_element: float = 2.0  # f16 cache
    num_batch: int = roofline.NUM_BATCH  # Ollama's choice for the context (1024 at 8 x 4096 on v0.33)


@dataclass(frozen=True)
class Prediction:
    output_tokens_per_s: float
    ttft_p50_s: float
    tpot_p50_s: float


@dataclass
class _Request:
    index: int
    sent_s: float
    first_token_s: float = 0.0
    end_s: float = 0.0
    tokens: int = 0
    stall_index: int = 0
    deadline_s: float = 0.0


@dataclass
class _Runner:
    model: ModelSpec
    gpu: GpuProfile
    gpu_fraction: float
    workload: Workload
    device: DeviceQueue = field(default_factory=DeviceQueue)
    decoding: int = 0
    context_tokens_total: int = 0

    def step_s(self) -> float:
        return roofline.decode_step_s(self.model, self.gpu, self.gpu_fraction, self.decoding,
                                      self.context_tokens_total, self.workload.kv_bytes_per_element)


def predict(model: ModelSpec, gpu: GpuProfile, workload: Workload, gpu_fraction: float | None = None) -> Prediction:
    """Output tok/s over the measured requests' window, and their TTFT and TPOT medians."""
    fraction = (1.0 if gpu.memory_bytes > 0 else 0.0) if gpu_fraction is None else gpu_fraction
    runner = _Runner(model, gpu, fraction, workload, DeviceQueue(num_batch=workload.num_batch))
    total = workload.warmup_requests + workload.requests
    events: list[tuple[float, int, str, _Request]] = []
    done: list[_Request] = []
    sequence = 0

    def push(time_s: float, kind: str, request: _Request) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (time_s, sequence, kind, request))

    def send(now_s: float, index: int) -> None:
        request = _Request(index, now_s)
        prefill_s = roofline.prefill_s(model, gpu, fraction, workload.prompt_tokens, workload.num_batch)
        between_s = runner.step_s() if runner.decoding else 0.0
        prompt_done_s, request.stall_index = runner.device.book_prefill(now_s, prefill_s, between_s, workload.prompt_tokens)
        push(prompt_done_s, "prompt", request)

    sent = 0
    for _ in range(min(workload.concurrency, total)):
        send(0.0, sent)
        sent += 1
    while events:
        now_s, _, kind, request = heapq.heappop(events)
        if kind == "prompt":
            runner.decoding += 1
            runner.context_tokens_total += workload.prompt_tokens
            request.deadline_s = now_s
        else:
            request.tokens += 1
            runner.context_tokens_total += 1
            request.first_token_s = request.first_token_s or now_s
            if request.tokens == workload.output_tokens:
                request.end_s = now_s
                runner.decoding -= 1
                runner.context_tokens_total -= workload.prompt_tokens + request.tokens
                done.append(request)
                if sent < total:
                    send(now_s, sent)
                    sent += 1
                continue
        request.deadline_s, request.stall_index = runner.device.decode_token(
            request.deadline_s, runner.step_s(), request.stall_index)
        push(request.deadline_s, "token", request)
    return _summary(done, workload)


def _summary(done: list[_Request], workload: Workload) -> Prediction:
    measured = [request for request in done if request.index >= workload.warmup_requests]
    window_s = max(r.end_s for r in measured) - min(r.sent_s for r in measured)
    tokens = sum(r.tokens for r in measured)
    tpots = [(r.end_s - r.first_token_s) / max(1, r.tokens - 1) for r in measured]
    return Prediction(
        output_tokens_per_s=tokens / window_s,
        ttft_p50_s=statistics.median(r.first_token_s - r.sent_s for r in measured),
        tpot_p50_s=statistics.median(tpots),
    )
