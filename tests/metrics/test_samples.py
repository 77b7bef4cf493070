"""Sample-size honesty: minimums per percentile, and no interval below them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.analysis.samples import (min_samples_for, min_samples_for_percentile, not_enough,
                                    percentile_interval)
from bench.analysis.metrics import cell_summary


def test_a_percentile_needs_two_samples_beyond_it_and_never_fewer_than_ten():
    assert [min_samples_for_percentile(p) for p in (50, 90, 95, 99)] == [10, 20, 40, 200]
    assert min_samples_for("ttft_p95") == 40 and min_samples_for("user_tps_p50") == 10
    assert min_samples_for("output_tps") == 10 and min_samples_for("error_rate") == 10
    # A fractional percentile is a percentile too (it was read as a plain metric: 10 samples).
    assert min_samples_for("ttft_p99.9") == 2000 and min_samples_for("ttft_p99.9_s") == 2000
    assert not_enough(6, 40) == "not enough samples (n=6, needs ≥40)"


def test_six_samples_give_no_p95_interval_and_forty_do():
    rng = np.random.default_rng(3)
    assert percentile_interval(rng.lognormal(size=6), 95) is None
    low, high = percentile_interval(rng.lognormal(size=40), 95)
    assert 0 < low < high


def test_interval_brackets_the_percentile_and_is_deterministic():
    values = np.random.default_rng(1).normal(10, 1, size=400)
    low, high = percentile_interval(values, 50)
    assert low < np.percentile(values, 50) < high and high - low < 0.5
    assert percentile_interval(values, 50) == (low, high)


def test_identical_samples_give_a_zero_width_interval():
    assert percentile_interval(np.full(50, 0.25), 50) == (0.25, 0.25)


def _requests(n: int) -> pd.DataFrame:
    rows = []
    for index in range(n):
        sent = index * 1.0
        rows.append(dict(cell_id="a", request_index=index, phase="measure", surface="native",
                         error_class=None, scheduled_s=sent, sent_s=sent, first_token_s=sent + 0.1 + index / 1000,
                         end_s=sent + 0.3, chunk_times_s=[sent + 0.1 + index / 1000, sent + 0.2, sent + 0.3],
                         output_tokens=3, load_duration_ns=None, prompt_eval_duration_ns=None, repeat=1))
    return pd.DataFrame(rows)


def test_summary_of_a_six_request_cell_has_no_p95_interval():
    summary = cell_summary(_requests(6)).loc["a"]
    assert math.isnan(summary.ttft_p95_ci_lo_s) and math.isnan(summary.ttft_p95_ci_hi_s)
    assert math.isnan(summary.ttft_p50_ci_lo_s)  # p50 needs 10 too
    summary = cell_summary(_requests(40)).loc["a"]
    assert summary.ttft_p95_ci_lo_s <= summary.ttft_p95_s <= summary.ttft_p95_ci_hi_s
