"""Input/total token throughput, time-weighted in-flight and run-to-run intervals (bench.analysis.rates)
on hand-made records whose answers are worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from scipy import stats

from bench.analysis.metrics import SUMMARY_COLUMNS, cell_summary
from bench.analysis.rates import repeat_interval_columns, t_interval


def record(sent: float, end: float, *, prompt: int | None = 100, output: int = 10, repeat: int = 0,
           error: str | None = None) -> dict[str, Any]:
    first = sent + 0.1
    chunks = [] if error else [first + 0.01 * i for i in range(output)]
    return {"cell_id": "a", "request_index": 0, "surface": "native", "repeat": repeat, "phase": "measure",
            "scheduled_s": sent, "sent_s": sent, "first_token_s": None if error else first, "end_s": end,
            "chunk_times_s": chunks, "error_class": error, "output_tokens": None if error else output,
            "prompt_tokens": prompt, "load_duration_ns": None, "prompt_eval_duration_ns": None}


def test_input_and_total_token_throughput_count_prompt_tokens_over_the_window() -> None:
    # Window 0..4 s; two successes of 100 prompt + 10 output tokens; the failure's prompt is not counted.
    frame = pd.DataFrame([record(0.0, 2.0), record(1.0, 4.0), record(1.5, 2.0, error="server_error")])
    s = cell_summary(frame).loc["a"]
    assert s.input_tps == pytest.approx(200 / 4)
    assert s.output_tps == pytest.approx(20 / 4)
    assert s.total_tps == pytest.approx(220 / 4)


def test_token_rates_are_empty_when_the_server_sent_no_prompt_count() -> None:
    s = cell_summary(pd.DataFrame([record(0.0, 1.0, prompt=None)])).loc["a"]
    assert math.isnan(s.input_tps) and math.isnan(s.total_tps)


def test_inflight_mean_is_time_weighted_and_counts_failures() -> None:
    # In flight: [0,2] one, [1,4] one, [1.5,2] one (a failure): 2 + 3 + 0.5 = 5.5 request-seconds over 4 s.
    frame = pd.DataFrame([record(0.0, 2.0), record(1.0, 4.0), record(1.5, 2.0, error="server_error")])
    assert cell_summary(frame).loc["a"].inflight_mean == pytest.approx(5.5 / 4)


def test_one_repeat_has_no_run_to_run_interval() -> None:
    s = cell_summary(pd.DataFrame([record(0.0, 1.0), record(0.5, 1.0)])).loc["a"]
    assert s.repeats == 1
    assert all(math.isnan(s[column]) for column in repeat_interval_columns())


def test_repeats_give_a_student_t_interval_over_per_repeat_throughput() -> None:
    # Three repeats of one request each, 10 tokens over windows of 1, 2 and 4 s: 10, 5, 2.5 tok/s.
    frame = pd.DataFrame([record(10.0 * r, 10.0 * r + w, repeat=r) for r, w in enumerate((1.0, 2.0, 4.0))])
    s = cell_summary(frame).loc["a"]
    values = [10.0, 5.0, 2.5]
    mean, sd = sum(values) / 3, pd.Series(values).std()
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert s.repeats == 3
    assert s.output_tps_repeats_ci_lo == pytest.approx(mean - half)
    assert s.output_tps_repeats_ci_hi == pytest.approx(mean + half)
    assert s.ttft_p95_repeats_ci_lo_s == pytest.approx(0.1) and s.ttft_p95_repeats_ci_hi_s == pytest.approx(0.1)


def test_t_interval_needs_two_values_and_widens_with_fewer() -> None:
    assert all(math.isnan(v) for v in t_interval([3.0]))
    two = t_interval([1.0, 2.0])
    five = t_interval([1.0, 2.0, 1.0, 2.0, 1.5])
    assert two[1] - two[0] > five[1] - five[0]


def test_new_columns_are_summary_columns() -> None:
    for column in ("input_tps", "total_tps", "inflight_mean", "repeats", *repeat_interval_columns()):
        assert column in SUMMARY_COLUMNS
