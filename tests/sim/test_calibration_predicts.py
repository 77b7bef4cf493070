"""Calibrated from a real concurrency-1 cell, the simulator predicts that server's c=2, 4 and 8.

The fixtures (tests/sim/data/calibration/) are twelve real runs of scenarios/calibrate-engine.yaml on
this project's shared 2-core Xeon, one llama.cpp thread: the real engine (`bench sim --engine
llama-server`) and real Ollama v0.33.0 (`--target ollama`), three times each, c=1, 2, 4, 8
back-to-back; six on the busy machine (engine-N, ollama-N: 2026-12-07, load average 12-19) and six
on the quiet one (quiet-engine-N, quiet-ollama-N: 2026-12-08 00:29-00:33 UTC, load average 0.7-1.4).
Every recorded run is here, the misses too. Each keeps its manifest, its c=1 cell's requests (no
texts) and its summary. The prediction is bench.sim.closed_loop: the live simulator's timing in virtual time, so
no test here waits on a clock. docs/simulator.md has the table these assert.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.analysis.speed_calibration import CPU_DECODE_SHARED_FRACTION, ModelShape, calibrated_catalog
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
    lengths = tuple(int(tokens) for tokens in load_run(run_dir).requests["prompt_tokens"])  # the c=1 cell's
    measured = pd.read_csv(run_dir / "summary.csv")
    out = {}
    for _, row in measured.iterrows():
        workload = Workload(prompt_tokens=int(row.prompt_tokens), output_tokens=int(row.max_tokens), concurrency=int(row.concurrency),
                            requests=int(row.requests), warmup_requests=int(row.warmup_requests), num_batch=NUM_BATCH,
                            prompt_lengths=lengths)
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
    """Throughput and TTFT p50 on the busy machine: within 15% in the median repetition, except c=8
    throughput, a miss: 1.16, 1.28, 0.83, the median 17% off (engine-1's and -2's real c=8 ran
    slower than their c=4, which no c=1 cell shows), and within 30% in every one:
    the busy machine moves a real cell by that much between repetitions (engine-3's c=8 ran faster
    than its own c=1: throughput 0.83, TTFT 1.27)."""
    ratios = [_ratios(name, concurrency) for name in ENGINE_RUNS]
    for metric in (0, 1):
        misses = sorted(abs(pair[metric] - 1) for pair in ratios)
        median_bound = 0.18 if (concurrency, metric) == (8, 0) else 0.15
        assert misses[len(misses) // 2] <= median_bound, (concurrency, metric, ratios)
        assert misses[-1] <= 0.30, (concurrency, metric, ratios)


@pytest.mark.parametrize("name", ENGINE_RUNS)
def test_the_engine_at_concurrency_2_is_within_22_percent_on_throughput(name: str) -> None:
    """c=2's known miss is TTFT: two clients either fall into step (both prompts in one batch, TTFT
    two prompts long) or stay apart; the model, with the run's own prompt lengths, lands between
    (0.80-1.23 here). Throughput 0.86-1.21: engine-2's c=2 ran 9% slower than its own c=1 (1.21)."""
    throughput, _ = _ratios(name, 2)
    assert throughput == pytest.approx(1, abs=0.22)


@pytest.mark.parametrize("name", OLLAMA_RUNS)
def test_real_ollama_at_concurrency_4_and_8_is_over_predicted_as_documented(name: str) -> None:
    """The known miss: real Ollama's per-token cost at c >= 2 is 2-3x its c=1 cost on this machine
    (server eval_duration: 4-5 ms -> ~12 ms a token), which no c=1 run shows. The prediction is
    above the measurement, 1.23-2.10x (ollama-2's c=8: 2.10)."""
    for concurrency in (4, 8):
        throughput, _ = _ratios(name, concurrency)
        assert 1.0 < throughput <= 2.15, concurrency


QUIET_ENGINE_RUNS = ["quiet-engine-1", "quiet-engine-2", "quiet-engine-3"]
QUIET_OLLAMA_RUNS = ["quiet-ollama-1", "quiet-ollama-2", "quiet-ollama-3"]


@pytest.mark.parametrize("name", QUIET_ENGINE_RUNS + QUIET_OLLAMA_RUNS)
def test_a_quiet_run_reproduces_its_own_concurrency_one_cell(name: str) -> None:
    """TTFT within 10%: at ~105 ms the median request's prompt is up to 10% off the mean rate the
    calibration reads (quiet-engine-2: 1.10, quiet-ollama-1: 0.92)."""
    throughput, ttft = _ratios(name, 1)
    assert throughput == pytest.approx(1, abs=0.05)
    assert ttft == pytest.approx(1, abs=0.10)


