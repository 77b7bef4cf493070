"""A simulator GPU profile measured from one run: the server's own prefill and decode rates at
concurrency 1 (`bench sim --calibrate RUN_DIR`, scenario `sim: calibrate:`).

The run's server reports, per request, prompt_eval_count / prompt_eval_duration (prefill) and
eval_count / eval_duration (decode). Read through the simulator's speed model (bench/sim/roofline.py)
they give the machine's achieved prefill FLOP/s and its decode bandwidth, with the model's shape
from the run's /api/show. The fixed per-step time cannot be told apart from the bandwidth with one
model at one context, so it is folded into the bandwidth (step_overhead_s 0): exact for the
measured model, and on a GPU a batch's extra sequences only add their KV and compute. A run without
a GPU splits the measured step instead: CPU_DECODE_SHARED_FRACTION of it a read the batch shares,
the rest per-sequence work (cpu_decode_flops), so a batch of B costs (alpha + (1 - alpha) B) steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import RunDirError, TargetError
from bench.records import Run, load_run

F16_KV_BYTES = 2.0
# The share of a c=1 CPU decode step that a batch shares (the weight read); the rest is per sequence.
# Measured, not fitted to the calibration runs: `llama-batched-bench -m tiny-llama3.2-1b.gguf -c 8192
# -b 1024 -ub 1024 -npp 512 -ntg 64 -npl 1,2,4,8 -t 1 -fa on|off` (llama.cpp b10488, this project's
# 2-core Xeon, quiet: load ~1, 2026-12-08 00:33 UTC). TG step, B=1 -> B=8: fa on 4.14 -> 26.31 ms
# (242 -> 304 tok/s aggregate), fa off 1.77 -> 11.27 ms (567 -> 711): shared + B x per-sequence through
# the two ends is 0.97 + 3.17 B ms and 0.41 + 1.36 B ms, alpha 0.235 and 0.231. B=2 and 4 gain less
# than the line says (their own alpha 0.00-0.11: steps 10-14% longer than the line).
CPU_DECODE_SHARED_FRACTION = 0.23
PROFILE_NAME = "calibrated"
# Bits per weight of Ollama's quantization levels, for a model the simulator's catalog lacks
# (weights = parameters x bits / 8; llama.cpp's block formats, scales included).
BITS_PER_WEIGHT = {"Q4_0": 4.5, "Q4_1": 5.0, "Q4_K_S": 4.58, "Q4_K_M": 4.85, "Q5_K_M": 5.69, "Q6_K": 6.56,
                   "Q8_0": 8.5, "F16": 16.0, "BF16": 16.0, "F32": 32.0}


@dataclass(frozen=True)
class ModelShape:
    """What the speed model needs of the measured model."""

    name: str
    weights_bytes: int
    parameter_count: int
    kv_bytes_per_token: float


@dataclass(frozen=True)
class Calibration:
    """The measured rates and the profile they make."""

    run_id: str
    model: str
    requests: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    mean_context_tokens: float
    gpu_entry: dict[str, Any]  # a catalog.yaml `gpus:` entry

    def summary(self) -> str:
        entry = self.gpu_entry
        return (f"calibrated from run {self.run_id} ({self.model}, {self.requests} requests at concurrency 1): "
                f"prefill {self.prefill_tokens_per_s:,.0f} tok/s -> {entry['prefill_flops']:.3g} FLOP/s, "
                f"decode {self.decode_tokens_per_s:,.1f} tok/s at {self.mean_context_tokens:,.0f} tokens of context "
                f"-> {entry['decode_bandwidth']:.3g} B/s")


def concurrency_one_requests(run: Run) -> pd.DataFrame:
    """Measured, successful requests of the run's concurrency-1 cells that carry server timings."""
    requests = run.requests
    if requests.empty or "concurrency" not in run.cells:
        raise RunDirError(f"{run.path}: no cells with a concurrency to calibrate from")
    cell_ids = set(run.cells.loc[run.cells["concurrency"] == 1, "cell_id"])
    chosen = requests[requests["cell_id"].isin(cell_ids) & (requests["phase"] == "measure")
                      & requests["error_class"].isna()]
    needed = ["prompt_tokens", "output_tokens", "prompt_eval_duration_ns", "eval_duration_ns"]
    chosen = chosen.dropna(subset=needed)
    chosen = chosen[(chosen["prompt_eval_duration_ns"] > 0) & (chosen["eval_duration_ns"] > 0)
                    & (chosen["output_tokens"] > 1)]
    if chosen.empty:
        raise RunDirError(f"{run.path}: no successful concurrency-1 request with the server's prompt_eval and "
                          "eval durations (measure one cell at concurrency 1 against the server first)")
    models = sorted(set(chosen["model"]))
    if len(models) > 1:
        raise RunDirError(f"{run.path}: concurrency-1 requests of several models ({', '.join(models)}); "
                          "calibrate from a run of one model")
    return chosen


