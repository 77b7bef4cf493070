"""KV-cache sizes: the operators' rule of thumb, Ollama's exact GQA formula, the compute buffer.

Pure functions. Formulas follow Ollama's fs/ggml/ggml.go `GraphSize`: per attention layer the cache
holds ctx × (key_length + value_length) × head_count_kv elements, with ctx = num_ctx × NUM_PARALLEL.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from bench.analysis.kv_model import ModelArch
from bench.errors import UsageError

CacheType = Literal["f16", "q8_0", "q4_0"]
CACHE_TYPES: tuple[str, ...] = ("f16", "q8_0", "q4_0")

# What Ollama's estimate uses (kvCacheBytesPerElement) ...
NOMINAL_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
# ... and what ggml stores: q8_0 packs 32 values in 34 bytes (an f16 scale + 32 int8),
# q4_0 packs 32 values in 18 bytes (an f16 scale + 16 bytes of nibbles).
STORED_BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

# Ollama's default num_batch before v0.33's automatic batch (512/1024/2048 by context).
DEFAULT_NUM_BATCH = 512


def _check_cache_type(cache_type: str) -> None:
    if cache_type not in NOMINAL_BYTES_PER_ELEMENT:
        raise UsageError(f"cache type {cache_type!r}: expected one of {', '.join(CACHE_TYPES)}")

# --- Estimates -------------------------------------------------------------------------------


def rule_of_thumb_bytes_per_token(arch: ModelArch) -> int:
    """layers × hidden × 2 bytes: the operators' rule, per token of context."""
    return arch.block_count * arch.embedding_length * 2


def rule_of_thumb_bytes(arch: ModelArch, ctx: int) -> int:
    """ctx × layers × hidden × 2 bytes (ctx = num_ctx × NUM_PARALLEL for a whole runner)."""
    return ctx * rule_of_thumb_bytes_per_token(arch)


def kv_bytes_per_token(arch: ModelArch, cache_type: str = "f16", stored: bool = False) -> float:
    """layers × (key_length + value_length) × kv_heads × bytes/element, per token of context."""
    _check_cache_type(cache_type)
    table = STORED_BYTES_PER_ELEMENT if stored else NOMINAL_BYTES_PER_ELEMENT
    elements = arch.block_count * (arch.key_length + arch.value_length) * arch.head_count_kv
    return elements * table[cache_type]


def exact_kv_bytes(
    arch: ModelArch,
    num_ctx: int,
    num_parallel: int = 1,
    cache_type: str = "f16",
    stored: bool = False,
) -> float:
    """2 × layers × (num_ctx × num_parallel) × kv_heads × head_dim × bytes/element.

    stored=False uses Ollama's nominal bytes per element (its estimate); stored=True the ggml
    block sizes actually allocated for quantised caches (34/32 and 18/32 bytes per element).
    """
    return num_ctx * num_parallel * kv_bytes_per_token(arch, cache_type, stored)


def graph_estimate_bytes(arch: ModelArch, ctx_total: int, num_batch: int = DEFAULT_NUM_BATCH) -> int:
    """Ollama v0.12.6's compute-graph allowance (fs/ggml/ggml.go GraphSize) — an estimate Ollama no
    longer uses since v0.30; kept for comparison with old runs."""
    attention = 4 * num_batch * (1 + 4 * arch.embedding_length + ctx_total * (1 + arch.head_count))
    output = 4 * num_batch * (arch.embedding_length + (arch.vocab_size or 0))
    return max(attention, output)


def automatic_num_batch(ctx_total: int) -> int:
    """Ollama v0.33's -b/-ub for a completion model without num_batch (sched.go generationBatchForContext).

    Ollama may step 2048/1024 down when the model is predicted to leave little VRAM headroom.
    """
    return 2048 if ctx_total > 32768 else 1024 if ctx_total > 4096 else 512


def compute_buffer_bytes(arch: ModelArch, num_ctx: int, num_batch: int, flash_attention: bool = True) -> int | None:
    """llama-server's compute buffer for one ubatch of `num_batch` tokens (per slot context `num_ctx`).

    Per ubatch token: the attention mask over the slot's cells (2 B each with flash attention,
    4 B without) plus the largest stage of the graph — logits (vocab × 4 B), the FFN (3 × ffn ×
    4 B + 5 hidden states), or without flash attention the scores (heads × cells × 4 B + 8 hidden
    states). Fitted to llama-server's logged `compute buffer size` for a 16-layer 1024-wide GGUF
    at three contexts, three batch sizes, flash attention on and off (within 0.05 MiB), and to
    llama.cpp's 258.50 MiB for llama3.1:8b at -ub 512, -c 8192. MoE, SWA and vision graphs
    differ. None when the vocabulary size is unknown.
    """
    if not arch.vocab_size:
        return None
    hidden = arch.embedding_length * 4
    mask = num_ctx * (2 if flash_attention else 4)
    logits = arch.vocab_size * 4
    ffn = 3 * max(arch.feed_forward_length or 0, arch.embedding_length) * 4 + 5 * hidden
    attention = 0 if flash_attention else arch.head_count * num_ctx * 4 + 8 * hidden
    return num_batch * (mask + max(logits, ffn, attention))


