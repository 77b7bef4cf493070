"""The published llama.cpp measurements (speed_measurements.yaml) recomputed by the speed model.

`bench sim --speed-table` prints it; tests/sim/test_speed_model.py checks it. Simulated figures are
what the simulated backend would take for the same work on the profile: tgN = N decode steps
from an empty context, one sequence, f16 KV; ppN = one N-token prefill in 512-token batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from bench.sim import roofline
from bench.sim.catalog import Catalog, ModelSpec
from bench.inputs.yaml12 import load_yaml

F16_BYTES = 2.0
DECODE_TOLERANCE = 0.15
PREFILL_TOLERANCE = 0.25


@dataclass(frozen=True)
class SpeedRow:
    """One published row beside what the profile simulates for it."""

    gpu: str
    model: str
    test: str  # tg128, pp512, ...
    source: str
    build: str | None
    role: str  # fit | check | context
    published_tokens_per_s: float
    simulated_tokens_per_s: float

    @property
    def ratio(self) -> float:
        return self.simulated_tokens_per_s / self.published_tokens_per_s

    @property
    def decode(self) -> bool:
        return self.test.startswith("tg")

    @property
    def tolerance(self) -> float:
        return DECODE_TOLERANCE if self.decode else PREFILL_TOLERANCE


def measurements() -> dict[str, Any]:
    """speed_measurements.yaml as shipped."""
    text = resources.files("bench.sim").joinpath("speed_measurements.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = load_yaml(text)
    return document


def bench_model(name: str, entry: dict[str, Any]) -> ModelSpec:
    """A llama-bench model as the catalog describes models."""
    return ModelSpec(
        name=f"{name}:bench", architecture="llama", family="llama", quantization=name.rsplit("-", 1)[-1].upper(),
        size_bytes=int(float(entry["size_gib"]) * 2**30), parameter_count=int(float(entry["parameters"])),
        block_count=int(entry["block_count"]), embedding_length=int(entry["embedding_length"]),
        head_count=int(entry["head_count"]), head_count_kv=int(entry["head_count_kv"]), context_length=4096,
    )


def simulated_tokens_per_s(model: ModelSpec, catalog: Catalog, gpu_name: str, test: str) -> float:
    """What the speed model gives for one llama-bench test (tgN or ppN) on a profile."""
    gpu = catalog.gpus[gpu_name]
    tokens = int(test[2:])
    if test.startswith("tg"):
        total_s = sum(roofline.decode_step_s(model, gpu, 1.0, 1, context, F16_BYTES) for context in range(tokens))
    elif test.startswith("pp"):
        total_s = roofline.prefill_s(model, gpu, 1.0, tokens, roofline.NUM_BATCH)
    else:
        raise ValueError(f"unknown llama-bench test {test!r}")
    return tokens / total_s


def speed_rows(catalog: Catalog) -> list[SpeedRow]:
    """Every published row, recomputed from the catalog's profiles."""
    document = measurements()
    models = {name: bench_model(name, entry) for name, entry in document["models"].items()}
    return [
        SpeedRow(
            gpu=case["gpu"], model=case["model"], test=case["test"], source=case["source"],
            build=case.get("build"), role=case["role"], published_tokens_per_s=float(case["tokens_per_s"]),
            simulated_tokens_per_s=simulated_tokens_per_s(models[case["model"]], catalog, case["gpu"], case["test"]),
        )
        for case in document["cases"]
    ]


def markdown_table(rows: list[SpeedRow]) -> str:
    """The README's table: GPU, model, test, published, simulated, ratio, role, source."""
    lines = ["| GPU | model | test | published tok/s | simulated | ratio | role | source (build) |",
             "|---|---|---|---:|---:|---:|---|---|"]
    for row in rows:
        build = f" ({row.build})" if row.build else ""
        lines.append(f"| {row.gpu} | {row.model} | {row.test} | {row.published_tokens_per_s:,.1f} | "
                     f"{row.simulated_tokens_per_s:,.1f} | {row.ratio:.2f} | {row.role} | {row.source}{build} |")
    return "\n".join(lines)
