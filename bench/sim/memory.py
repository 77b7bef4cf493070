"""Memory of a loaded model: the buffers llama-server would log, its layer fit, Ollama's estimates.

Three separate things, as in Ollama v0.33:
- `llama_server_buffers`: what the simulated llama-server allocates (model, KV as stored for
  the cache type, compute, output) and how many layers its `--fit` puts on the GPU;
- `predict_server_vram`: Ollama's own pre-load guess (file size + f16 KV, llm/llama_server.go
  PredictServerVRAM), used only by the preflight and the batch policy;
- `legacy_layout`: v0.12.6's estimate (weights + KV + graph), kept for --ollama-version 0.12.6.

The compute buffer follows ggml-alloc's peak for a llama-style graph, fitted to llama-server's
logged compute buffers (see `compute_buffers`); other graphs (MoE, SWA, vision) differ.
"""

from __future__ import annotations

import math

from bench.sim.backend import LoadOutOfMemory, LoadReport, LoadRequest, MemoryBuffer
from bench.sim.catalog import ModelSpec

MIB = 2**20
GIB = 2**30
# llama-server --fit leaves this much VRAM free by default (llama.cpp common `--fit-target` 1024 MiB).
FIT_MARGIN_BYTES = 1024 * MIB
# Bytes per element as ggml stores each KV type (block size 32: q8_0 34 B, q4_0 18 B, ...).
KV_TYPE_BYTES = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
    "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32,
}
# Bits per weight of the token-embedding tensor at each file type (llama.cpp keeps it on the CPU).
_EMBD_BITS = {"Q4_K_M": 4.5, "Q4_K_S": 4.5, "Q4_0": 4.5, "Q5_K_M": 5.5, "Q6_K": 6.5625, "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0}
# v0.12.6 Ollama's compute-graph allowance for one 512-token batch (weights + KV + this = size).
LEGACY_NUM_BATCH = 512


def kv_bytes(model: ModelSpec, ctx_tokens: int, bytes_per_element: float, layers: int | None = None) -> int:
    """K and V for `ctx_tokens` cells over `layers` layers (all by default)."""
    per_token_layer = (model.head_dim_k + model.head_dim_v) * model.head_count_kv * bytes_per_element
    return int((model.block_count if layers is None else layers) * ctx_tokens * per_token_layer)


def kv_bytes_per_token(model: ModelSpec, bytes_per_element: float) -> float:
    return model.block_count * (model.head_dim_k + model.head_dim_v) * model.head_count_kv * bytes_per_element


def predict_server_vram(model: ModelSpec, ctx_tokens: int) -> int:
    """Ollama's PredictServerVRAM: GGUF size + f16 KV with head_dim = embd / heads (no cache type)."""
    head_dim = model.embedding_length // model.head_count
    return model.size_bytes + 2 * model.block_count * model.head_count_kv * head_dim * ctx_tokens * 2


def _split_weights(model: ModelSpec) -> tuple[int, int, int]:
    """(token embedding on the CPU, output head, one repeating layer) in bytes."""
    bits = _EMBD_BITS.get(model.quantization.upper(), 8.5)
    token_embd = int(model.vocab_size * model.embedding_length * bits / 8)
    token_embd = min(token_embd, model.size_bytes // 4)
    output = 0 if model.embedding_only else token_embd
    per_layer = max(0, model.size_bytes - token_embd - output) // model.block_count
    return token_embd, output, per_layer


def compute_buffers(model: ModelSpec, num_batch: int, ctx_per_slot: int, flash_attention: bool) -> tuple[int, int]:
    """(device, host) compute buffer bytes for one ubatch of `num_batch` tokens.

    Per ubatch token: the attention mask over the slot's cells (f16 with flash attention, f32
    without; a graph input, live throughout) plus the largest stage — the logits (vocab × 4 B),
    the FFN (gate, up and activation, f32, with five hidden states), or without flash attention
    the attention scores (heads × cells × 4 B, with eight hidden states). Fitted to llama-server's
    own log (`sched_reserve: CPU compute buffer size`) for a 16-layer, 1024-wide, 8-head, ffn
    2816, vocab 4096 GGUF at -c 4096/8192/16384, -ub 256/512/1024, flash attention on/off (all
    within 0.05 MiB; measured 2026-11-30 with bench's llama-server), and llama.cpp's 258.50 MiB for
    llama3.1:8b at -ub 512, -c 8192 with flash attention. Host: three hidden states per token.
    """
    hidden = model.embedding_length * 4
    mask = ctx_per_slot * (2 if flash_attention else 4)
    logits = 0 if model.embedding_only else model.vocab_size * 4
    ffn = 3 * max(model.feed_forward_length, model.embedding_length) * 4 + 5 * hidden
    attention = 0 if flash_attention else model.head_count * ctx_per_slot * 4 + 8 * hidden
    return num_batch * (mask + max(logits, ffn, attention)), 3 * num_batch * hidden


def output_buffer(model: ModelSpec, num_parallel: int) -> int:
    """llama.cpp's host output buffer: one row of logits (or an embedding) per sequence."""
    width = model.embedding_length if model.embedding_only else model.vocab_size
    return num_parallel * width * 4


def llama_server_buffers(request: LoadRequest, device: str = "CUDA0") -> LoadReport:
    """Place a model the way llama-server with `-ngl auto --fit` would, and log its buffers.

    All layers go to the GPU when everything fits within free VRAM minus the fit margin;
    otherwise as many repeating layers as fit (the output layer last), their KV with them.
    Raises LoadOutOfMemory when not even the compute buffer fits on the GPU, or the KV left on
    the host does not fit in host memory.
    """
    model = request.model
    ctx_total = request.num_ctx * request.num_parallel
    bpe = KV_TYPE_BYTES[request.kv_cache_type or "f16"]
    flash = request.flash_attention != "off"
    token_embd, output_w, per_layer = _split_weights(model)
    compute_gpu, compute_host = compute_buffers(model, request.num_batch, request.num_ctx, flash)
    kv_layer = kv_bytes(model, ctx_total, bpe, layers=1)
    blocks = model.block_count
    total_layers = blocks + 1
    budget = request.gpu_free_bytes - FIT_MARGIN_BYTES
    if request.num_gpu >= 0:
        gpu_layers = min(request.num_gpu, total_layers)
    elif request.gpu_free_bytes <= 0:
        gpu_layers = 0
    elif blocks * (per_layer + kv_layer) + output_w + compute_gpu <= budget:
        gpu_layers = total_layers
    else:
        gpu_layers = max(0, min(blocks, math.floor((budget - compute_gpu) / max(1, per_layer + kv_layer))))
    repeating_on_gpu = min(gpu_layers, blocks)
    output_on_gpu = gpu_layers >= total_layers
    if request.gpu_free_bytes > 0 and compute_gpu > request.gpu_free_bytes:
        raise LoadOutOfMemory(
            f"cudaMalloc failed: out of memory (compute buffer {compute_gpu / MIB:.2f} MiB, "
            f"free {request.gpu_free_bytes / MIB:.2f} MiB)"
        )
    kv_host = kv_layer * (blocks - repeating_on_gpu)
    if request.host_free_bytes and kv_host + compute_host > request.host_free_bytes:
        raise LoadOutOfMemory(f"failed to allocate CPU buffer of size {kv_host + compute_host}: out of memory")
    gpu_weights = repeating_on_gpu * per_layer + (output_w if output_on_gpu else 0)
    cpu_weights = model.size_bytes - gpu_weights
    buffers = [MemoryBuffer("CPU_Mapped", "model", cpu_weights)]
    if request.gpu_free_bytes > 0:
        buffers += [
            MemoryBuffer(device, "model", gpu_weights),
            MemoryBuffer(device, "KV", kv_layer * repeating_on_gpu),
        ]
    if kv_host:
        buffers.append(MemoryBuffer("CPU", "KV", kv_host))
    buffers.append(MemoryBuffer("CPU", "output", output_buffer(model, request.num_parallel)))
    if request.gpu_free_bytes > 0:
        buffers += [MemoryBuffer(device, "compute", compute_gpu), MemoryBuffer(f"{device.rstrip('0123456789')}_Host", "compute", compute_host)]
    else:
        buffers.append(MemoryBuffer("CPU", "compute", compute_gpu))
    return LoadReport(
        buffers=tuple(b for b in buffers if b.size_bytes > 0),
        gpu_layers=gpu_layers,
        total_layers=total_layers,
        context_length=request.num_ctx,
        num_batch=request.num_batch,
        fit_overflow=0 < gpu_layers < total_layers,
    )


def legacy_graph_bytes(model: ModelSpec) -> int:
    """v0.12.6-era graph allowance kept by the old simulator: f32 activations of one 512 batch."""
    return 4 * LEGACY_NUM_BATCH * (model.embedding_length + model.vocab_size)


def legacy_layout(request: LoadRequest, device: str = "CUDA0") -> LoadReport:
    """v0.12.6: Ollama's estimate (weights + KV + graph), layers offloaded to fit free VRAM.

    The KV cache is quantised only with flash attention on (else f16), as v0.12.6 did.
    """
    model = request.model
    kv_type = request.kv_cache_type if request.flash_attention == "on" else None
    kv = kv_bytes(model, request.num_ctx * request.num_parallel, KV_TYPE_BYTES[kv_type or "f16"])
    graph = legacy_graph_bytes(model)
    layers = model.block_count
    free = request.gpu_free_bytes
    if model.size_bytes + kv + graph <= free:
        gpu_layers = layers
    else:
        gpu_layers = max(0, min(layers, math.floor((free - graph) / ((model.size_bytes + kv) / layers))))
    share = gpu_layers / layers
    on_gpu_weights, on_gpu_kv = int(model.size_bytes * share), int(kv * share)
    buffers = [
        MemoryBuffer(device, "model", on_gpu_weights),
        MemoryBuffer(device, "KV", on_gpu_kv),
        MemoryBuffer(device, "compute", graph if gpu_layers else 0),
        MemoryBuffer("CPU", "model", model.size_bytes - on_gpu_weights),
        MemoryBuffer("CPU", "KV", kv - on_gpu_kv),
        MemoryBuffer("CPU", "compute", 0 if gpu_layers else graph),
    ]
    return LoadReport(
        buffers=tuple(b for b in buffers if b.size_bytes > 0),
        gpu_layers=gpu_layers,
        total_layers=layers,
        context_length=request.num_ctx,
        num_batch=request.num_batch,
        fit_overflow=gpu_layers < layers,
    )
