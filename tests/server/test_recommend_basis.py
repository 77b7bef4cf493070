"""Every NUM_PARALLEL recommendation says what it rests on: n per cell, a tie when the winner is
within the noise of the runner-up, 'provisional' wherever it appears when the samples are too few."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.recommend import parse_slo, recommend
from bench.analysis.samples import min_samples_for
from bench.records import RequestRecord, Run
from bench.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SLO = (parse_slo("ttft_p95=1s"),)


def _records(cell_id: str, n: int, mean_e2e_s: float, spread: float, seed: int, concurrency: int = 4) -> list[dict]:
    """n requests of 100 tokens in a closed loop of `concurrency`, e2e drawn around mean_e2e_s."""
    rng = np.random.default_rng(seed)
    e2e = rng.lognormal(np.log(mean_e2e_s), spread, n)
    lanes = [0.0] * concurrency
    rows = []
    for index in range(n):
        lane = index % concurrency
        sent = lanes[lane]
        first = sent + 0.05
        lanes[lane] = sent + e2e[index]
        record = RequestRecord(cell_id, index, "native", "chat", "m", sent_s=sent, first_token_s=first,
                               end_s=sent + e2e[index], chunk_times_s=[first, sent + e2e[index]],
                               output_tokens=100, status=200)
        rows.append(dataclasses.asdict(record))
    return rows


def _sweep(tmp_path: Path, cells: dict[int, tuple[int, float, float]]) -> Run:
    """One cell per NUM_PARALLEL: (requests, mean e2e s, lognormal spread); no /api/ps data."""
    records, rows = [], []
    for index, (num_parallel, (n, mean_e2e_s, spread)) in enumerate(sorted(cells.items())):
        cell_id = f"np{num_parallel}"
        rows.append({"cell_id": cell_id, "cell_index": index, "model": "m", "concurrency": 4,
                     "OLLAMA_NUM_PARALLEL": str(num_parallel)})
        records += _records(cell_id, n, mean_e2e_s, spread, seed=num_parallel)
    manifest = {"cells": [{"cell_id": r["cell_id"], "cell_index": r["cell_index"],
                           "settings": {k: v for k, v in r.items() if k not in ("cell_id", "cell_index")}}
                          for r in rows]}
    return Run(tmp_path, manifest, pd.DataFrame(records), pd.DataFrame(rows), None, None)


def test_too_few_requests_make_the_recommendation_provisional(tmp_path: Path) -> None:
    recommendation = recommend(_sweep(tmp_path, {1: (24, 1.0, 0.05), 4: (24, 0.4, 0.05)}), SLO)
    assert recommendation.num_parallel == 4 and recommendation.provisional
    assert recommendation.verdict.startswith("provisional (n=24 where ttft_p95 needs ≥40")
    stored = recommendation.to_json()
    assert stored["provisional"] is True and stored["samples"]["cells"]["4"]["ok"] == 24


def test_enough_requests_give_a_plain_answer_that_states_its_n(tmp_path: Path) -> None:
    recommendation = recommend(_sweep(tmp_path, {1: (60, 1.0, 0.05), 4: (60, 0.4, 0.05)}), SLO)
    assert not recommendation.provisional and recommendation.tie_with is None
    assert "samples: NP=4 n=60, NP=1 n=60 (ttft_p95 needs ≥40)" in recommendation.verdict
    assert "provisional" not in recommendation.verdict


def test_a_winner_within_the_noise_of_the_runner_up_is_a_tie_and_the_smaller_setting(tmp_path: Path) -> None:
    # NP=8 is ~13% faster (beyond the 5% rule) but both cells are noisy: their intervals overlap.
    recommendation = recommend(_sweep(tmp_path, {4: (60, 0.50, 0.5), 8: (60, 0.40, 0.5)}), SLO)
    assert recommendation.num_parallel == 4 and recommendation.tie_with == 8
    assert "tie: NP=4 or NP=8, pick the smaller for memory" in recommendation.verdict
    assert "95% CI" in recommendation.verdict
    reasons = {c.num_parallel: c.reason for c in recommendation.candidates}
    assert "interval of the difference holds 0" in reasons[8]


def test_the_shipped_sizing_study_reaches_the_n_its_percentiles_need() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "size-num-parallel-sim.yaml")
    needed = max(min_samples_for(metric) for metric in scenario.slos)
    assert scenario.stop_when is not None and scenario.prune
    assert scenario.stop_when.min_requests >= needed
    assert min(scenario.load.requests) >= needed  # an axis: a list of counts


def test_a_setting_the_study_skipped_is_listed_with_its_reason(tmp_path: Path) -> None:
    run = _sweep(tmp_path, {1: (60, 1.0, 0.05), 4: (60, 0.4, 0.05)})
    reason = "NP=16 spilled at load (size_vram 20.5 GiB of 36.9 GiB, 44% on CPU): skipped c=1"
    run.manifest.cells.append(type(run.manifest.cells[0])(
        cell_id="np16", settings={"OLLAMA_NUM_PARALLEL": "16"}, status="skipped", skip_reason=reason))
    candidate = {c.num_parallel: c for c in recommend(run, SLO).candidates}[16]
    assert candidate.outcome == "lost" and candidate.reason == f"skipped: {reason}"
    assert candidate.fits_in_gpu is False and candidate.cell_id is None
