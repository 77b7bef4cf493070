"""KV-cache sizes: the operators' rule of thumb, Ollama's exact GQA formula, and the measured fit.

Pure functions, except `read_gguf` (reads a local file) and `write_kv_analysis` (writes kv.json).
Formulas follow Ollama's fs/ggml/ggml.go `GraphSize`: per attention layer the cache holds
ctx × (key_length + value_length) × head_count_kv elements, with ctx = num_ctx × NUM_PARALLEL.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

from bench.errors import TargetError, UsageError
from bench.manifest import Manifest
from bench.records import KV_JSON, Run, load_run, write_json

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


@dataclass(frozen=True, slots=True)
class ModelArch:
    """The attention shape of a model, from /api/show model_info or GGUF metadata (same keys)."""

    arch: str
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    context_length: int | None = None
    parameter_count: int | None = None
    vocab_size: int | None = None
    feed_forward_length: int | None = None

    @property
    def head_dim(self) -> int:
        return self.key_length

    @property
    def query_heads_per_kv_head(self) -> float:
        return self.head_count / self.head_count_kv

    @classmethod
    def from_model_info(cls, model_info: dict[str, Any], source: str = "model_info") -> ModelArch:
        """Build from /api/show's model_info; raises TargetError naming the missing key."""
        arch = model_info.get("general.architecture")
        if not isinstance(arch, str):
            raise TargetError(f"{source}: no general.architecture in model_info")

        def value(key: str, required: bool = True) -> int | None:
            raw = model_info.get(f"{arch}.{key}")
            if raw is None:
                if required:
                    raise TargetError(f"{source}: model_info lacks {arch}.{key}")
                return None
            # Some architectures give per-layer arrays (e.g. head_count_kv); the largest layer
            # bounds the cache from above, which is what sizing needs.
            if isinstance(raw, (list, tuple)):
                return int(max(raw)) if raw else None
            return int(raw)

        block_count = value("block_count")
        embedding_length = value("embedding_length")
        head_count = value("attention.head_count")
        assert block_count is not None and embedding_length is not None and head_count is not None
        # Without head_count_kv the model is plain multi-head attention.
        head_count_kv = value("attention.head_count_kv", required=False) or head_count
        default_head_dim = embedding_length // head_count
        key_length = value("attention.key_length", required=False) or default_head_dim
        value_length = value("attention.value_length", required=False) or default_head_dim
        parameter_count = model_info.get("general.parameter_count")
        return cls(
            arch=arch,
            block_count=block_count,
            embedding_length=embedding_length,
            head_count=head_count,
            head_count_kv=head_count_kv,
            key_length=key_length,
            value_length=value_length,
            context_length=value("context_length", required=False),
            parameter_count=None if parameter_count is None else int(parameter_count),
            vocab_size=value("vocab_size", required=False),
            feed_forward_length=value("feed_forward_length", required=False),
        )

    @classmethod
    def from_gguf(cls, path: str | Path) -> ModelArch:
        """Build from a local GGUF file's metadata."""
        return read_gguf(path).arch


@dataclass(frozen=True, slots=True)
class GgufModel:
    """What a GGUF file says about sizing: the attention shape and the weights' bytes."""

    arch: ModelArch
    weights_bytes: int  # sum of tensor data sizes: what Ollama counts as the weights


_GGUF_KEY_SUFFIXES = (
    "block_count",
    "embedding_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "context_length",
    "vocab_size",
)


def read_gguf(path: str | Path) -> GgufModel:
    """Read a GGUF file's metadata and tensor sizes; UsageError when it is not a readable GGUF."""
    from gguf import GGUFReader  # imported here: it is slow to import and only this needs it

    gguf_path = Path(path)
    try:
        return _read_gguf(GGUFReader(gguf_path), gguf_path)
    except UsageError:
        raise
    except (OSError, ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError,
            struct.error, UnicodeDecodeError) as error:
        # gguf's reader trusts the counts in the header: a truncated or corrupt file fails anywhere.
        raise UsageError(f"{gguf_path}: not a readable GGUF file (truncated or corrupt: "
                         f"{type(error).__name__}: {error})") from None