@pytest.mark.parametrize("concurrency", [4, 8])
def test_on_a_quiet_machine_the_engine_ttft_at_4_and_8_is_predicted_within_15_percent(concurrency: int) -> None:
    """Over-predicted by 2-13% (a CPU profile's decode batches are still slower than the real ones)."""
    ttfts = [_ratios(name, concurrency)[1] for name in QUIET_ENGINE_RUNS]
    assert all(1.0 <= ttft <= 1.15 for ttft in ttfts), ttfts


@pytest.mark.parametrize("concurrency", [4, 8])
def test_on_a_quiet_machine_the_engine_throughput_at_4_and_8_is_within_15_percent_typically(concurrency: int) -> None:
    """A CPU profile shares 23% of a decode step across the batch (llama-batched-bench, not these
    runs): 0.80-0.93, within 15% in two repetitions of three and never above. The miss is
    quiet-engine-1 (0.80, 0.82): its c=4/8 ran 1.35x its c=1 in aggregate, the others 1.1-1.25x."""
    ratios = sorted(_ratios(name, concurrency)[0] for name in QUIET_ENGINE_RUNS)
    assert ratios[1] >= 0.85, ratios
    assert all(0.78 <= throughput <= 1.0 for throughput in ratios), ratios


@pytest.mark.parametrize("name", QUIET_OLLAMA_RUNS)
def test_on_a_quiet_machine_real_ollama_throughput_at_4_and_8_is_within_26_percent(name: str) -> None:
    """0.75-1.02: quiet-ollama-1's c=8 (0.75) is the miss, its real c=8 1.45x its c=1."""
    for concurrency in (4, 8):
        throughput, _ = _ratios(name, concurrency)
        assert 0.74 <= throughput <= 1.03, (concurrency, throughput)


@pytest.mark.parametrize("name", QUIET_ENGINE_RUNS + QUIET_OLLAMA_RUNS)
def test_on_a_quiet_machine_concurrency_2_is_within_21_percent(name: str) -> None:
    """Throughput 0.87-1.15 (quiet-ollama-2's 1.15), TTFT 0.80-1.01 (the engine's 0.87-1.01)."""
    throughput, ttft = _ratios(name, 2)
    assert throughput == pytest.approx(1, abs=0.20)
    assert ttft == pytest.approx(1, abs=0.21)


@pytest.mark.parametrize("name", QUIET_OLLAMA_RUNS)
def test_on_a_quiet_machine_real_ollama_ttft_at_4_and_8_is_within_26_percent(name: str) -> None:
    """Quiet, real Ollama is no longer over-predicted (the busy machine's 2-3x per-token cost at
    c >= 2 is gone): TTFT 0.97-1.22."""
    for concurrency in (4, 8):
        _, ttft = _ratios(name, concurrency)
        assert 0.95 <= ttft <= 1.26, (concurrency, ttft)


def test_a_cpu_profile_shares_only_its_measured_fraction_of_a_step_across_the_batch() -> None:
    """A batch of 8 costs alpha + 8 (1 - alpha) single steps (6.39 at alpha 0.23: llama-batched-bench
    here, 26.3 ms against 4.14 at B=1, 6.36x), not one shared weight read (~1x) nor 8 steps; the
    eight sequences' KV reads add 1-2%."""
    model, gpu = _calibrated(DATA / "engine-2")
    one = roofline.decode_step_s(model, gpu, 0.0, 1, 550, 2.0)
    eight = roofline.decode_step_s(model, gpu, 0.0, 8, 8 * 550, 2.0)
    alpha = CPU_DECODE_SHARED_FRACTION
    assert eight == pytest.approx((alpha + 8 * (1 - alpha)) * one, rel=0.03)


def test_a_gpu_profile_still_shares_the_weight_read_across_the_batch() -> None:
    h100 = load_catalog().gpus["h100"]
    model = load_catalog().resolve("llama3.1:8b")
    assert model is not None
    one = roofline.decode_step_s(model, h100, 1.0, 1, 1024, 2.0)
    eight = roofline.decode_step_s(model, h100, 1.0, 8, 8 * 1024, 2.0)
    assert eight < 2 * one
