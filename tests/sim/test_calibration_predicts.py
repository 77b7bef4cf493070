"""Calibrated from a real concurrency-1 cell, the simulator predicts that server's c=2, 4 and 8.

The fixtures (tests/sim/data/calibration/) are six real runs of scenarios/calibrate-engine.yaml on
this project's shared 2-core Xeon (2026-12-07, load average 12-19, one llama.cpp thread): the real
engine (`bench sim --engine llama-server`) and real Ollama v0.33.0 (`--target ollama`), three
times each, c=1, 2, 4, 8 back-to-back. Every recorded run is here, the misses too. Each keeps its manifest, its c=1 cell's requests (no texts) and its
summary. The prediction is bench.sim.closed_loop: the live simulator's timing in virtual time, so
no test here waits on a clock. docs/simulator.md has the table these assert.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.speed_calibration import ModelShape, calibrated_catalog
from bench.records import load_run
from bench.sim import context, roofline
from bench.sim.catalog import GpuProfile, ModelSpec, load_catalog
from bench.sim.closed_loop import Prediction, Workload, predict
from bench.sim.config import build_config, with_engine_models

DATA = Path(__file__).parent / "data" / "calibration"
CATALOG = with_engine_models(load_catalog(), (), "simulated")
# Ollama's -b/-ub for 8 slots x 4096 tokens on a machine without GPU memory (its log: -b 1024).
NUM_BATCH = context.automatic_generation_batch(8 * 4096, 0, 0, False, 0)


def _known_shape(name: str) -> ModelShape | None:
    spec = CATALOG.resolve(name)
    return spec and ModelShape(spec.name, spec.size_bytes, spec.parameter_count, roofline.kv_bytes_per_token(spec, 2.0))


def _calibrated(run_dir: Path) -> tuple[ModelSpec, GpuProfile]:
    calibration, document = calibrated_catalog(run_dir, _known_shape, roofline.TOKEN_OVERHEAD_S)
    config = build_config({}, calibrated=document)
    model = config.catalog.resolve(calibration.model)
    assert model is not None and config.gpu is not None
    return model, config.gpu


def _predictions(name: str) -> dict[int, tuple[pd.Series, Prediction]]:
    """Per concurrency: the measured summary row and the prediction from the c=1 cell alone."""
    run_dir = DATA / name
    model, gpu = _calibrated(run_dir)
    prompt_tokens = int(load_run(run_dir).requests["prompt_tokens"].median())
    measured = pd.read_csv(run_dir / "summary.csv")
    out = {}
    for _, row in measured.iterrows():
        workload = Workload(prompt_tokens=prompt_tokens, output_tokens=int(row.max_tokens), concurrency=int(row.concurrency),
                            requests=int(row.requests), warmup_requests=int(row.warmup_requests), num_batch=NUM_BATCH)
        out[int(row.concurrency)] = (row, predict(model, gpu, workload))
    return out


def _ratios(name: str, concurrency: int) -> tuple[float, float]:
    row, prediction = _predictions(name)[concurrency]
    return prediction.output_tokens_per_s / row.output_tps, prediction.ttft_p50_s / row.ttft_p50_s


ENGINE_RUNS = ["engine-1", "engine-2", "engine-3"]
OLLAMA_RUNS = ["ollama-1", "ollama-2", "ollama-3"]


@pytest.mark.parametrize("name", ENGINE_RUNS + OLLAMA_RUNS)
def test_the_calibrated_profile_reproduces_its_own_concurrency_one_cell(name: str) -> None:
    throughput, ttft = _ratios(name, 1)
    assert throughput == pytest.approx(1, abs=0.05)
    assert ttft == pytest.approx(1, abs=0.06)


@pytest.mark.parametrize("concurrency", [4, 8])
def test_the_engine_at_concurrency_4_and_8_is_predicted_within_15_percent_typically(concurrency: int) -> None:
    """Throughput and TTFT p50: a CPU decodes each sequence on its own and prompts stall the batch.

    Within 15% in the median repetition, within 30% in every one: the busy machine moves a real
    cell by that much between repetitions (engine-3's c=8 ran faster than its own c=1)."""
    ratios = [_ratios(name, concurrency) for name in ENGINE_RUNS]
    for metric in (0, 1):
        misses = sorted(abs(pair[metric] - 1) for pair in ratios)
        assert misses[len(misses) // 2] <= 0.15, (concurrency, metric, ratios)
        assert misses[-1] <= 0.30, (concurrency, metric, ratios)


@pytest.mark.parametrize("name", ENGINE_RUNS)
def test_the_engine_at_concurrency_2_is_within_20_percent_on_throughput(name: str) -> None:
    """c=2's known miss is TTFT: two clients either fall into step (both prompts in one batch, TTFT
    two prompts long: predicted, and seen in engine-2) or stay apart (engine-1: 566 ms, predicted 903)."""
    throughput, _ = _ratios(name, 2)
    assert throughput == pytest.approx(1, abs=0.20)


@pytest.mark.parametrize("name", OLLAMA_RUNS)
def test_real_ollama_at_concurrency_4_and_8_is_over_predicted_as_documented(name: str) -> None:
    """The known miss: real Ollama's per-token cost at c >= 2 is 2-3x its c=1 cost on this machine
    (server eval_duration: 4-5 ms -> ~12 ms a token), which no c=1 run shows. The prediction is
    above the measurement and never past 2x."""
    for concurrency in (4, 8):
        throughput, _ = _ratios(name, concurrency)
        assert 1.0 < throughput <= 2.0, concurrency


def test_the_old_shared_weight_read_is_what_the_calibration_no_longer_predicts() -> None:
    """A CPU profile: a batch of 8 costs 8 single steps (llama-batched-bench here: 90-97 tok/s
    aggregate at B = 1..8), not one shared weight read."""
    model, gpu = _calibrated(DATA / "engine-2")
    one = roofline.decode_step_s(model, gpu, 0.0, 1, 550, 2.0)
    eight = roofline.decode_step_s(model, gpu, 0.0, 8, 8 * 550, 2.0)
    assert eight == pytest.approx(8 * one, rel=0.02)


def test_a_gpu_profile_still_shares_the_weight_read_across_the_batch() -> None:
    h100 = load_catalog().gpus["h100"]
    model = load_catalog().resolve("llama3.1:8b")
    assert model is not None
    one = roofline.decode_step_s(model, h100, 1.0, 1, 1024, 2.0)
    eight = roofline.decode_step_s(model, h100, 1.0, 8, 8 * 1024, 2.0)
    assert eight < 2 * one
