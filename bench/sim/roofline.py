"""Roofline timing model (see shared/sim-performance-model.md), on measured per-GPU constants.

Each GPU profile carries what llama.cpp was measured to achieve on that card (bench/sim/catalog.yaml,
sources in bench/sim/speed_measurements.yaml): the bandwidth its decode kernels reach, a fixed time
per decode step, and its prefill FLOP/s. Ollama's own per-token cost is the one constant here.
All durations returned here are *simulated* seconds; the scheduler divides them by --speed.
"""

from __future__ import annotations

import math
import random

from bench.sim.catalog import GpuProfile, ModelSpec

NUM_BATCH = 512  # Ollama's default num_batch: prompts are processed in chunks of this many tokens
# Per active sequence per decode step, what serving adds to llama-bench's bare decode: llama-server
# samples each token (llama.cpp's sampler chain: 0.02-0.05 ms per token in llama.cpp's own CI logs,
# llama_perf_sampler_print), detokenises it and streams it to Ollama, which streams it on. 0.1 ms
# is that order; `bench sim --calibrate RUN_DIR` folds a machine's real figure into its profile.
TOKEN_OVERHEAD_S = 0.0001
LOAD_STARTUP_S = 1.0  # runner process start-up before weights stream in
LOAD_BANDWIDTH_BYTES_PER_S = 3e9  # NVMe / page cache read rate while loading weights
UNLOAD_S = 0.05  # killing a runner is quick
HEALTH_POLL_S = 0.25  # Ollama polls llama-server /health this often while it loads (WaitUntilRunning)
VRAM_RECOVERY_POLL_S = 0.25  # waitForVRAMRecovery's ticker: the first check after an unload
JITTER_SIGMA = 0.04


def kv_bytes_per_token(model: ModelSpec, bytes_per_element: float) -> float:
    return model.block_count * (model.head_dim_k + model.head_dim_v) * model.head_count_kv * bytes_per_element


def decode_step_s(
    model: ModelSpec, gpu: GpuProfile, gpu_fraction: float, active_slots: int, context_tokens_total: int, bytes_per_element: float
) -> float:
    """One decode step for `active_slots` sequences holding `context_tokens_total` tokens of KV.

    Roofline: the weights are read once per step (shared by the batch), each sequence's KV is read,
    and compute grows with the batch; layers spilled to the CPU run at host bandwidth.
    """
    slots = max(1, active_slots)
    bytes_read = model.size_bytes + context_tokens_total * kv_bytes_per_token(model, bytes_per_element)
    flops = slots * 2.0 * model.parameter_count
    gpu_share = gpu_fraction
    # A batch is a small matrix product: at most as fast as prefill's (measured) FLOP/s.
    gpu_s = gpu_share * max(bytes_read / gpu.decode_bandwidth_bytes_per_s, flops / gpu.prefill_flops)
    if gpu.cpu_decode_flops is None:  # layers spilled off a GPU: the same roofline at host speed
        cpu_s = (1 - gpu_share) * max(bytes_read / gpu.cpu_bandwidth_bytes_per_s, flops / gpu.cpu_flops)
    else:
        # A profile calibrated from a CPU run: llama.cpp's CPU decode is a shared read plus per-sequence
        # work that does not overlap it, step(B) = shared + B x per-sequence (llama-batched-bench,
        # docs/simulator.md), so the two terms add.
        cpu_s = (1 - gpu_share) * (bytes_read / gpu.cpu_bandwidth_bytes_per_s + flops / gpu.cpu_decode_flops)
    return gpu_s + cpu_s + gpu.step_overhead_s + TOKEN_OVERHEAD_S * slots


def prefill_s(model: ModelSpec, gpu: GpuProfile, gpu_fraction: float, prompt_tokens: int, num_batch: int = NUM_BATCH) -> float:
    """Compute-bound prompt processing in num_batch chunks (each chunk also reads the weights once)."""
    chunks = max(1, math.ceil(prompt_tokens / max(1, num_batch)))
    flops = max(1, prompt_tokens) * 2.0 * model.parameter_count
    gpu_share = gpu_fraction
    gpu_s = gpu_share * max(flops / gpu.prefill_flops, chunks * model.size_bytes / gpu.decode_bandwidth_bytes_per_s)
    cpu_s = (1 - gpu_share) * max(flops / gpu.cpu_flops, chunks * model.size_bytes / gpu.cpu_bandwidth_bytes_per_s)
    return gpu_s + cpu_s + gpu.step_overhead_s * chunks


def load_s(model: ModelSpec) -> float:
    """Runner start-up plus streaming the weights in."""
    return LOAD_STARTUP_S + model.size_bytes / LOAD_BANDWIDTH_BYTES_PER_S


def observed_load_s(raw_load_s: float) -> float:
    """A load as Ollama sees it: health is polled every 250 ms, so readiness is noticed on a tick."""
    return math.ceil(raw_load_s / HEALTH_POLL_S) * HEALTH_POLL_S


class Jitter:
    """Seeded lognormal multiplier with mean exactly 1 whatever the seed (mu = -sigma²/2)."""

    def __init__(self, seed: int, sigma: float = JITTER_SIGMA) -> None:
        self._rng = random.Random(seed)
        self._sigma = sigma
        self._mu = -sigma * sigma / 2

    def factor(self) -> float:
        return self._rng.lognormvariate(self._mu, self._sigma)
