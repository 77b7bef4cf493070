"""What one simulated runner serves a closed loop of N clients, computed in virtual time.

The same batches as the live simulator (bench/sim/live_device.py): llama-server's update_slots
loop planned by bench/sim/device.py, each batch a decode step for the slots that get a token plus
its prompt chunk. Here no one sleeps and there is no jitter (its mean is 1), so the answer is exact
and repeatable: the deterministic form of what `bench sim` serves, for predictions checked against
real runs. A client's next request reaches the server after the loop has planned its next batch
(llama-server goes on at once; the request needs an HTTP round trip), so it joins the one after.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.sim import roofline
from bench.sim.catalog import GpuProfile, ModelSpec
from bench.sim.device import Device, SlotWork


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
    # Per request, cycled (a real run's): identical lengths lock identical clients into one packing
    # of the batch (two 512-token prompts fill a 1024 batch alone, not beside a decoder).
    prompt_lengths: tuple[int, ...] = ()

    def prompt_tokens_of(self, index: int) -> int:
        return self.prompt_lengths[index % len(self.prompt_lengths)] if self.prompt_lengths else self.prompt_tokens


@dataclass(frozen=True)
class Prediction:
    output_tokens_per_s: float
    ttft_p50_s: float
    tpot_p50_s: float


@dataclass
class _Request:
    index: int
    sent_s: float
    work: SlotWork
    first_token_s: float = 0.0
    end_s: float = 0.0


def predict(model: ModelSpec, gpu: GpuProfile, workload: Workload, gpu_fraction: float | None = None) -> Prediction:
    """Output tok/s over the measured requests' window, and their TTFT and TPOT medians."""
    fraction = (1.0 if gpu.memory_bytes > 0 else 0.0) if gpu_fraction is None else gpu_fraction
    device = Device(
        workload.num_batch,
        lambda slots, kv_tokens: roofline.decode_step_s(model, gpu, fraction, slots, kv_tokens, workload.kv_bytes_per_element),
        lambda tokens: roofline.prefill_s(model, gpu, fraction, tokens, workload.num_batch),
    )
    total = workload.warmup_requests + workload.requests
    slots = _LeastRecentlyUsed(workload.concurrency)
    running: list[_Request] = []
    done: list[_Request] = []
    now_s = 0.0

    def request(index: int) -> _Request:
        tokens = workload.prompt_tokens_of(index)
        work = SlotWork(slots.take(), tokens, tokens, workload.output_tokens)
        running.append(_Request(index, now_s, work))
        return running[-1]

    for index in range(min(workload.concurrency, total)):
        device.add(request(index).work)
    sent = len(running)
    arriving: list[SlotWork] = []
    while (batch := device.plan()) is not None:
        for work in arriving:  # sent when the last batch ended: they reach the loop during this one
            device.add(work)
        arriving.clear()
        now_s += batch.duration_s
        device.apply(batch)
        for finished in [r for r in running if r.work.produced or r.work.done]:
            finished.first_token_s = finished.first_token_s or now_s
            if not finished.work.done:
                continue
            finished.end_s = now_s
            running.remove(finished)
            done.append(finished)
            slots.give_back(finished.work.slot)
            if sent < total:
                arriving.append(request(sent).work)
                sent += 1
        if not device.works:  # an idle loop takes them at once
            for work in arriving:
                device.add(work)
            arriving.clear()
    return _summary(done, workload)


class _LeastRecentlyUsed:
    """llama-server gives a prompt it has no cache for the least recently used idle slot."""

    def __init__(self, count: int) -> None:
        self._idle = list(range(count))

    def take(self) -> int:
        return self._idle.pop(0)

    def give_back(self, slot: int) -> None:
        self._idle.append(slot)


def _summary(done: list[_Request], workload: Workload) -> Prediction:
    measured = [request for request in done if request.index >= workload.warmup_requests]
    window_s = max(r.end_s for r in measured) - min(r.sent_s for r in measured)
    tokens = sum(r.work.produced for r in measured)
    tpots = [(r.end_s - r.first_token_s) / max(1, r.work.produced - 1) for r in measured]
    return Prediction(
        output_tokens_per_s=tokens / window_s,
        ttft_p50_s=statistics.median(r.first_token_s - r.sent_s for r in measured),
        tpot_p50_s=statistics.median(tpots),
    )
