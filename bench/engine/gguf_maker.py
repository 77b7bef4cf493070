"""Write a small random-weight llama GGUF whose generations never stop early.

Why generation cannot stop: one residual dimension (the last, `reserved`) carries a constant that
no layer writes to (zero rows in attn_output and ffn_down), so after the final RMS norm it is always
positive. Output rows of tokens that must never be sampled (EOS/EOG and the other control tokens,
whitespace-only and non-printing tokens, bytes that are not whole UTF-8 characters) hold a large
negative weight in that dimension; every other row holds 0 there. Their logits are therefore far
below any other token's under every sampler, so each request yields exactly max_tokens tokens and
each token streams as one non-empty, valid-UTF-8 chunk.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.engine.shapes import POOLING_TYPES, ModelShape
from bench.engine.tokenizer import BOS_TOKEN, CHAT_TEMPLATE, IM_END, Corpus, TrainedVocab, train_vocab

# Residual-stream constant and the weight that turns it into a logit penalty. After the final
# norm the reserved dimension is ≥ ~1 (the constant dominates a tiny random residual), so banned
# tokens sit ~1e3 below the others; 1e3 is well inside f16's range.
RESERVED_CONSTANT = 1.0
BANNED_LOGIT_WEIGHT = -1000.0
WEIGHT_STD = 0.02
RMS_NORM_EPS = 1e-5
ROPE_FREQ_BASE = 10000.0

# gguf token types (llama.cpp LLAMA_TOKEN_TYPE_*).
TOKEN_TYPE_NORMAL = 1
TOKEN_TYPE_CONTROL = 3

# How every model this module writes describes itself (general.description, written second, ~140
# bytes into the file): `bench gguf make` replaces such a file and no other (a user's real model).
DESCRIPTION_START = "bench gguf make: "


@dataclass(frozen=True, slots=True)
class MadeModel:
    """What `bench gguf make` wrote."""

    path: Path
    shape: ModelShape
    size_bytes: int
    vocab_size: int
    banned_tokens: int
    corpus_files: int


def banned_token_ids(vocab: TrainedVocab) -> list[int]:
    """Tokens that must never be sampled: specials, partial UTF-8, whitespace-only, non-printing."""
    specials = set(vocab.special_ids.values())
    banned: list[int] = []
    for token_id in range(len(vocab.tokens)):
        if token_id in specials:
            banned.append(token_id)
            continue
        try:
            text = vocab.decoded_bytes(token_id).decode("utf-8")
        except UnicodeDecodeError:
            banned.append(token_id)
            continue
        if not text.strip() or any(_non_printing(ch) for ch in text):
            banned.append(token_id)
    return banned


def _non_printing(ch: str) -> bool:
    if ch in " \t\n":
        return False
    # Cc control, Cf format (zero-width), Cs/Co/Cn: nothing a terminal or a test can see.
    return unicodedata.category(ch).startswith("C")


def _random(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.normal(0.0, WEIGHT_STD, size=(rows, cols)).astype(np.float32)


def build_tensors(shape: ModelShape, vocab_size: int, banned: list[int], seed: int) -> dict[str, np.ndarray]:
    """All tensors by GGUF name, in numpy (rows, cols) order: ggml's ne is the reverse."""
    rng = np.random.default_rng(seed)
    hidden = shape.embedding_length
    reserved = hidden - 1
    q_dim = shape.head_count * shape.head_dim
    kv_dim = shape.head_count_kv * shape.head_dim
    ffn = shape.feed_forward_length

    token_embd = _random(rng, vocab_size, hidden)
    token_embd[:, reserved] = RESERVED_CONSTANT
    output = _random(rng, vocab_size, hidden)
    output[:, reserved] = 0.0
    output[banned, reserved] = BANNED_LOGIT_WEIGHT
    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": token_embd,
        "output_norm.weight": np.ones(hidden, dtype=np.float32),
        "output.weight": output,
    }
    for layer in range(shape.block_count):
        prefix = f"blk.{layer}"
        attn_q, attn_k, attn_v = (_random(rng, rows, hidden) for rows in (q_dim, kv_dim, kv_dim))
        ffn_gate, ffn_up = _random(rng, ffn, hidden), _random(rng, ffn, hidden)
        # Layers neither read (zero columns) nor write (zero rows) the reserved dimension.
        for reader in (attn_q, attn_k, attn_v, ffn_gate, ffn_up):
            reader[:, reserved] = 0.0
        attn_output, ffn_down = _random(rng, hidden, q_dim), _random(rng, hidden, ffn)
        attn_output[reserved, :] = 0.0
        ffn_down[reserved, :] = 0.0
        tensors.update({
            f"{prefix}.attn_norm.weight": np.ones(hidden, dtype=np.float32),
            f"{prefix}.attn_q.weight": attn_q,
            f"{prefix}.attn_k.weight": attn_k,
            f"{prefix}.attn_v.weight": attn_v,
            f"{prefix}.attn_output.weight": attn_output,
            f"{prefix}.ffn_norm.weight": np.ones(hidden, dtype=np.float32),
            f"{prefix}.ffn_gate.weight": ffn_gate,
            f"{prefix}.ffn_up.weight": ffn_up,
            f"{prefix}.ffn_down.weight": ffn_down,
        })  # fmt: skip
    return tensors


