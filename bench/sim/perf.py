"""Memory estimate and roofline timing model (see shared/sim-performance-model.md).

All durations returned here are *simulated* seconds; the scheduler divides them by --speed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bench.sim.catalog import GpuProfile, ModelSpec

NUM_BATCH = 512  # Ollama's default num_batch: prompts are processed in chunks of this many tokens
ETA_MEM = 0.7  # achieved fraction of memory bandwidth
ETA_COMPUTE = 0.5  # achieved fraction of dense FLOP/s
STEP_OVERHEAD_S = 0.0015  # per decode step: kernel launches, sampling, the runner's Go/C++ glue
SLOT_OVERHEAD_S = 0.0002  # per active sequence per step (sampling, detokenising)
LOAD_STARTUP_S = 1.0  # runner process start-up before weights stream in
LOAD_BANDWIDTH_BYTES_PER_S = 3e9  # NVMe / page cache read rate while loading weights
UNLOAD_S = 0.05  # killing a runner is quick
JITTER_SIGMA = 0.04


@dataclass(frozen=True)
class MemoryLayout:
    """Ollama-style estimate of a runner's memory: what /api/ps reports."""

    weights_bytes: int
    kv_bytes: int
    graph_bytes: int
    gpu_layers: int
    total_layers: int

    @property
    def size_bytes(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.graph_bytes

    @property
    def size_vram_bytes(self) -> int:
        if self.gpu_layers == 0:
            return 0
        if self.gpu_layers == self.total_layers:
            return self.size_bytes
        per_layer = (self.weights_bytes + self.kv_bytes) / self.total_layers
        return int(self.graph_bytes + per_layer * self.gpu_layers)

    @property
    def gpu_fraction(self) -> float:
        return self.gpu_layers / self.total_layers


def kv_cache_bytes(model: ModelSpec, runner_ctx_tokens: int, bytes_per_element: float) -> int:
    """Ollama's KV estimate: ctx × (key_length + value_length) × head_count_kv × bpe, over all layers.

    runner_ctx_tokens is num_ctx × NUM_PARALLEL. With key = value = head_dim this is exactly
    2 × layers × ctx × kv_heads × head_dim × bpe.
    """
    per_layer = runner_ctx_tokens * (model.head_dim_k + model.head_dim_v) * model.head_count_kv * bytes_per_element
    return int(model.block_count * per_layer)


def graph_bytes(model: ModelSpec) -> int:
    """The compute-graph allowance: float32 activations of one num_batch over hidden + vocabulary.

    This is the logits term of Ollama's GraphSize for llama-like models; it is kept independent of
    the context so that /api/ps size is exactly weights + graph + KV, linear in num_ctx × NUM_PARALLEL.
    """
    return 4 * NUM_BATCH * (model.embedding_length + model.vocab_size)


def memory_layout(model: ModelSpec, runner_ctx_tokens: int, bytes_per_element: float, free_vram_bytes: int) -> MemoryLayout:
    """Offload as many layers as fit in free VRAM (the graph always lives on the GPU), like Ollama."""
    weights = model.size_bytes
    kv = kv_cache_bytes(model, runner_ctx_tokens, bytes_per_element)
    graph = graph_bytes(model)
    layers = model.block_count
    if weights + kv + graph <= free_vram_bytes:
        gpu_layers = layers
    else:
        per_layer = (weights + kv) / layers
        gpu_layers = max(0, min(layers, math.floor((free_vram_bytes - graph) / per_layer)))
    return MemoryLayout(weights, kv, graph, gpu_layers, layers)


def kv_bytes_per_token(model: ModelSpec, bytes_per_element: float) -> float:
    return model.block_count * (model.head_dim_k + model.head_dim_v) * model.head_count_kv * bytes_per_element


def decode_step_s(
    model: ModelSpec, gpu: GpuProfile, layout: MemoryLayout, active_slots: int, context_tokens_total: int, bytes_per_element: float
) -> float:
    """One decode step for `active_slots` sequences holding `context_tokens_total` tokens of KV.

    Roofline: the weights are read once per step (shared by the batch), each sequence's KV is read,
    and compute grows with the batch; layers spilled to the CPU run at host bandwidth.
    """
    slots = max(1, active_slots)
    bytes_read = layout.weights_bytes + context_tokens_total * kv_bytes_per_token(model, bytes_per_element)
    flops = slots * 2.0 * model.parameter_count
    gpu_share = layout.gpu_fraction
    gpu_s = gpu_share * max(bytes_read / (gpu.bandwidth_bytes_per_s * ETA_MEM), flops / (gpu.flops * ETA_COMPUTE))
    cpu_s = (1 - gpu_share) * max(bytes_read / gpu.cpu_bandwidth_bytes_per_s, flops / gpu.cpu_flops)
    return gpu_s + cpu_s + STEP_OVERHEAD_S + SLOT_OVERHEAD_S * slots


def prefill_s(model: ModelSpec, gpu: GpuProfile, layout: MemoryLayout, prompt_tokens: int) -> float:
    """Compute-bound prompt processing in num_batch chunks (each chunk also reads the weights once)."""
    chunks = max(1, math.ceil(prompt_tokens / NUM_BATCH))
    flops = max(1, prompt_tokens) * 2.0 * model.parameter_count
    gpu_share = layout.gpu_fraction
    gpu_s = gpu_share * max(flops / (gpu.flops * ETA_COMPUTE), chunks * layout.weights_bytes / (gpu.bandwidth_bytes_per_s * ETA_MEM))
    cpu_s = (1 - gpu_share) * max(flops / gpu.cpu_flops, chunks * layout.weights_bytes / gpu.cpu_bandwidth_bytes_per_s)
    return gpu_s + cpu_s + STEP_OVERHEAD_S * chunks


def load_s(model: ModelSpec) -> float:
    """Runner start-up plus streaming the weights in."""
    return LOAD_STARTUP_S + model.size_bytes / LOAD_BANDWIDTH_BYTES_PER_S


class Jitter:
    """Seeded lognormal multiplier with mean exactly 1 whatever the seed (mu = -sigma²/2)."""

    def __init__(self, seed: int, sigma: float = JITTER_SIGMA) -> None:
        self._rng = random.Random(seed)
        self._sigma = sigma
        self._mu = -sigma * sigma / 2

    def factor(self) -> float:
        return self._rng.lognormvariate(self._mu, self._sigma)
