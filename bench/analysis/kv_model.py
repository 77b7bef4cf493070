"""A model's attention shape: from /api/show's model_info or a local GGUF file's metadata.

Pure, except `read_gguf` (reads a local file).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import TargetError, UsageError


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
            items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
            if not items:
                return None
            return _shape_number(items, f"{source}: {arch}.{key}", minimum=1 if required else 0)

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
        if parameter_count is not None:
            parameter_count = _shape_number([parameter_count], f"{source}: general.parameter_count", minimum=0)
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


_MAX_SHAPE_NUMBER = 2**48  # past any layer count, width or vocabulary; a file or server error


def _shape_number(items: list[Any], where: str, minimum: int) -> int:
    """The largest of `items` as a whole number from minimum to 2^48; TargetError otherwise
    (a head_count of 0 from a GGUF or /api/show divided by zero: exit 70)."""
    for item in items:
        if not (type(item) is int or (type(item) is float and item.is_integer())):
            raise TargetError(f"{where}: {str(item)[:40]!r} is not a whole number")
    number = int(max(items))
    if not minimum <= number <= _MAX_SHAPE_NUMBER:
        raise TargetError(f"{where} is {number}: a model shape needs {minimum} to 2^48")
    return number


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

    from bench.analysis.gguf_header import check_gguf_header

    gguf_path = Path(path)
    check_gguf_header(gguf_path)  # before gguf's reader, which trusts every length it reads
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
