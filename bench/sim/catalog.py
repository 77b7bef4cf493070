"""The simulated model catalog and GPU profiles, read from catalog.yaml (plus --catalog FILE)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bench.sim.durations import parse_bytes
from bench.sim.errors import SimConfigError


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
    FLOP/s its prompt processing reaches (2 x parameters per token). speed_basis: where these come
    from and how far to trust them, shown with every sizing answer made on this profile.
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


def _model_from(entry: dict[str, Any], origin: str) -> ModelSpec:
    unknown = set(entry) - _MODEL_FIELDS
    if unknown:
        raise SimConfigError(f"{origin}: model {entry.get('name')!r}: unknown field(s) {sorted(unknown)}")
    try:
        values = dict(entry)
        values["aliases"] = tuple(values.get("aliases", ()))
        if ":" not in str(values["name"]):
            values["name"] = f"{values['name']}:latest"
        return ModelSpec(**values)
    except (TypeError, KeyError) as error:
        raise SimConfigError(f"{origin}: model {entry.get('name')!r}: {error}") from None


_GPU_FIELDS = {"name", "label", "memory", "decode_bandwidth", "step_overhead_s", "prefill_flops", "cpu_bandwidth",
               "cpu_flops", "host_memory", "speed_basis"}


def _positive(entry: dict[str, Any], key: str, origin: str) -> float:
    value = float(entry[key])
    if not value > 0:
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: {key} must be > 0, got {entry[key]!r}")
    return value


def _gpu_from(entry: dict[str, Any], origin: str) -> GpuProfile:
    unknown = set(entry) - _GPU_FIELDS
    if unknown:
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: unknown field(s) {sorted(unknown)} "
                             f"(a profile has {', '.join(sorted(_GPU_FIELDS))})")
    try:
        name = str(entry["name"])
        return GpuProfile(
            name=name,
            label=str(entry.get("label", name)),
            memory_bytes=parse_bytes(str(entry["memory"]), f"{origin}: gpu {name} memory"),
            decode_bandwidth_bytes_per_s=_positive(entry, "decode_bandwidth", origin),
            step_overhead_s=float(entry.get("step_overhead_s", 0.0)),
            prefill_flops=_positive(entry, "prefill_flops", origin),
            cpu_bandwidth_bytes_per_s=float(entry.get("cpu_bandwidth", 30e9)),
            cpu_flops=float(entry.get("cpu_flops", 1e12)),
            host_memory_bytes=parse_bytes(str(entry.get("host_memory", "64GiB")), f"{origin}: gpu {name} host_memory"),
            speed_basis=str(entry.get("speed_basis", f"from {origin}")),
        )
    except (KeyError, ValueError, TypeError) as error:
        raise SimConfigError(f"{origin}: gpu {entry.get('name')!r}: bad or missing field {error}") from None


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise SimConfigError(f"{origin}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise SimConfigError(f"{origin}: expected a mapping with 'models' and/or 'gpus'")
    return document


def _merge(catalog: Catalog, document: dict[str, Any], origin: str) -> Catalog:
    base = Catalog() if document.get("replace") else catalog
    models = dict(base.models)
    gpus = dict(base.gpus)
    for entry in document.get("models") or []:
        model = _model_from(entry, origin)
        models[model.name] = model
    for entry in document.get("gpus") or []:
        gpu = _gpu_from(entry, origin)
        gpus[gpu.name] = gpu
    return Catalog(models=models, gpus=gpus)


def load_catalog(extra_path: str | Path | None = None) -> Catalog:
    """The shipped catalog, extended (or replaced, with `replace: true`) by an optional file."""
    shipped = resources.files("bench.sim").joinpath("catalog.yaml").read_text(encoding="utf-8")
    catalog = _merge(Catalog(), _read_yaml(shipped, "catalog.yaml"), "catalog.yaml")
    if extra_path is not None:
        path = Path(extra_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise SimConfigError(f"--catalog {path}: {error.strerror}") from None
        except UnicodeDecodeError as error:
            raise SimConfigError(f"--catalog {path}: not UTF-8 text (byte {error.start})") from None
        catalog = _merge(catalog, _read_yaml(text, str(path)), str(path))
    return catalog
