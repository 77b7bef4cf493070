"""`bench gguf make`: a readable llama GGUF whose output layer can never pick a stopping token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.analysis.kv_formulas import kv_bytes_per_token
from bench.analysis.kv_model import read_gguf
from bench.cli import cli
from bench.engine.gguf_maker import BANNED_LOGIT_WEIGHT, banned_token_ids, build_tensors
from bench.engine.models import file_entry
from bench.engine.shapes import PRESETS, ModelShape, resolve_shape
from bench.engine.tokenizer import SPECIAL_TOKENS, Corpus, default_corpus, train_vocab
from bench.errors import UsageError


@pytest.fixture(scope="module")
def vocab():
    return train_vocab(default_corpus(), 1024)


def test_tokenizer_is_byte_level_bpe_with_chatml_specials(vocab) -> None:
    assert len(vocab.tokens) == 1024 and len(vocab.merges) > 500
    assert [vocab.tokens[vocab.special_ids[t]] for t in SPECIAL_TOKENS] == list(SPECIAL_TOKENS)
    # Every byte is a token (byte-level: any text tokenizes).
    singles = {vocab.decoded_bytes(i) for i in range(len(vocab.tokens)) if i not in vocab.special_ids.values()}
    assert all(bytes([b]) in singles for b in range(256))


def test_banned_tokens_are_specials_partial_utf8_and_blank(vocab) -> None:
    banned = set(banned_token_ids(vocab))
    assert set(vocab.special_ids.values()) <= banned
    assert all(vocab.decoded_bytes(i) != b"" for i in range(len(vocab.tokens)) if i not in banned)
    for token_id in range(len(vocab.tokens)):
        if token_id in banned:
            continue
        text = vocab.decoded_bytes(token_id).decode("utf-8")  # never raises for an allowed token
        assert text.strip(), repr(text)
    lone_continuation_byte = next(i for i in range(len(vocab.tokens)) if vocab.decoded_bytes(i) == b"\x80")
    assert lone_continuation_byte in banned


def test_reserved_dimension_is_written_by_no_layer_and_penalises_only_banned_rows(vocab) -> None:
    shape = ModelShape(2, 32, 4, 2, 8, 64, 512, vocab_size=1024)
    banned = banned_token_ids(vocab)
    tensors = build_tensors(shape, len(vocab.tokens), banned, seed=1)
    reserved = shape.embedding_length - 1
    assert np.all(tensors["token_embd.weight"][:, reserved] == 1.0)
    for layer in range(shape.block_count):
        assert not tensors[f"blk.{layer}.attn_output.weight"][reserved].any()
        assert not tensors[f"blk.{layer}.ffn_down.weight"][reserved].any()
        assert not tensors[f"blk.{layer}.attn_q.weight"][:, reserved].any()
    output = tensors["output.weight"][:, reserved]
    assert np.all(output[banned] == BANNED_LOGIT_WEIGHT)
    assert np.count_nonzero(output) == len(banned)


def test_made_model_reads_back_with_its_shape(tmp_path: Path) -> None:
    out = tmp_path / "gqa.gguf"
    result = CliRunner().invoke(cli, ["gguf", "make", str(out), "--layers", "2", "--hidden", "64", "--heads", "4",
                                      "--kv-heads", "2", "--head-dim", "24", "--ffn", "96", "--ctx", "1024",
                                      "--vocab", "512", "--type", "f32"])
    assert result.exit_code == 0, result.output
    model = read_gguf(out)
    arch = model.arch
    assert (arch.arch, arch.block_count, arch.embedding_length, arch.head_count, arch.head_count_kv) == (
        "llama", 2, 64, 4, 2)
    assert (arch.key_length, arch.value_length, arch.context_length, arch.vocab_size) == (24, 24, 1024, 512)
    assert kv_bytes_per_token(arch) == 2 * 2 * 2 * 24 * 2
    assert "wrote" in result.output and "GQA" in result.output


def test_pooling_makes_an_embedding_model_the_sim_catalog_serves_as_one(tmp_path: Path) -> None:
    out = tmp_path / "embed.gguf"
    result = CliRunner().invoke(cli, ["gguf", "make", str(out), "--layers", "1", "--hidden", "64", "--heads", "2",
                                      "--kv-heads", "2", "--head-dim", "32", "--ffn", "64", "--vocab", "512",
                                      "--pooling", "mean"])
    assert result.exit_code == 0, result.output
    assert "embedding model (mean pooling)" in result.output
    from gguf import GGUFReader

    assert int(GGUFReader(out).fields["llama.pooling_type"].contents()) == 1  # LLAMA_POOLING_TYPE_MEAN
    assert file_entry("embed", out)["embedding_only"] is True
    plain = tmp_path / "plain.gguf"
    assert CliRunner().invoke(cli, ["gguf", "make", str(plain), "--layers", "1", "--vocab", "512"]).exit_code == 0
    assert file_entry("plain", plain)["embedding_only"] is False
    bad = CliRunner().invoke(cli, ["gguf", "make", str(tmp_path / "x.gguf"), "--pooling", "max"])
    assert bad.exit_code == 2 and "--pooling" in bad.output


def test_presets_cover_mha_and_gqa_and_all_check() -> None:
    attentions = {preset.shape.attention for preset in PRESETS.values()}
    assert attentions == {"MHA", "GQA"}
    for preset in PRESETS.values():
        preset.shape.check()


def test_bad_shapes_are_one_line_usage_errors() -> None:
    with pytest.raises(UsageError, match="multiple of KV heads"):
        resolve_shape(None, head_count=6, head_count_kv=4)
    with pytest.raises(UsageError, match="--preset"):
        resolve_shape("gpt5")
    result = CliRunner().invoke(cli, ["gguf", "make", "/tmp/never.gguf", "--head-dim", "7"])
    assert result.exit_code == 2 and "RoPE" in result.output


def test_corpus_is_read_from_files_every_python_has() -> None:
    corpus = default_corpus()
    assert len(corpus.texts) >= 10 and any("argparse" in s for s in corpus.sources)
    assert Corpus(("a",), ("x",)).sha256 == Corpus(("a",), ("y",)).sha256
