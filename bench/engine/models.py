"""Model names → GGUF files for the engine, and their catalog entries for the sim's Ollama front.

Two sources: files the user names (`--model-file NAME=PATH`, any llama.cpp GGUF), and the
`bench gguf make` presets, served by name (`tiny-llama3.2-1b`, ...) and made on first use into a
cache directory ($BENCH_CACHE_DIR, else $XDG_CACHE_HOME/bench, else ~/.cache/bench), so a scenario
that names a preset runs on a fresh machine with nothing but the engine installed.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any

from bench.engine.shapes import PRESETS, ModelShape
from bench.errors import UsageError

# Bumped whenever the maker's output changes, so cached presets are remade.
MAKER_VERSION = 1
_make_lock = threading.Lock()


def cache_dir() -> Path:
    explicit = os.environ.get("BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bench"


def ollama_name(name: str) -> str:
    """Ollama's default tag: "tiny" → "tiny:latest"."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def parse_model_files(pairs: tuple[str, ...] | list[str]) -> dict[str, Path]:
    """`--model-file NAME=PATH` values → {NAME:tag: PATH}; UsageError naming a bad pair or a missing file."""
    files: dict[str, Path] = {}
    for pair in pairs:
        name, separator, raw_path = pair.partition("=")
        if not separator or not name.strip() or not raw_path.strip():
            raise UsageError(f"--model-file {pair!r}: expected NAME=PATH, e.g. tiny=./tiny.gguf")
        path = Path(raw_path).expanduser()
        if not path.is_file():
            raise UsageError(f"--model-file {pair!r}: {path} is not a file")
        files[ollama_name(name.strip())] = Path(os.path.abspath(path))
    return files


def preset_for(name: str) -> str | None:
    """The preset a model name refers to ("tiny-mha" or "tiny-mha:latest"), if any."""
    bare = name.removesuffix(":latest")
    return bare if bare in PRESETS else None


def preset_path(preset: str) -> Path:
    """The cached GGUF of a preset, made on first use (seed 0); safe to call from several threads."""
    from bench.engine.gguf_maker import make_model
    from bench.engine.tokenizer import default_corpus

    corpus = default_corpus()
    path = cache_dir() / "gguf" / f"{preset}-v{MAKER_VERSION}-{corpus.sha256[:12]}.gguf"
    with _make_lock:
        if not path.is_file():
            # One partial file per process: two processes (pytest-xdist workers, two bench runs)
            # making the same preset each write their own, and the last atomic replace wins.
            partial = path.with_suffix(f".{os.getpid()}.partial")
            make_model(partial, PRESETS[preset].shape, preset, seed=0, corpus=corpus)
            partial.replace(path)  # atomic: a half-written model is never served
    return path


def shape_weight_bytes(shape: ModelShape) -> int:
    """Tensor bytes of a preset's GGUF (matrices at the weight type, norm vectors f32)."""
    hidden, vocab = shape.embedding_length, shape.vocab_size
    q_dim, kv_dim = shape.head_count * shape.head_dim, shape.head_count_kv * shape.head_dim
    per_layer = hidden * (q_dim + 2 * kv_dim) + q_dim * hidden + 3 * hidden * shape.feed_forward_length
    matrices = 2 * vocab * hidden + shape.block_count * per_layer
    vectors = hidden * (1 + 2 * shape.block_count)
    return matrices * (2 if shape.weight_type == "f16" else 4) + vectors * 4


def _entry(name: str, shape: ModelShape, size_bytes: int, parameter_count: int, quantization: str) -> dict[str, Any]:
    return {
        "name": ollama_name(name), "architecture": "llama", "family": "llama", "quantization": quantization,
        "size_bytes": size_bytes, "parameter_count": parameter_count, "block_count": shape.block_count,
        "embedding_length": shape.embedding_length, "head_count": shape.head_count,
        "head_count_kv": shape.head_count_kv, "context_length": shape.context_length,
        "feed_forward_length": shape.feed_forward_length, "key_length": shape.head_dim,
        "value_length": shape.head_dim, "vocab_size": shape.vocab_size, "embedding_only": shape.embedding_only,
        "chat_template": "" if shape.embedding_only else "chatml",
    }  # fmt: skip


def preset_entries() -> list[dict[str, Any]]:
    """Catalog entries (ModelSpec fields) for every preset, without making any file."""
    entries = []
    for preset in PRESETS.values():
        shape = preset.shape
        size = shape_weight_bytes(shape)
        parameters = size // (2 if shape.weight_type == "f16" else 4)
        entry = _entry(preset.name, shape, size, parameters, shape.weight_type.upper())
        entries.append({**entry, "never_stops": not shape.embedding_only})  # the maker bans EOS
    return entries


