"""Model shapes for `bench gguf make`: the options, their checks, and presets from the sim catalog.

Each preset keeps the attention structure of a catalog model (query heads per KV head, MHA vs GQA,
head_dim relative to hidden) at a size a 2-core CPU serves at tens of tokens per second. Every
preset uses the llama architecture: llama.cpp serves it everywhere, and the KV formulas are the same
for the qwen2 family (which differs by attention biases only).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from bench.errors import UsageError

WeightType = Literal["f32", "f16"]
# llama.cpp's LLAMA_POOLING_TYPE_* values, as `{arch}.pooling_type` stores them.
POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}


# bench gguf make builds every tensor in memory: a shape needing more than this is refused before
# anything is allocated (the presets need under 64 MiB; a 1 GiB f16 file is the largest it makes).
MAX_MAKE_BYTES = 3 * 2**30


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The architecture numbers written into the GGUF (llama.* keys)."""

    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    feed_forward_length: int
    context_length: int
    vocab_size: int = 4096
    weight_type: WeightType = "f16"
    # "" makes a generation model; mean/cls/last write `llama.pooling_type`, which makes an embedding
    # model: Ollama gives it the embedding capability only (server/images.go), llama-server --embedding
    # serves /v1/embeddings only with a pooling type ("Pooling type 'none' is not OAI compatible").
    pooling: str = ""

    def check(self) -> None:
        """UsageError naming the first option that cannot make a working model."""
        positive = {
            "--layers": self.block_count, "--hidden": self.embedding_length, "--heads": self.head_count,
            "--kv-heads": self.head_count_kv, "--head-dim": self.head_dim, "--ffn": self.feed_forward_length,
            "--ctx": self.context_length, "--vocab": self.vocab_size,
        }  # fmt: skip
        for option, value in positive.items():
            if value <= 0:
                raise UsageError(f"{option} {value}: must be positive")
        if self.head_count % self.head_count_kv:
            raise UsageError(
                f"--heads {self.head_count} / --kv-heads {self.head_count_kv}: query heads must be a "
                "multiple of KV heads (GQA groups)"
            )
        if self.head_dim % 2:
            raise UsageError(f"--head-dim {self.head_dim}: RoPE needs an even head dimension")
        if self.embedding_length < 8:
            raise UsageError(f"--hidden {self.embedding_length}: at least 8 (one dimension is reserved)")
        if not 300 <= self.vocab_size <= 65536:
            raise UsageError(f"--vocab {self.vocab_size}: between 300 (bytes + merges) and 65536")
        if self.weight_type not in ("f32", "f16"):
            raise UsageError(f"--type {self.weight_type}: expected f32 or f16")
        if self.pooling and self.pooling not in POOLING_TYPES:
            raise UsageError(f"--pooling {self.pooling}: expected one of {', '.join(POOLING_TYPES)}")
        self.check_size()

    def weight_count(self) -> int:
        """Weights in the model (every tensor bench.engine.gguf_maker.build_tensors makes)."""
        hidden = self.embedding_length
        q_dim, kv_dim = self.head_count * self.head_dim, self.head_count_kv * self.head_dim
        per_layer = 2 * hidden * q_dim + 2 * hidden * kv_dim + 3 * hidden * self.feed_forward_length + 2 * hidden
        return 2 * self.vocab_size * hidden + hidden + self.block_count * per_layer

    def make_bytes(self) -> int:
        """Memory `bench gguf make` needs: every tensor in f32, and an f16 copy of each for --type f16."""
        return self.weight_count() * (4 + (2 if self.weight_type == "f16" else 0))

    def check_size(self) -> None:
        """Refuse, before any allocation, a model too large to make (the flags reach terabytes)."""
        need = self.make_bytes()
        if need > MAX_MAKE_BYTES:
            raise UsageError(
                f"this shape has {self.weight_count():,} weights: making it needs about {need / 2**30:,.1f} GiB "
                f"of memory, over bench gguf make's limit of {MAX_MAKE_BYTES / 2**30:g} GiB (random-weight "
                "models for benchmarking the engine); lower --layers, --hidden, --ffn or --vocab")

    @property
    def embedding_only(self) -> bool:
        return bool(self.pooling)

    @property
    def attention(self) -> str:
        return "MHA" if self.head_count == self.head_count_kv else "GQA"

    def kv_bytes_per_token_f16(self) -> int:
        """2 (K and V) × layers × KV heads × head_dim × 2 bytes: the exact f16 cache per token."""
        return 2 * self.block_count * self.head_count_kv * self.head_dim * 2


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    shaped_like: str
    shape: ModelShape


# Scaled from bench/sim/catalog.yaml: layers ÷ 4, heads ÷ 4 (KV heads keep the group size),
# head_dim ÷ 2 or ÷ 4 but at least 32, hidden = heads × head_dim, ffn keeps its ratio to hidden.
# head_dim stays a multiple of 32: llama.cpp refuses a quantised KV cache (q8_0, q4_0: blocks of
# 32) whose head_dim the block does not divide ("K cache type q8_0 with block size 32 does not
# divide n_embd_head_k=16"), and every real model has 64 or more.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("tiny-llama3.2-1b", "llama3.2:1b (16 L, 32 h / 8 kv, head_dim 64, GQA 4:1)",
               ModelShape(4, 256, 8, 2, 32, 1024, 16384)),
        Preset("tiny-llama3.2-3b", "llama3.2:3b (28 L, 24 h / 8 kv, head_dim 128, GQA 3:1)",
               ModelShape(7, 192, 6, 2, 32, 512, 16384)),
        Preset("tiny-llama3.1-8b", "llama3.1:8b (32 L, 32 h / 8 kv, head_dim 128, GQA 4:1)",
               ModelShape(8, 256, 8, 2, 32, 896, 16384)),
        Preset("tiny-qwen2.5-0.5b", "qwen2.5:0.5b (24 L, 14 h / 2 kv, head_dim 64, GQA 7:1)",
               ModelShape(6, 224, 7, 1, 32, 1216, 8192)),
        # Ollama forces NUM_PARALLEL 1 and num_batch min(2048, num_ctx) for it and launches
        # llama-server with --embedding; llama architecture with mean pooling (causal attention).
        Preset("tiny-embed", "nomic-embed-text (12 L, 12 h MHA, head_dim 64, hidden 768, mean pooling)",
               ModelShape(3, 192, 6, 6, 32, 768, 2048, pooling="mean")),
        Preset("tiny-mha", "an MHA model such as nomic-embed-text / llama2 (every head has its own KV)",
               ModelShape(4, 256, 8, 8, 32, 1024, 8192)),
        # Large KV per token (16 KiB f16) against small weights: the KV fit's slope dominates
        # everything else that grows with the context (compute buffers), for the 2% check.
        Preset("kv-heavy", "a KV-dominated GQA shape for memory fits (8 L, 16 h / 8 kv, head_dim 64)",
               ModelShape(8, 256, 16, 8, 64, 512, 32768)),
    )
}  # fmt: skip


def resolve_shape(preset: str | None, **overrides: int | str | None) -> ModelShape:
    """The preset's shape (default tiny-llama3.2-1b) with any option given on the command line."""
    name = preset or "tiny-llama3.2-1b"
    if name not in PRESETS:
        raise UsageError(f"--preset {name}: expected one of {', '.join(PRESETS)}")
    given = {key: value for key, value in overrides.items() if value is not None}
    shape = replace(PRESETS[name].shape, **given)  # type: ignore[arg-type]
    shape.check()
    return shape
