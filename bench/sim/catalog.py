"""The simulated model catalog and GPU profiles, read from catalog.yaml (plus --catalog FILE)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.inputs.yaml12 import load_yaml

from bench.sim.durations import parse_bytes
from bench.sim.config_errors import SimConfigError


@dataclass(frozen=True)
class ModelSpec:
    """One model's GGUF metadata (as `ollama show` reports it) and blob size."""

    name: str
    architecture: str
    family: str
    quantization: str
    size_bytes: int
    parameter_count: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    context_length: int
    feed_forward_length: int = 0
    key_length: int = 0  # 0: head_dim = embedding_length / head_count, as in Ollama
    value_length: int = 0
    vocab_size: int = 32000
    embedding_only: bool = False
    # How Ollama's Go TEMPLATE renders a chat: "" the simulator's own markers (bench/sim/tokens.py),
    # "chatml" ChatML (the models `bench gguf make` writes, whose Jinja template is ChatML too).
    chat_template: str = ""
    # `bench gguf make` models never sample end-of-sequence: they stop only at n_predict (with no
    # bound at all, num_predict 0, a real llama-server generates until the client leaves).
    never_stops: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def head_dim_k(self) -> int:
        return self.key_length or self.embedding_length // self.head_count

    @property
    def head_dim_v(self) -> int:
        return self.value_length or self.embedding_length // self.head_count

    @property
    def digest(self) -> str:
        # Not the registry digest: a stable sha256 of the name so clients see a well-formed value.
        return hashlib.sha256(self.name.encode()).hexdigest()

    def model_info(self) -> dict[str, Any]:
        """The GGUF keys /api/show reports in `model_info` (also what `bench kv` reads offline)."""
        arch = self.architecture
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.parameter_count": self.parameter_count,
            "general.quantization_version": 2,
            f"{arch}.block_count": self.block_count,
            f"{arch}.context_length": self.context_length,
            f"{arch}.embedding_length": self.embedding_length,
            f"{arch}.feed_forward_length": self.feed_forward_length,
            f"{arch}.attention.head_count": self.head_count,
            f"{arch}.attention.head_count_kv": self.head_count_kv,
            f"{arch}.vocab_size": self.vocab_size,
        }
        if self.key_length:
            info[f"{arch}.attention.key_length"] = self.key_length
        if self.value_length:
            info[f"{arch}.attention.value_length"] = self.value_length
        return info

    @property
    def parameter_size(self) -> str:
        """Ollama's human parameter size: "8.0B", "494.03M"."""
        if self.parameter_count >= 1_000_000_000:
            return f"{self.parameter_count / 1e9:.1f}B"
        return f"{self.parameter_count / 1e6:.2f}M"


@dataclass(frozen=True)
class GpuProfile:
    """A device as llama.cpp was measured to run on it (catalog.yaml says where each figure comes from).

    decode_bandwidth: bytes/s llama.cpp's decode kernels reach reading weights and KV (not the spec
    sheet's peak); step_overhead_s: fixed time per decode step on the device; prefill_flops: the
    FLOP/s its prompt processing reaches (2 x parameters per token). cpu_decode_flops: the FLOP/s
    decode's per-sequence work reaches on the CPU (llama.cpp's matrix-vector kernels, far below
    prefill's matrix products there); when set, a CPU decode step is that work for each sequence
    plus a read of weights and KV at cpu_bandwidth that the batch shares, added, not overlapped
    (None: the roofline's max of the two at cpu_flops). speed_basis: where these come from and how far to
    trust them, shown with every sizing answer made on this profile.
    """

    name: str
    label: str
    memory_bytes: int
    decode_bandwidth_bytes_per_s: float
    step_overhead_s: float
    prefill_flops: float
    cpu_bandwidth_bytes_per_s: float
    cpu_flops: float
    host_memory_bytes: int = 64 * 2**30  # system RAM of the machine (KV of layers left on the CPU)
    speed_basis: str = "unstated"
    cpu_decode_flops: float | None = None


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    gpus: dict[str, GpuProfile] = field(default_factory=dict)

    def resolve(self, requested: str) -> ModelSpec | None:
        """Find a model by name, alias, or name without tag (":latest" implied, as in Ollama)."""
        name = requested.strip()
        if ":" not in name.rsplit("/", 1)[-1]:
            name = f"{name}:latest"
        for candidate in (name, name.removeprefix("library/"), name.removeprefix("registry.ollama.ai/library/")):
            spec = self.models.get(candidate)
            if spec is not None:
                return spec
            for model in self.models.values():
                if candidate in model.aliases:
                    return model
        return None


_MODEL_FIELDS = {f.name for f in fields(ModelSpec)}
# Sizes every simulated step divides by or multiplies with: 0 would divide by zero (head_dim) or
# serve every request a 500, so they are refused where the catalog is read.
_POSITIVE_MODEL_INTS = ("size_bytes", "parameter_count", "block_count", "embedding_length", "head_count",
                        "head_count_kv", "context_length", "vocab_size")
_COUNT_MODEL_INTS = ("feed_forward_length", "key_length", "value_length")