# llama-server's `--fit` keeps this much VRAM free (Ollama v0.33 starts it without -ngl): a model
# is fully on the GPU only when weights + KV + compute leave it (llama.cpp common fit target).
FIT_MARGIN_BYTES = 1024 * 2**20


def max_parallel_that_fits(
    arch: ModelArch,
    weights_bytes: int,
    num_ctx: int,
    cache_type: str,
    gpu_memory_bytes: int,
    graph_bytes: int | None = None,
    limit: int = 4096,
    margin_bytes: int = FIT_MARGIN_BYTES,
) -> int:
    """Largest NUM_PARALLEL whose weights + stored KV + compute buffer fit in gpu_memory_bytes (0: none).

    graph_bytes None uses `compute_buffer_bytes` at Ollama v0.33's automatic batch for
    num_ctx × NUM_PARALLEL (0 when it cannot be known); a number is taken as a fixed allowance.
    """
    best = 0
    for num_parallel in range(1, limit + 1):
        graph = _compute_allowance(arch, num_ctx, num_parallel) if graph_bytes is None else graph_bytes
        total = weights_bytes + exact_kv_bytes(arch, num_ctx, num_parallel, cache_type, True) + graph
        if total > gpu_memory_bytes - margin_bytes:
            break
        best = num_parallel
    return best


def _compute_allowance(arch: ModelArch, num_ctx: int, num_parallel: int) -> int:
    return compute_buffer_bytes(arch, num_ctx, automatic_num_batch(num_ctx * num_parallel)) or 0


@dataclass(frozen=True, slots=True)
class KvSizing:
    """Everything `bench kv` prints for one model at one (num_ctx, NUM_PARALLEL, cache type)."""

    arch: ModelArch
    num_ctx: int
    num_parallel: int
    cache_type: str
    weights_bytes: int | None
    rule_of_thumb_bytes: int
    exact_bytes: float  # Ollama's nominal bytes per element
    exact_stored_bytes: float  # ggml's block sizes (differs for q8_0 / q4_0)
    graph_bytes: int  # the compute buffer (estimate, or the --graph allowance); 0 when unknown
    gpu_memory_bytes: int | None
    max_parallel: int | None  # None without weights or GPU memory

    @property
    def ctx_total(self) -> int:
        return self.num_ctx * self.num_parallel

    @property
    def rule_to_exact(self) -> float:
        """How many times the rule of thumb overstates the exact (nominal) figure."""
        return self.rule_of_thumb_bytes / self.exact_bytes

    graph_known: bool = True  # False: no vocabulary size, the compute buffer could not be estimated
    num_batch: int = DEFAULT_NUM_BATCH  # the -b/-ub the compute buffer was estimated at

    @property
    def total_bytes(self) -> float | None:
        if self.weights_bytes is None:
            return None
        return self.weights_bytes + self.exact_stored_bytes + self.graph_bytes


def size_model(
    arch: ModelArch,
    weights_bytes: int | None,
    num_ctx: int,
    num_parallel: int = 1,
    cache_type: str = "f16",
    gpu_memory_bytes: int | None = None,
    graph_bytes: int | None = None,
) -> KvSizing:
    """The rule of thumb, the exact KV, the graph and the largest NUM_PARALLEL, for one setting."""
    _check_cache_type(cache_type)
    if num_ctx <= 0 or num_parallel <= 0:
        raise UsageError(f"--ctx {num_ctx} / --parallel {num_parallel}: both must be positive")
    ctx_total = num_ctx * num_parallel
    fits = None
    if weights_bytes is not None and gpu_memory_bytes is not None:
        fits = max_parallel_that_fits(arch, weights_bytes, num_ctx, cache_type, gpu_memory_bytes, graph_bytes)
    return KvSizing(
        arch=arch,
        num_ctx=num_ctx,
        num_parallel=num_parallel,
        cache_type=cache_type,
        weights_bytes=weights_bytes,
        rule_of_thumb_bytes=rule_of_thumb_bytes(arch, ctx_total),
        exact_bytes=exact_kv_bytes(arch, num_ctx, num_parallel, cache_type),
        exact_stored_bytes=exact_kv_bytes(arch, num_ctx, num_parallel, cache_type, stored=True),
        graph_bytes=_compute_allowance(arch, num_ctx, num_parallel) if graph_bytes is None else graph_bytes,
        gpu_memory_bytes=gpu_memory_bytes,
        max_parallel=fits,
        graph_known=graph_bytes is not None or compute_buffer_bytes(arch, num_ctx, 512) is not None,
        num_batch=automatic_num_batch(ctx_total),
    )


def describe_ratio(ratio: float) -> str:
    """2.0 → '2.0x too high'; 0.5 → '2.0x too low'; 1.0 → 'exact'."""
    if math.isclose(ratio, 1.0, rel_tol=0.005):
        return "exact"
    if ratio > 1:
        return f"{ratio:.2g}x too high"
    return f"{1 / ratio:.2g}x too low"


# --- Sizes in text -----------------------------------------------------------------------------

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}  # fmt: skip
_SIZE_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """'80GiB' → 85899345920; GB/MB are powers of 10, GiB/G powers of 2. UsageError if malformed."""
    match = _SIZE_PATTERN.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UsageError(f"size {text!r}: expected a number with a unit such as 80GiB or 24GB")
    return int(float(match.group(1)) * _UNITS[unit])
