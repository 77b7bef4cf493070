"""`bench gguf make` / `bench gguf presets`: write small random-weight GGUF models for the real engine."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.console import output_console


@click.group("gguf")
def gguf() -> None:
    """Make small GGUF models (random weights, real BPE tokenizer) for llama-server."""


@gguf.command("make")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--preset", default=None, help="Shape preset (see `bench gguf presets`; default tiny-llama3.2-1b).")
@click.option("--layers", type=click.IntRange(1, 256), default=None, help="Transformer blocks.")
@click.option("--hidden", type=click.IntRange(8, 16384), default=None, help="Embedding length (one dimension is reserved).")
@click.option("--heads", type=click.IntRange(1, 512), default=None, help="Query heads.")
@click.option("--kv-heads", type=click.IntRange(1, 512), default=None, help="KV heads (= heads: MHA; fewer: GQA).")
@click.option("--head-dim", type=click.IntRange(2, 1024), default=None, help="Dimension per head (key_length = value_length).")
@click.option("--ffn", type=click.IntRange(1, 65536), default=None, help="Feed-forward length.")
@click.option("--ctx", type=click.IntRange(16, 1 << 20), default=None, help="Training context (llama.context_length).")
@click.option("--vocab", type=click.IntRange(300, 65536), default=None, help="Vocabulary size, specials included.")
@click.option("--type", "weight_type", type=click.Choice(["f32", "f16"]), default=None, help="Weight type of the matrices.")
@click.option("--pooling", type=click.Choice(["mean", "cls", "last"]), default=None,
              help="Make an embedding model: write llama.pooling_type (served on /api/embed, /v1/embeddings only).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Seed of the random weights.")
@click.option("--name", default=None, help="general.name (default: the file's stem).")
def make(out: Path, preset: str | None, layers: int | None, hidden: int | None, heads: int | None,
         kv_heads: int | None, head_dim: int | None, ffn: int | None, ctx: int | None, vocab: int | None,
         weight_type: str | None, pooling: str | None, seed: int, name: str | None) -> None:
    """Write OUT.gguf: a llama-architecture model that always generates exactly max_tokens tokens."""
    from bench.records.atomic import begins_with, check_output_file
    from bench.engine.gguf_maker import DESCRIPTION_START, make_model

    # Its own earlier model is replaced; any other file (a real model, a user's file) is refused.
    own = begins_with(b"GGUF.{0,3900}" + DESCRIPTION_START.encode(), "a model bench gguf make wrote")
    check_output_file(out, "gguf make", own_output=own)
    from bench.engine.shapes import resolve_shape

    shape = resolve_shape(
        preset, block_count=layers, embedding_length=hidden, head_count=heads, head_count_kv=kv_heads,
        head_dim=head_dim, feed_forward_length=ffn, context_length=ctx, vocab_size=vocab,
        weight_type=weight_type, pooling=pooling,
    )
    made = make_model(out, shape, name or out.stem, seed=seed)
    output_console().print(
        f"wrote {made.path} ({made.size_bytes / 2**20:.1f} MiB): {shape.block_count} layers, hidden "
        f"{shape.embedding_length}, {shape.head_count} heads / {shape.head_count_kv} KV heads "
        f"({shape.attention}), head_dim {shape.head_dim}, ffn {shape.feed_forward_length}, ctx "
        f"{shape.context_length}, {shape.weight_type}; vocab {made.vocab_size} "
        f"({made.banned_tokens} never sampled); KV f16 {shape.kv_bytes_per_token_f16()} bytes/token"
        + (f"; embedding model ({shape.pooling} pooling)" if shape.pooling else ""),
        highlight=False, markup=False, soft_wrap=True,
    )


@gguf.command("presets")
def presets() -> None:
    """List the shape presets and the catalog models they are scaled from."""
    from bench.engine.shapes import PRESETS

    for preset in PRESETS.values():
        shape = preset.shape
        output_console().print(
            f"{preset.name:20} {shape.block_count:2d} L  hidden {shape.embedding_length:4d}  "
            f"{shape.head_count:2d} h / {shape.head_count_kv} kv  head_dim {shape.head_dim:3d}  ffn "
            f"{shape.feed_forward_length:4d}  ctx {shape.context_length:6d}  KV {shape.kv_bytes_per_token_f16():6d} B/token"
            f"  {'embed ' + shape.pooling if shape.pooling else 'generate':10}  — {preset.shaped_like}",
            highlight=False, markup=False, soft_wrap=True,
        )


def register(group: click.Group) -> None:
    group.add_command(gguf)
