"""KV-cache estimates on the protocol doc's worked example and the catalog's architectures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.errors import TargetError, UsageError
from bench.analysis.kv_fit import fit_bytes_per_token
from bench.analysis.kv_formulas import (
    describe_ratio,
    exact_kv_bytes,
    max_parallel_that_fits,
    parse_bytes,
    rule_of_thumb_bytes,
    size_model,
)
from bench.analysis.kv_model import ModelArch, read_gguf
from bench.numbers import binary_size

GIB = 1024**3

LLAMA31_8B_INFO = {
    "general.architecture": "llama",
    "general.parameter_count": 8030261248,
    "llama.block_count": 32,
    "llama.embedding_length": 4096,
    "llama.attention.head_count": 32,
    "llama.attention.head_count_kv": 8,
    "llama.context_length": 131072,
    "llama.feed_forward_length": 14336,
    "llama.vocab_size": 128256,
}


@pytest.fixture
def llama31_8b() -> ModelArch:
    return ModelArch.from_model_info(LLAMA31_8B_INFO)


def test_model_info_gives_head_dim_from_hidden_over_heads(llama31_8b: ModelArch) -> None:
    assert llama31_8b.head_dim == 128 and llama31_8b.value_length == 128
    assert llama31_8b.query_heads_per_kv_head == 4
    assert llama31_8b.parameter_count == 8030261248 and llama31_8b.context_length == 131072


def test_worked_example_rule_of_thumb_2gib_exact_1gib(llama31_8b: ModelArch) -> None:
    assert rule_of_thumb_bytes(llama31_8b, 8192) == 2 * GIB
    assert exact_kv_bytes(llama31_8b, 8192, 1, "f16") == 1 * GIB


def test_four_parallel_slots_quadruple_the_cache(llama31_8b: ModelArch) -> None:
    assert exact_kv_bytes(llama31_8b, 8192, 4, "f16") == 4 * GIB


def test_q8_0_is_half_nominal_and_about_2_1_gib_stored(llama31_8b: ModelArch) -> None:
    assert exact_kv_bytes(llama31_8b, 8192, 4, "q8_0") == 2 * GIB
    assert exact_kv_bytes(llama31_8b, 8192, 4, "q8_0", stored=True) == 2.125 * GIB
    assert exact_kv_bytes(llama31_8b, 8192, 4, "q4_0") == 1 * GIB
    assert exact_kv_bytes(llama31_8b, 8192, 4, "q4_0", stored=True) == 1.125 * GIB


def test_explicit_key_and_value_lengths_are_used() -> None:
    # qwen3-like: head_dim 128 although hidden / heads = 64.
    arch = ModelArch.from_model_info({
        "general.architecture": "qwen3", "qwen3.block_count": 28, "qwen3.embedding_length": 1024,
        "qwen3.attention.head_count": 16, "qwen3.attention.head_count_kv": 8,
        "qwen3.attention.key_length": 128, "qwen3.attention.value_length": 128,
    })  # fmt: skip
    assert exact_kv_bytes(arch, 1000) == 28 * 1000 * (128 + 128) * 8 * 2


def test_missing_head_count_kv_means_multi_head_attention() -> None:
    arch = ModelArch.from_model_info({
        "general.architecture": "nomic-bert", "nomic-bert.block_count": 12,
        "nomic-bert.embedding_length": 768, "nomic-bert.attention.head_count": 12,
    })  # fmt: skip
    assert arch.head_count_kv == 12
    # MHA: the rule of thumb forgets V (or K) and is 2x too low.
    assert rule_of_thumb_bytes(arch, 2048) * 2 == exact_kv_bytes(arch, 2048)


def test_model_info_without_block_count_names_the_key() -> None:
    with pytest.raises(TargetError, match="llama.block_count"):
        ModelArch.from_model_info({"general.architecture": "llama", "llama.embedding_length": 4096})


@pytest.mark.parametrize(
    ("heads", "kv_heads", "expected"),
    [(32, 8, "2x too high"), (64, 8, "4x too high"), (14, 2, "3.5x too high"), (12, 12, "2x too low")],
)
def test_rule_of_thumb_error_is_query_heads_per_kv_head_over_two(heads: int, kv_heads: int, expected: str) -> None:
    arch = ModelArch("llama", 10, heads * 64, heads, kv_heads, 64, 64)
    ratio = rule_of_thumb_bytes(arch, 4096) / exact_kv_bytes(arch, 4096)
    assert ratio == pytest.approx(heads / kv_heads / 2)
    assert describe_ratio(ratio) == expected


def test_largest_parallel_that_fits(llama31_8b: ModelArch) -> None:
    weights = 4_920_753_328
    # 20 GiB, fixed 1 GiB graph; llama-server keeps 1 GiB free: 20 - 1 - 4.58 - 1 = 13.4 GiB of KV -> 13 slots.
    assert max_parallel_that_fits(llama31_8b, weights, 8192, "f16", 20 * GIB, graph_bytes=GIB) == 13
    # q8_0 stored blocks: 0.53125 GiB per slot -> 25 slots.
    assert max_parallel_that_fits(llama31_8b, weights, 8192, "q8_0", 20 * GIB, graph_bytes=GIB) == 25
    assert max_parallel_that_fits(llama31_8b, weights, 8192, "f16", 4 * GIB, graph_bytes=0) == 0
    # The default compute-buffer estimate (batch grows with num_ctx x NUM_PARALLEL) costs a slot.
    assert max_parallel_that_fits(llama31_8b, weights, 8192, "f16", 20 * GIB) < 14


def test_size_model_summarises_one_setting(llama31_8b: ModelArch) -> None:
    sizing = size_model(llama31_8b, 4_920_753_328, 8192, 4, "f16", 80 * GIB, graph_bytes=GIB)
    assert sizing.rule_of_thumb_bytes == 8 * GIB and sizing.exact_bytes == 4 * GIB
    assert sizing.rule_to_exact == 2.0
    assert sizing.total_bytes == 4_920_753_328 + 4 * GIB + GIB
    assert sizing.max_parallel == 73


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [("80GiB", 80 * GIB), ("24GB", 24 * 10**9), ("24G", 24 * GIB), ("1.5 TiB", int(1.5 * 1024**4)), ("512", 512)],
)
def test_gpu_memory_sizes_parse(text: str, size_bytes: int) -> None:
    assert parse_bytes(text) == size_bytes


def test_malformed_size_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'80 gigs'"):
        parse_bytes("80 gigs")


def test_bytes_print_in_binary_units() -> None:
    assert binary_size(GIB) == "1.00 GiB"
    assert binary_size(256 * 1024**2) == "256 MiB"
    assert binary_size(10.7 * GIB) == "10.7 GiB"
    assert binary_size(512) == "512 B"
    assert binary_size(2.125 * GIB) == "2.12 GiB"
    assert binary_size(4_920_753_328) == "4.58 GiB"


def test_fit_recovers_slope_and_intercept_exactly() -> None:
    ctx_totals = np.array([2048, 4096, 8192, 16384, 32768, 65536])
    memory = 5_000_000_000 + 131072 * ctx_totals
    fit = fit_bytes_per_token(ctx_totals, memory)
    assert fit is not None
    assert fit.bytes_per_token == pytest.approx(131072, rel=1e-12)
    assert fit.fixed_bytes == pytest.approx(5e9, rel=1e-12)
    assert fit.bytes_per_token_ci95 is not None
    low, high = fit.bytes_per_token_ci95
    assert low == pytest.approx(131072) and high == pytest.approx(131072)
    assert fit.points == 6 and fit.r_squared == pytest.approx(1.0)


def test_fit_confidence_interval_covers_noisy_slope() -> None:
    rng = np.random.default_rng(7)
    ctx_totals = np.repeat([4096, 8192, 16384, 32768], 5)
    memory = 2e9 + 65536 * ctx_totals + rng.normal(0, 5e6, ctx_totals.size)
    fit = fit_bytes_per_token(ctx_totals, memory)
    assert fit is not None and fit.bytes_per_token_ci95 is not None
    low, high = fit.bytes_per_token_ci95
    assert low < 65536 < high and high - low < 0.02 * 65536


def test_fit_needs_two_context_sizes() -> None:
    assert fit_bytes_per_token([8192, 8192], [1e9, 1.1e9]) is None
    two = fit_bytes_per_token([4096, 8192], [1e9, 2e9])
    assert two is not None and two.bytes_per_token_ci95 is None


def write_tiny_gguf(path: Path) -> int:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_context_length(2048)
    writer.add_uint64("general.parameter_count", 8192)
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
    writer.add_tensor("blk.1.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return 64 * 64 * 2 + 64 * 64 * 4


def test_gguf_metadata_gives_architecture_and_weights(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    tensor_bytes = write_tiny_gguf(path)
    model = read_gguf(path)
    assert model.weights_bytes == tensor_bytes
    assert model.arch == ModelArch("llama", 2, 64, 4, 2, 16, 16, 2048, 8192, None)
    assert ModelArch.from_gguf(path) == model.arch


def test_a_file_that_is_not_gguf_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"not a gguf file at all")
    with pytest.raises(UsageError, match="model.bin"):
        read_gguf(path)


def test_compute_buffer_is_sized_like_llama_server_not_graphsize(llama31_8b: ModelArch) -> None:
    """`bench kv` shows llama-server's compute buffer (Ollama v0.33) instead of v0.12.6's GraphSize."""
    from bench.analysis.kv_formulas import automatic_num_batch, compute_buffer_bytes, graph_estimate_bytes

    # llama.cpp logs 258.50 MiB for llama3.1:8b at -ub 512, -c 8192 with flash attention.
    assert compute_buffer_bytes(llama31_8b, 8192, 512) / 2**20 == pytest.approx(258.5, abs=0.01)
    assert automatic_num_batch(8192) == 1024 and automatic_num_batch(40000) == 2048 and automatic_num_batch(4096) == 512
    # With flash attention only the f16 mask grows with context; GraphSize grew ~30x faster.
    grown = compute_buffer_bytes(llama31_8b, 65536, 512) - compute_buffer_bytes(llama31_8b, 8192, 512)
    assert grown == 512 * (65536 - 8192) * 2
    assert graph_estimate_bytes(llama31_8b, 65536) > 4 * compute_buffer_bytes(llama31_8b, 65536, 512)
    unknown = ModelArch("x", 16, 1024, 8, 8, 128, 128)
    assert compute_buffer_bytes(unknown, 16384, 1024) is None
    assert not size_model(unknown, None, 16384).graph_known


@pytest.mark.parametrize(
    ("num_ctx", "num_batch", "flash", "logged_mib"),
    [(16384, 1024, True, 85.04), (16384, 512, True, 42.52), (16384, 256, True, 21.26), (8192, 512, True, 34.52),
     (4096, 512, True, 30.52), (16384, 512, False, 304.01), (4096, 512, False, 88.01)],
)
def test_compute_buffer_matches_llama_servers_log(num_ctx: int, num_batch: int, flash: bool, logged_mib: float) -> None:
    """llama-server's `sched_reserve: CPU compute buffer size` for a 16-layer, 1024-wide, 8-head (MHA,
    head_dim 128), ffn 2816, vocab 4096 GGUF (`bench gguf make`), measured 2026-11-30 with -np 1; the
    old GraphSize said 296 MiB at 16384 for this shape."""
    from bench.analysis.kv_formulas import compute_buffer_bytes

    probe = ModelArch("llama", 16, 1024, 8, 8, 128, 128, vocab_size=4096, feed_forward_length=2816)
    assert compute_buffer_bytes(probe, num_ctx, num_batch, flash) / 2**20 == pytest.approx(logged_mib, abs=0.06)
