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
    """A GPU's public figures; efficiencies live in the perf model."""

    name: str
    label: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    flops: float
    cpu_bandwidth_bytes_per_s: float
    cpu_flops: float
    host_memory_bytes: int = 64 * 2**30  # system RAM of the machine (KV of layers left on the CPU)


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


def _gpu_from(entry: dict[str, Any], origin: str) -> GpuProfile:
    try:
        return GpuProfile(
            name=str(entry["name"]),
            label=str(entry.get("label", entry["name"])),
            memory_bytes=parse_bytes(str(entry["memory"]), f"{origin}: gpu {entry['name']} memory"),
            bandwidth_bytes_per_s=float(entry["bandwidth"]),
            flops=float(entry["flops"]),
            cpu_bandwidth_bytes_per_s=float(entry.get("cpu_bandwidth", 50e9)),
            cpu_flops=float(entry.get("cpu_flops", 1e12)),
            host_memory_bytes=parse_bytes(str(entry.get("host_memory", "64GiB")), f"{origin}: gpu {entry['name']} host_memory"),
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