def _check_model(model: ModelSpec, origin: str) -> ModelSpec:
    where = f"{origin}: model {model.name!r}"
    for name in (*_POSITIVE_MODEL_INTS, *_COUNT_MODEL_INTS):
        value = getattr(model, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SimConfigError(f"{where}: {name} must be a whole number, got {value!r}")
        if value < (1 if name in _POSITIVE_MODEL_INTS else 0):
            raise SimConfigError(f"{where}: {name} must be {'> 0' if name in _POSITIVE_MODEL_INTS else '>= 0'}, "
                                 f"got {value}")
    for name in ("name", "architecture", "family", "quantization", "chat_template"):
        if not isinstance(getattr(model, name), str):
            raise SimConfigError(f"{where}: {name} must be text, got {getattr(model, name)!r}")
    if model.head_count_kv > model.head_count:
        raise SimConfigError(f"{where}: head_count_kv {model.head_count_kv} exceeds head_count {model.head_count}")
    return model


def _model_from(entry: dict[str, Any], origin: str) -> ModelSpec:
    unknown = set(entry) - _MODEL_FIELDS
    if unknown:
        raise SimConfigError(f"{origin}: model {entry.get('name')!r}: unknown field(s) {sorted(unknown)}")
    try:
        values = dict(entry)
        values["aliases"] = tuple(values.get("aliases", ()))
        if not isinstance(values.get("name"), str) or not values["name"].strip():
            raise SimConfigError(f"{origin}: model {values.get('name')!r}: name must be text")
        if ":" not in values["name"]:
            values["name"] = f"{values['name']}:latest"
        return _check_model(ModelSpec(**values), origin)
    except (TypeError, KeyError) as error:
        raise SimConfigError(f"{origin}: model {entry.get('name')!r}: {error}") from None


_GPU_FIELDS = {"name", "label", "memory", "decode_bandwidth", "step_overhead_s", "prefill_flops", "cpu_bandwidth",
               "cpu_flops", "cpu_decode_flops", "host_memory", "speed_basis"}


def _positive(entry: dict[str, Any], key: str, origin: str, default: float | None = None) -> float:
    value = float(entry[key] if default is None else entry.get(key, default))
    if not (value > 0 and math.isfinite(value)):
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: {key} must be > 0, got {entry[key]!r}")
    return value


def _non_negative(entry: dict[str, Any], key: str, origin: str) -> float:
    value = float(entry.get(key, 0.0))
    if not (value >= 0 and math.isfinite(value)):
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: {key} must be >= 0, got {entry[key]!r}")
    return value


def _entries(document: dict[str, Any], key: str, origin: str) -> list[dict[str, Any]]:
    """`models:` / `gpus:` as a list of mappings, else one line saying what it is instead."""
    entries = document.get(key) or []
    if not isinstance(entries, list):
        raise SimConfigError(f"{origin}: {key}: expected a list of mappings, got {type(entries).__name__}")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SimConfigError(f"{origin}: {key}[{index}]: expected a mapping, got {type(entry).__name__}")
    return entries


def _gpu_from(entry: dict[str, Any], origin: str) -> GpuProfile:
    unknown = set(entry) - _GPU_FIELDS
    if unknown:
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: unknown field(s) {sorted(unknown)} "
                             f"(a profile has {', '.join(sorted(_GPU_FIELDS))})")
    try:
        name = str(entry["name"])
        memory_bytes = parse_bytes(str(entry["memory"]), f"{origin}: gpu {name} memory")
        if memory_bytes <= 0:
            raise SimConfigError(f"{origin}: gpu {name!r}: memory must be > 0, got {entry['memory']!r}")
        return GpuProfile(
            name=name,
            label=str(entry.get("label", name)),
            memory_bytes=memory_bytes,
            decode_bandwidth_bytes_per_s=_positive(entry, "decode_bandwidth", origin),
            step_overhead_s=_non_negative(entry, "step_overhead_s", origin),
            prefill_flops=_positive(entry, "prefill_flops", origin),
            cpu_bandwidth_bytes_per_s=_positive(entry, "cpu_bandwidth", origin, 30e9),
            cpu_flops=_positive(entry, "cpu_flops", origin, 1e12),
            host_memory_bytes=parse_bytes(str(entry.get("host_memory", "64GiB")), f"{origin}: gpu {name} host_memory"),
            speed_basis=str(entry.get("speed_basis", f"from {origin}")),
            cpu_decode_flops=_positive(entry, "cpu_decode_flops", origin) if "cpu_decode_flops" in entry else None,
        )
    except (KeyError, ValueError, TypeError) as error:
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: bad or missing field {error}") from None


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        document = load_yaml(text) or {}
    except yaml.YAMLError as error:
        raise SimConfigError(f"{origin}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise SimConfigError(f"{origin}: expected a mapping with 'models' and/or 'gpus'")
    return document


def _merge(catalog: Catalog, document: dict[str, Any], origin: str) -> Catalog:
    base = Catalog() if document.get("replace") else catalog
    models = dict(base.models)
    gpus = dict(base.gpus)
    for entry in _entries(document, "models", origin):
        model = _model_from(entry, origin)
        models[model.name] = model
    for entry in _entries(document, "gpus", origin):
        gpu = _gpu_from(entry, origin)
        gpus[gpu.name] = gpu
    return Catalog(models=models, gpus=gpus)


def read_catalog_text(path: Path) -> str:
    """A --catalog file's text: a regular file, bounded (bench.inputs), never a blocking FIFO."""
    from bench.inputs import MAX_SCENARIO_BYTES, read_input_text

    return read_input_text(path, MAX_SCENARIO_BYTES, SimConfigError, "catalog file")


def load_catalog(extra_path: str | Path | None = None) -> Catalog:
    """The shipped catalog, extended (or replaced, with `replace: true`) by an optional file."""
    shipped = resources.files("bench.sim").joinpath("catalog.yaml").read_text(encoding="utf-8")
    catalog = _merge(Catalog(), _read_yaml(shipped, "catalog.yaml"), "catalog.yaml")
    if extra_path is not None:
        path = Path(extra_path)
        try:
            text = read_catalog_text(path)
        except SimConfigError as error:
            raise SimConfigError(f"--catalog {error}") from None
        catalog = _merge(catalog, _read_yaml(text, str(path)), str(path))
    return catalog