def calibrate(run: Run, shape: ModelShape, memory: str, token_overhead_s: float) -> Calibration:
    """The profile that makes the speed model reproduce the run's concurrency-1 rates."""
    chosen = concurrency_one_requests(run)
    cached = chosen["cached_prompt_tokens"].fillna(0) if "cached_prompt_tokens" in chosen else 0
    evaluated = (chosen["prompt_tokens"] - cached).clip(lower=1)
    # Ratios of sums, not medians of per-request rates: throughput is tokens over time, and on a
    # busy machine a few slow requests are part of what the server delivers (a median drops them:
    # real Ollama here, decode median 6.1 ms/token, mean 8.6).
    prefill_rate = float(evaluated.sum() / (chosen["prompt_eval_duration_ns"].sum() / 1e9))
    step_s = float(chosen["eval_duration_ns"].sum() / 1e9 / chosen["output_tokens"].sum())
    context = float((chosen["prompt_tokens"] + chosen["output_tokens"] / 2).median())
    prefill_flops = prefill_rate * 2.0 * shape.parameter_count
    bytes_per_step = shape.weights_bytes + context * shape.kv_bytes_per_token
    # eval_duration includes serving's per-token cost, which the simulator adds back on its own.
    decode_bandwidth = bytes_per_step / max(step_s - token_overhead_s, step_s * 0.5)
    run_id = run.manifest.run_id or run.path.name
    basis = f"calibrated from run {run_id} (concurrency 1, {shape.name}), exact for that model at c=1"
    entry: dict[str, Any] = {
        "name": PROFILE_NAME, "label": f"calibrated ({run_id})", "memory": memory,
        "decode_bandwidth": decode_bandwidth, "step_overhead_s": 0.0, "prefill_flops": prefill_flops,
        # A machine without GPU memory runs every layer on the CPU: same measured figures there.
        "cpu_bandwidth": decode_bandwidth, "cpu_flops": prefill_flops, "speed_basis": basis,
    }  # fmt: skip
    if memory == "0":
        # llama.cpp's CPU decode shares only part of a step across the batch (matrix-vector kernels
        # per sequence): split the measured step into a shared read and per-sequence work that add
        # up to it at c=1 (bench/sim/roofline.py decode_step_s).
        alpha = CPU_DECODE_SHARED_FRACTION
        step_one_s = bytes_per_step / decode_bandwidth
        entry["cpu_bandwidth"] = bytes_per_step / (alpha * step_one_s)
        entry["cpu_decode_flops"] = 2.0 * shape.parameter_count / ((1 - alpha) * step_one_s)
        entry["speed_basis"] = (basis + f"; CPU decode step split {alpha:.0%} shared by the batch, {1 - alpha:.0%} "
                                "per sequence (llama-batched-bench on a 2-core Xeon, 2026-12-08)")
    return Calibration(run_id=run_id, model=shape.name, requests=len(chosen), prefill_tokens_per_s=prefill_rate,
                       decode_tokens_per_s=1 / step_s, mean_context_tokens=context, gpu_entry=entry)


def gpu_memory_of(run: Run) -> str:
    """The run machine's GPU memory (NVML, first device) as a catalog size; "0" on a CPU-only machine."""
    devices = (run.manifest.gpu or {}).get("devices") or []
    total = devices[0].get("mem_total_bytes") if devices else None
    return str(int(total)) if total else "0"


def measured_model(run: Run) -> str:
    """The model the concurrency-1 requests used."""
    return str(concurrency_one_requests(run)["model"].iloc[0])


def shape_from_show(name: str, show: dict[str, Any]) -> ModelShape:
    """The model's shape from the run's /api/show (weights estimated from the quantization level)."""
    from bench.analysis.kv_model import ModelArch

    arch = ModelArch.from_model_info(show.get("model_info") or {}, f"manifest models[{name}]")
    if not arch.parameter_count:
        raise TargetError(f"manifest models[{name}]: model_info lacks general.parameter_count")
    level = str((show.get("details") or {}).get("quantization_level", "")).upper()
    if level not in BITS_PER_WEIGHT:
        raise TargetError(f"manifest models[{name}]: quantization level {level or '(none)'!r} unknown; "
                          f"known: {', '.join(BITS_PER_WEIGHT)}")
    weights = int(arch.parameter_count * BITS_PER_WEIGHT[level] / 8)
    kv_per_token = arch.block_count * (arch.key_length + arch.value_length) * arch.head_count_kv * F16_KV_BYTES
    return ModelShape(name, weights, arch.parameter_count, kv_per_token)


def calibrated_catalog(run_dir: str | Path, known_shape: Callable[[str], ModelShape | None],
                       token_overhead_s: float) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of a run directory and the catalog document (`gpus:`) it makes.

    known_shape: the simulator's own entry for the model, when its catalog has it; otherwise the
    shape comes from the /api/show the run stored.
    """
    run = load_run(run_dir)
    model = measured_model(run)
    shape = known_shape(model)
    if shape is None:
        show = run.manifest.models.get(model)
        if not show:
            raise RunDirError(f"{run.path}: the manifest has no /api/show of {model} to take its shape from")
        shape = shape_from_show(model, show)
    calibration = calibrate(run, shape, gpu_memory_of(run), token_overhead_s)
    return calibration, {"gpus": [calibration.gpu_entry]}