def _read_gguf(reader: Any, gguf_path: Path) -> GgufModel:
    # Read only the keys needed: tokenizer arrays can hold 100k+ entries.
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise UsageError(f"{gguf_path}: no general.architecture in GGUF metadata")
    arch = str(arch_field.contents())
    wanted = [f"{arch}.{suffix}" for suffix in _GGUF_KEY_SUFFIXES] + ["general.parameter_count"]
    model_info: dict[str, Any] = {"general.architecture": arch}
    for key in wanted:
        field = reader.fields.get(key)
        if field is not None:
            model_info[key] = field.contents()
    if f"{arch}.vocab_size" not in model_info and "tokenizer.ggml.tokens" in reader.fields:
        model_info[f"{arch}.vocab_size"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    try:
        model_arch = ModelArch.from_model_info(model_info, source=str(gguf_path))
    except TargetError as error:
        raise UsageError(str(error)) from error
    weights_bytes = int(sum(int(tensor.n_bytes) for tensor in reader.tensors))
    return GgufModel(model_arch, weights_bytes)


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


def format_bytes(size_bytes: float) -> str:
    """Binary units, three significant figures: 1073741824 → '1.00 GiB', 11489037517 → '10.7 GiB'."""
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B" or abs(value) >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.2f} {unit}"


# --- The measured fit --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinearFit:
    """bytes = fixed_bytes + bytes_per_token × ctx_total, by least squares."""

    fixed_bytes: float
    bytes_per_token: float
    bytes_per_token_ci95: tuple[float, float] | None  # None with fewer than 3 points
    r_squared: float | None
    points: int

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        ci = payload["bytes_per_token_ci95"]
        payload["bytes_per_token_ci95"] = None if ci is None else list(ci)
        return payload


def automatic_batch_tier(ctx_total: float) -> int:
    """The -b/-ub Ollama v0.33 picks for num_ctx × NUM_PARALLEL when num_batch is unset
    (server/sched.go generationBatchForContext): llama-server's compute buffer steps with it."""
    return 2048 if ctx_total > 32768 else 1024 if ctx_total > 4096 else 512


def fit_bytes_per_token(ctx_totals: Any, memory_bytes: Any, batch_tiers: Any = None,
                        mask_cells: Any = None) -> LinearFit | None:
    """Least-squares line through (ctx_total, bytes) with a 95% CI on the slope; None if < 2 distinct x.

    Two llama-server effects are kept out of the per-token slope when the points allow it:
    `batch_tiers` (one label per point) gives each automatic-batch tier its own intercept (the
    compute buffer steps with -ub), and `mask_cells` (-ub × per-slot num_ctx per point) takes the
    attention mask, which grows with the per-slot context, as its own term. A term the points
    cannot separate from the slope (e.g. one NUM_PARALLEL only) is left out. The fixed part
    reported is the smallest tier's.
    """
    x = np.asarray(ctx_totals, dtype=float)
    y = np.asarray(memory_bytes, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    tiers = np.asarray(batch_tiers)[keep] if batch_tiers is not None else np.zeros(len(x))
    mask = np.asarray(mask_cells, dtype=float)[keep] if mask_cells is not None else None
    if len(np.unique(tiers)) == 1 and mask is None:
        result = stats.linregress(x, y)
        ci: tuple[float, float] | None = None
        if len(x) >= 3:
            half_width = float(stats.t.ppf(0.975, len(x) - 2) * result.stderr)
            ci = (float(result.slope) - half_width, float(result.slope) + half_width)
        r_squared = float(result.rvalue**2) if math.isfinite(result.rvalue) else None
        return LinearFit(float(result.intercept), float(result.slope), ci, r_squared, len(x))
    if mask is not None:
        fit = _fit_with_tier_intercepts(x, y, tiers, mask)
        if fit is not None:
            return fit
    return _fit_with_tier_intercepts(x, y, tiers, None)


def _fit_with_tier_intercepts(x: Any, y: Any, tiers: Any, mask: Any) -> LinearFit | None:
    labels = sorted(np.unique(tiers))
    within = [len(np.unique(x[tiers == label])) for label in labels]
    if max(within) < 2:
        return None  # no tier varies its context: the slope is not identified
    columns = [x] + ([mask] if mask is not None else []) + [(tiers == label).astype(float) for label in labels]
    design = np.column_stack(columns)
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < design.shape[1]:
        return None
    residuals = y - design @ coef
    dof = len(x) - design.shape[1]
    ci: tuple[float, float] | None = None
    if dof > 0:
        sigma2 = float(residuals @ residuals) / dof
        slope_se = math.sqrt(max(0.0, sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
        half_width = float(stats.t.ppf(0.975, dof) * slope_se)
        ci = (float(coef[0]) - half_width, float(coef[0]) + half_width)
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1 - float(residuals @ residuals) / total if total > 0 else None
    first_tier = 1 + (mask is not None)
    return LinearFit(float(coef[first_tier]), float(coef[0]), ci, r_squared, len(x))


# --- KV analysis of a run (kv.json) ------------------------------------------------------------

KV_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class KvPoint:
    """One cell's steady-state memory at its context size."""

    cell_id: str
    model: str
    cache_type: str
    num_ctx: int
    num_parallel: int
    ctx_total: int
    ollama_ps_bytes: float | None  # median /api/ps size while the cell ran (Ollama's estimate)
    nvml_bytes: float | None  # median NVML memory while the cell ran (measured)
    nvml_source: str | None  # "server_process" (managed server's PIDs) or "device_used"
    process_rss_bytes: float | None = None  # median RSS of the managed server's engine processes
    process_source: str | None = None  # "engine_rss" (llama-server processes) or "tree_rss"


def _model_key(name: str) -> str:
    # Ollama reports "llama3" as "llama3:latest" in /api/ps.
    return name if ":" in name else f"{name}:latest"


def _setting_int(settings: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        raw = settings.get(key)
        if raw is not None and not (isinstance(raw, float) and math.isnan(raw)) and str(raw) != "":
            return int(float(raw))
    return None


def _steady_window(start_s: float, end_s: float) -> tuple[float, float]:
    # The first half of a cell may still show the previous runner or the load ramp.
    return start_s + (end_s - start_s) / 2, end_s


def _ps_bytes(
    ps: Any, model: str, window_s: tuple[float, float, float], ctx_totals: set[int]
) -> float | None:
    """Median /api/ps size of the cell's runner; window_s = (start, last request end, next cell start)."""
    if ps is None or len(ps) == 0:
        return None
    start_s, end_s, until_s = window_s
    named = ps[ps["name"].notna()]
    named = named[named["name"].map(_model_key) == _model_key(model)]
    steady_from, _ = _steady_window(start_s, end_s)
    # Where /api/ps reports the runner's context (num_ctx, or num_ctx × NUM_PARALLEL depending on
    # the version), it tells this cell's runner from the previous one still unloading.
    if "context_length" in named and named["context_length"].notna().any():
        matching = named[(named["t_s"] >= start_s) & (named["t_s"] <= until_s)]
        matching = matching[matching["context_length"].isin(list(ctx_totals))]
        steady_matching = matching[(matching["t_s"] >= steady_from) & (matching["t_s"] <= end_s)]
        chosen = steady_matching if len(steady_matching) else matching
        if len(chosen):
            return float(chosen["size_bytes"].median())
    steady = named[(named["t_s"] >= steady_from) & (named["t_s"] <= end_s)]
    return float(steady["size_bytes"].median()) if len(steady) else None


def _nvml_bytes(gpu: Any, start_s: float, end_s: float) -> tuple[float | None, str | None]:
    if gpu is None or len(gpu) == 0:
        return None, None
    steady_from, _ = _steady_window(start_s, end_s)
    steady = gpu[(gpu["t_s"] >= steady_from) & (gpu["t_s"] <= end_s)]
    if len(steady) == 0:
        return None, None
    if steady["server_proc_mem_bytes"].notna().any():
        column, source = "server_proc_mem_bytes", "server_process"
    else:
        column, source = "mem_used_bytes", "device_used"
    per_sample = steady.groupby("t_s")[column].sum(min_count=1)  # summed over devices
    return float(per_sample.median()), source


def _process_bytes(proc: Any, start_s: float, end_s: float) -> tuple[float | None, str | None]:
    """Median RSS while the cell ran: of llama-server processes if any ran, else the whole tree."""
    if proc is None or len(proc) == 0:
        return None, None
    steady_from, _ = _steady_window(start_s, end_s)
    steady = proc[(proc["t_s"] >= steady_from) & (proc["t_s"] <= end_s)]
    if len(steady) == 0:
        return None, None
    if (steady["engine_rss_bytes"] > 0).any():
        return float(steady["engine_rss_bytes"].median()), "engine_rss"
    return float(steady["rss_bytes"].median()), "tree_rss"


def kv_points(run: Run) -> tuple[list[KvPoint], list[str]]:
    """One point per cell of a loaded run that has a context size; plus notes."""
    notes: list[str] = []
    points: list[KvPoint] = []
    requests = run.requests
    if len(run.cells) == 0 or len(requests) == 0:
        return points, ["no cells with requests: nothing to fit"]
    ends = requests["end_s"].fillna(requests["sent_s"])
    windows = (
        requests.assign(_end=ends).groupby("cell_id").agg(start_s=("sent_s", "min"), end_s=("_end", "max"))
    ).sort_values("start_s")
    # A cell's runner stays loaded after its last request until the next cell's first request
    # reloads it (pace gap, idle time), so samples up to the next cell's start still describe it.
    # That matters for short cells (the simulator at high speed) that a 4 Hz poller may straddle.
    # Only /api/ps rows that name this runner's context use that extension: NVML and unlabelled
    # rows could be a stopping server's or the next runner's, so they keep the cell's own window.
    windows["until_s"] = windows["start_s"].shift(-1).fillna(math.inf).clip(lower=windows["end_s"])
    for settings in run.cells.to_dict("records"):
        cell_id = str(settings["cell_id"])
        num_ctx = _setting_int(settings, "num_ctx", "OLLAMA_CONTEXT_LENGTH")
        if cell_id not in windows.index or num_ctx is None or settings.get("model") is None:
            notes.append(f"cell {cell_id}: no requests or no num_ctx; left out of the fit")
            continue
        num_parallel = _setting_int(settings, "OLLAMA_NUM_PARALLEL") or 1
        cache_type = str(settings.get("OLLAMA_KV_CACHE_TYPE") or "f16")
        start_s, end_s, until_s = (float(v) for v in windows.loc[cell_id, ["start_s", "end_s", "until_s"]])
        model = str(settings["model"])
        ctx_total = num_ctx * num_parallel
        nvml_bytes, nvml_source = _nvml_bytes(run.gpu, start_s, end_s)
        process_bytes, process_source = _process_bytes(getattr(run, "proc", None), start_s, end_s)
        points.append(
            KvPoint(
                cell_id=cell_id,
                model=model,
                cache_type=cache_type,
                num_ctx=num_ctx,
                num_parallel=num_parallel,
                ctx_total=ctx_total,
                ollama_ps_bytes=_ps_bytes(run.ps, model, (start_s, end_s, until_s), {ctx_total, num_ctx}),
                nvml_bytes=nvml_bytes,
                nvml_source=nvml_source,
                process_rss_bytes=process_bytes,
                process_source=process_source,
            )
        )
    return points, notes


def _ratio(estimate: float | None, measured: float | None) -> float | None:
    return None if estimate is None or not measured else estimate / measured


def _arch_for(manifest: Manifest, model: str) -> ModelArch | None:
    shown = manifest.models.get(model) or {}
    model_info = shown.get("model_info")
    if not model_info:
        return None
    try:
        return ModelArch.from_model_info(model_info, source=f"manifest models[{model}]")
    except TargetError:
        return None


def analyze_group(points: list[KvPoint], arch: ModelArch | None, cache_type: str) -> dict[str, Any]:
    """Estimates, fits and ratios for one (model, cache type): one entry of kv.json `groups`."""
    ctx_totals = [p.ctx_total for p in points]
    tiers = [automatic_batch_tier(total) for total in ctx_totals]
    # llama-server's attention mask: -ub × per-slot num_ctx cells (v0.33 automatic batch).
    mask_cells = [automatic_batch_tier(p.ctx_total) * p.num_ctx for p in points]
    ps_fit = fit_bytes_per_token(ctx_totals, [p.ollama_ps_bytes if p.ollama_ps_bytes is not None else math.nan for p in points], tiers, mask_cells)
    nvml_fit = fit_bytes_per_token(ctx_totals, [p.nvml_bytes if p.nvml_bytes is not None else math.nan for p in points], tiers, mask_cells)
    process_fit = fit_bytes_per_token(
        ctx_totals, [p.process_rss_bytes if p.process_rss_bytes is not None else math.nan for p in points], tiers,
        mask_cells,
    )
    # NVML of the server's processes measures device memory; an engine on the CPU (no device
    # memory at all) leaves it at zero, and then the engine processes' RSS is the real memory.
    # The RSS of a server without llama-server children (the simulated engine) measures no KV.
    nvml_measures = nvml_fit is not None and any(p.nvml_bytes for p in points)
    engine_measured = any(p.process_source == "engine_rss" for p in points)
    if nvml_measures:
        measured_fit, measured_source = nvml_fit, "nvml"
    elif process_fit is not None and engine_measured:
        measured_fit, measured_source = process_fit, "process_rss"
    else:
        measured_fit, measured_source = ps_fit, "ollama_ps" if ps_fit else None
    measured = measured_fit.bytes_per_token if measured_fit else None
    per_token: dict[str, float | None] = {
        "rule_of_thumb": float(rule_of_thumb_bytes_per_token(arch)) if arch else None,
        "exact": kv_bytes_per_token(arch, cache_type) if arch else None,
        "exact_stored": kv_bytes_per_token(arch, cache_type, stored=True) if arch else None,
        "ollama_ps": ps_fit.bytes_per_token if ps_fit else None,
        "nvml": nvml_fit.bytes_per_token if nvml_fit else None,
        "process_rss": process_fit.bytes_per_token if process_fit else None,
    }
    return {
        "model": points[0].model,
        "cache_type": cache_type,
        "arch": asdict(arch) if arch else None,
        "points": [asdict(p) for p in points],
        "fits": {
            "ollama_ps": ps_fit.to_json() if ps_fit else None,
            "nvml": nvml_fit.to_json() if nvml_fit else None,
            "process_rss": process_fit.to_json() if process_fit else None,
        },
        "nvml_source": next((p.nvml_source for p in points if p.nvml_source), None),
        "process_source": next((p.process_source for p in points if p.process_source), None),
        "bytes_per_token": per_token,
        "measured_source": measured_source,
        "ratio_to_measured": {
            name: _ratio(value, measured)
            for name, value in per_token.items()
            if name in ("rule_of_thumb", "exact", "exact_stored", "ollama_ps")
        },
    }


def analyze_run(run: Run) -> dict[str, Any]:
    """The kv.json payload for a loaded run: one group per (model, cache type) with ≥ 2 context sizes."""
    points, notes = kv_points(run)
    groups: list[dict[str, Any]] = []
    keys = sorted({(p.model, p.cache_type) for p in points})
    for model, cache_type in keys:
        group_points = [p for p in points if (p.model, p.cache_type) == (model, cache_type)]
        if len({p.ctx_total for p in group_points}) < 2:
            notes.append(f"{model} {cache_type}: one context size only; no fit")
        groups.append(analyze_group(group_points, _arch_for(run.manifest, model), cache_type))
    return {
        "schema_version": KV_SCHEMA_VERSION,
        "run_id": run.manifest.run_id,
        "groups": groups,
        "notes": notes,
    }


def write_kv_analysis(run_dir: str | Path) -> Path | None:
    """Analyse a finished run directory and write kv.json when some model has ≥ 2 context sizes.

    For the runner's end of run: a run that never varied num_ctx / NUM_PARALLEL gets no kv.json.
    """
    payload = analyze_run(load_run(run_dir))
    if not any(any(group["fits"].values()) for group in payload["groups"]):
        return None
    path = Path(run_dir) / KV_JSON
    write_json(path, payload)
    return path