_FILE_TYPES = {0: "F32", 1: "F16", 7: "Q8_0", 2: "Q4_0", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"}


def file_entry(name: str, path: Path) -> dict[str, Any]:
    """A catalog entry from a GGUF file's own metadata; UsageError when it is not a usable GGUF."""
    reader = _open_gguf(path)
    arch_name, numbers = _gguf_numbers(reader, path)
    file_type_field = reader.fields.get("general.file_type")
    file_type = int(file_type_field.contents()) if file_type_field is not None else -1
    shape = ModelShape(
        block_count=numbers["block_count"], embedding_length=numbers["embedding_length"],
        head_count=numbers["attention.head_count"], head_count_kv=numbers["attention.head_count_kv"],
        head_dim=numbers["attention.key_length"], feed_forward_length=0,
        context_length=numbers["context_length"] or 2048, vocab_size=numbers["vocab_size"] or 32000,
    )
    entry = _entry(name, shape, path.stat().st_size, numbers["parameter_count"] or 0,
                   _FILE_TYPES.get(file_type, "unknown"))
    # Ollama: a `{arch}.pooling_type` key makes an embedding model (server/images.go Capabilities).
    entry.update(architecture=arch_name, family=arch_name, value_length=numbers["attention.value_length"],
                 embedding_only=f"{arch_name}.pooling_type" in reader.fields)
    # Ollama's Go TEMPLATE for an imported GGUF follows its Jinja template; ChatML is the one we render.
    template_field = reader.fields.get("tokenizer.chat_template")
    jinja = str(template_field.contents()) if template_field is not None else ""
    entry["chat_template"] = "chatml" if "<|im_start|>" in jinja and not entry["embedding_only"] else ""
    ffn = reader.fields.get(f"{arch_name}.feed_forward_length")
    if ffn is not None:
        raw = ffn.contents()
        entry["feed_forward_length"] = int(max(raw) if isinstance(raw, list) else raw)
    return entry


# The GGUF keys a catalog entry needs, read by the server side itself: the simulator and the engine
# share no code with the client side (bench kv reads GGUFs with bench.analysis.kv_model), as
# Ollama reads a model with its own ggml reader.
_REQUIRED_KEYS = ("block_count", "embedding_length", "attention.head_count")
_OPTIONAL_KEYS = ("attention.head_count_kv", "attention.key_length", "attention.value_length",
                  "context_length", "vocab_size")


def _open_gguf(path: Path) -> Any:
    from gguf import GGUFReader  # imported here: slow to import, and only file entries need it

    try:
        return GGUFReader(path)
    except (OSError, ValueError, IndexError, KeyError, TypeError, OverflowError, MemoryError,
            struct.error, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: not a readable GGUF file (truncated or corrupt: "
                         f"{type(error).__name__}: {error})") from None


def _gguf_numbers(reader: Any, path: Path) -> tuple[str, dict[str, int | None]]:
    """The architecture's name and its sizes; GQA fields default as llama.cpp defaults them."""
    arch_field = reader.fields.get("general.architecture")
    if arch_field is None:
        raise UsageError(f"{path}: no general.architecture in GGUF metadata")
    arch = str(arch_field.contents())

    def number(key: str) -> int | None:
        field = reader.fields.get(key)
        if field is None:
            return None
        raw = field.contents()
        return int(max(raw)) if isinstance(raw, (list, tuple)) else int(raw)

    numbers = {key: number(f"{arch}.{key}") for key in _REQUIRED_KEYS + _OPTIONAL_KEYS}
    missing = [key for key in _REQUIRED_KEYS if numbers[key] is None]
    if missing:
        raise UsageError(f"{path}: GGUF metadata lacks {arch}.{missing[0]}")
    heads, hidden = numbers["attention.head_count"], numbers["embedding_length"]
    assert heads is not None and hidden is not None
    numbers["attention.head_count_kv"] = numbers["attention.head_count_kv"] or heads
    numbers["attention.key_length"] = numbers["attention.key_length"] or hidden // heads
    numbers["attention.value_length"] = numbers["attention.value_length"] or hidden // heads
    if numbers["vocab_size"] is None and "tokenizer.ggml.tokens" in reader.fields:
        numbers["vocab_size"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    numbers["parameter_count"] = number("general.parameter_count")
    return arch, numbers