def write_gguf(
    path: Path, shape: ModelShape, vocab: TrainedVocab, corpus: Corpus, name: str, seed: int = 0
) -> MadeModel:
    """Write the model to `path` (replacing it); returns what was written."""
    import gguf

    banned = banned_token_ids(vocab)
    vocab_size = len(vocab.tokens)
    tensors = build_tensors(shape, vocab_size, banned, seed)
    f16 = shape.weight_type == "f16"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_description(
        f"{DESCRIPTION_START}random weights (seed {seed}); byte-level BPE trained on {len(corpus.sources)} "
        f"files (sha256 {corpus.sha256[:16]}); {len(banned)} tokens never sampled"
    )
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.embedding_length)
    writer.add_block_count(shape.block_count)
    writer.add_feed_forward_length(shape.feed_forward_length)
    writer.add_head_count(shape.head_count)
    writer.add_head_count_kv(shape.head_count_kv)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(RMS_NORM_EPS)
    writer.add_vocab_size(vocab_size)
    if shape.pooling:
        writer.add_pooling_type(gguf.PoolingType(POOLING_TYPES[shape.pooling]))
    writer.add_uint64("general.parameter_count", sum(int(t.size) for t in tensors.values()))
    _add_tokenizer(writer, vocab)
    for tensor_name, values in tensors.items():
        # Norm vectors stay f32 (as llama.cpp's converter writes them); matrices take the type.
        writer.add_tensor(tensor_name, values.astype(np.float16) if f16 and values.ndim == 2 else values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return MadeModel(path, shape, path.stat().st_size, vocab_size, len(banned), len(corpus.sources))


def _add_tokenizer(writer: object, vocab: TrainedVocab) -> None:
    specials = set(vocab.special_ids.values())
    writer.add_tokenizer_model("gpt2")  # type: ignore[attr-defined]
    writer.add_tokenizer_pre("gpt-2")  # type: ignore[attr-defined]
    writer.add_token_list(list(vocab.tokens))  # type: ignore[attr-defined]
    writer.add_token_types(  # type: ignore[attr-defined]
        [TOKEN_TYPE_CONTROL if i in specials else TOKEN_TYPE_NORMAL for i in range(len(vocab.tokens))]
    )
    writer.add_token_merges(list(vocab.merges))  # type: ignore[attr-defined]
    writer.add_bos_token_id(vocab.special_ids[BOS_TOKEN])  # type: ignore[attr-defined]
    writer.add_eos_token_id(vocab.special_ids[IM_END])  # type: ignore[attr-defined]
    writer.add_eot_token_id(vocab.special_ids[IM_END])  # type: ignore[attr-defined]
    writer.add_add_bos_token(False)  # type: ignore[attr-defined]
    writer.add_chat_template(CHAT_TEMPLATE)  # type: ignore[attr-defined]


def make_model(path: Path, shape: ModelShape, name: str, seed: int = 0, corpus: Corpus | None = None) -> MadeModel:
    """Train the tokenizer and write the GGUF: the whole of `bench gguf make`."""
    from bench.engine.tokenizer import default_corpus

    corpus = corpus or default_corpus()
    vocab = train_vocab(corpus, shape.vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_gguf(path, shape, vocab, corpus, name, seed)
