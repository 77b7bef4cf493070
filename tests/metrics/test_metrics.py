"""bench.analysis.metrics on hand-made request frames with answers worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.errors import UsageError
from bench.analysis.metrics import (
    METRIC_COLUMNS,
    METRIC_DIRECTIONS,
    SUMMARY_COLUMNS,
    bootstrap_ci,
    cell_summary,
    higher_is_better,
    itl_gaps,
    metrics_readme,
    parse_metric_name,
    request_metrics,
)


def row(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "cell_id": "a", "request_index": 0, "surface": "native", "endpoint": "chat",
        "model": "m", "repeat": 0, "phase": "measure", "scheduled_s": None, "sent_s": 0.0,
        "first_token_s": None, "end_s": None, "chunk_times_s": [], "error_class": None,
        "output_tokens": None, "load_duration_ns": None, "prompt_eval_duration_ns": None,
    }
    base.update(values)
    return base


def streamed(sent: float, chunks: list[float], end: float, **values: Any) -> dict[str, Any]:
    return row(sent_s=sent, first_token_s=chunks[0], chunk_times_s=chunks, end_s=end, **values)


def test_ttft_tpot_itl_e2e_user_tps_of_one_request() -> None:
    frame = pd.DataFrame([streamed(1.0, [1.5, 1.6, 1.8, 2.1], 2.2, output_tokens=4,
                                   scheduled_s=0.9)])
    m = request_metrics(frame).iloc[0]
    assert m.ttft_s == pytest.approx(0.5)
    assert m.tpot_s == pytest.approx((2.1 - 1.5) / 3)
    assert m.itl_mean_s == pytest.approx(0.2)
    assert m.e2e_s == pytest.approx(1.2)
    assert m.user_tps == pytest.approx(4 / 0.7)
    assert m.dispatch_lag_s == pytest.approx(0.1)


def test_tpot_uses_server_token_count_over_chunk_count() -> None:
    # Two chunks but the server says 11 tokens: 10 gaps' worth of decode in 1 s.
    frame = pd.DataFrame([streamed(0.0, [0.2, 1.2], 1.3, output_tokens=11)])
    assert request_metrics(frame).iloc[0].tpot_s == pytest.approx(0.1)


def test_tpot_is_missing_for_a_single_chunk_or_no_server_count() -> None:
    frame = pd.DataFrame([streamed(0.0, [0.5], 0.6, output_tokens=20),
                          streamed(0.0, [0.5, 0.7], 0.8)])
    m = request_metrics(frame)
    assert math.isnan(m.tpot_s.iloc[0])
    assert m.tpot_s.iloc[1] == pytest.approx(0.2)  # chunk count used: 2 tokens


def test_queue_wait_splits_native_ttft_and_is_clipped() -> None:
    frame = pd.DataFrame([
        streamed(0.0, [1.0, 1.1], 1.2, load_duration_ns=200_000_000,
                 prompt_eval_duration_ns=300_000_000),
        streamed(0.0, [0.1, 0.2], 0.3, load_duration_ns=200_000_000,
                 prompt_eval_duration_ns=300_000_000),
        streamed(0.0, [1.0, 1.1], 1.2, surface="openai"),
    ])
    m = request_metrics(frame)
    assert m.queue_wait_s.iloc[0] == pytest.approx(0.5)
    assert m.queue_wait_s.iloc[1] == 0.0
    assert math.isnan(m.queue_wait_s.iloc[2])
    assert m.load_s.iloc[0] == pytest.approx(0.2) and m.prefill_s.iloc[0] == pytest.approx(0.3)


def test_cold_marks_only_requests_that_paid_for_a_load() -> None:
    frame = pd.DataFrame([
        streamed(0.0, [3.0, 3.1], 3.2, load_duration_ns=2_500_000_000),
        streamed(0.0, [0.1, 0.2], 0.3, load_duration_ns=12_000_000),  # warm scheduler hand-off
        streamed(0.0, [0.1, 0.2], 0.3, surface="openai"),
    ])
    assert request_metrics(frame).cold.tolist() == [True, False, False]


def test_itl_gaps_pool_every_gap_of_successful_requests() -> None:
    frame = pd.DataFrame([
        streamed(0.0, [1.0, 1.1, 1.3], 1.4),
        streamed(0.0, [2.0, 2.5], 2.6),
        streamed(0.0, [5.0, 9.0], 9.1, error_class="disconnected"),
    ])
    assert np.allclose(np.sort(itl_gaps(frame)), [0.1, 0.2, 0.5])


def test_cell_summary_counts_rates_window_and_throughput() -> None:
    frame = pd.DataFrame([
        # warmup: excluded everywhere, even though it would widen the window
        streamed(-5.0, [-4.0, -3.9], -3.8, phase="warmup", output_tokens=2),
        streamed(0.0, [0.5, 0.6, 0.7], 1.0, output_tokens=3),
        streamed(1.0, [1.5, 1.6, 1.7], 2.0, output_tokens=3),
        streamed(1.5, [2.0, 2.1, 2.2], 4.0, output_tokens=4),
        row(sent_s=2.0, end_s=2.01, error_class="rejected"),
        row(sent_s=3.0, end_s=3.5, error_class="timeout"),
    ])
    summary = cell_summary(frame)
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    s = summary.loc["a"]
    assert (s.requests, s.ok, s.rejected, s.errors) == (5, 3, 1, 1)
    assert s.rejection_rate == pytest.approx(0.2) and s.error_rate == pytest.approx(0.2)
    assert s.window_s == pytest.approx(4.0)  # first send 0.0 .. last end 4.0
    assert s.output_tps == pytest.approx(10 / 4.0)
    assert s.rps == pytest.approx(3 / 4.0)
    assert s.goodput_rps == s.rps  # no SLOs: every success counts
    assert s.ttft_p50_s == pytest.approx(0.5)
    assert s.e2e_p50_s == pytest.approx(1.0)
    assert s.itl_p50_s == pytest.approx(0.1)


def test_window_sums_repeats_so_idle_time_between_repeats_is_not_counted() -> None:
    frame = pd.DataFrame([
        streamed(0.0, [0.5, 0.6], 1.0, output_tokens=2, repeat=0),
        streamed(100.0, [100.5, 100.6], 101.0, output_tokens=2, repeat=1),
    ])
    s = cell_summary(frame).loc["a"]
    assert s.window_s == pytest.approx(2.0) and s.output_tps == pytest.approx(2.0)


def test_goodput_counts_requests_within_every_slo() -> None:
    frame = pd.DataFrame([
        streamed(0.0, [0.2, 0.3, 0.4], 1.0, output_tokens=3),  # ttft 0.2, tpot 0.1: meets
        streamed(0.0, [0.9, 1.0, 1.1], 2.0, output_tokens=3),  # ttft 0.9: misses ttft
        streamed(0.0, [0.2, 1.2, 2.2], 4.0, output_tokens=3),  # tpot 1.0: misses tpot
        streamed(0.0, [0.3], 0.5, output_tokens=1),  # one token: tpot n/a, ttft meets
    ])
    s = cell_summary(frame, slos={"ttft_p95": 0.5, "tpot_p95": 0.2}).loc["a"]
    assert s.window_s == pytest.approx(4.0)
    assert s.goodput_rps == pytest.approx(2 / 4.0)
    assert s.rps == pytest.approx(4 / 4.0)


def test_unknown_slo_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="ttft_p95"):
        cell_summary(pd.DataFrame([streamed(0.0, [0.1], 0.2)]), slos={"latency": 1.0})


def test_percentiles_and_bootstrap_intervals_bracket_the_estimate() -> None:
    ttfts = np.linspace(0.1, 1.0, 100)
    frame = pd.DataFrame([streamed(0.0, [t, t + 0.05], t + 0.1, request_index=i)
                          for i, t in enumerate(ttfts)])
    s = cell_summary(frame).loc["a"]
    assert s.ttft_p95_s == pytest.approx(np.percentile(ttfts, 95))
    assert s.ttft_p95_ci_lo_s <= s.ttft_p95_s <= s.ttft_p95_ci_hi_s
    assert s.ttft_p50_ci_lo_s < s.ttft_p50_s < s.ttft_p50_ci_hi_s
    assert s.ttft_p50_ci_hi_s - s.ttft_p50_ci_lo_s < 0.3
    # Deterministic: the same records give the same interval.
    assert cell_summary(frame).loc["a"].ttft_p95_ci_lo_s == s.ttft_p95_ci_lo_s


def test_bootstrap_of_too_few_values_has_no_interval() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([1.0]), 95))


def test_cells_are_summarized_separately_and_empty_input_gives_empty_frame() -> None:
    frame = pd.DataFrame([streamed(0.0, [0.1, 0.2], 0.3, cell_id="a"),
                          streamed(0.0, [0.4, 0.5], 0.6, cell_id="b")])
    summary = cell_summary(frame)
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["b"].ttft_p50_s == pytest.approx(0.4)
    assert cell_summary(pd.DataFrame()).empty


def test_metric_names_map_to_summary_columns_with_directions() -> None:
    assert parse_metric_name("ttft_p95") == "ttft_p95_s"
    assert parse_metric_name("itl_p99") == "itl_p99_s"
    assert parse_metric_name("output_tps") == "output_tps"
    assert parse_metric_name("e2e_p50_s") == "e2e_p50_s"
    assert set(METRIC_COLUMNS.values()) <= set(SUMMARY_COLUMNS)
    assert not higher_is_better("ttft_p95") and higher_is_better("goodput_rps")
    assert METRIC_DIRECTIONS["rejection_rate"] == "lower"
    assert parse_metric_name("ttft_p42") == "ttft_p42_s"  # any percentile a scenario chose
    with pytest.raises(UsageError, match="valid: .*ttft_p95"):
        parse_metric_name("ttft_p142")
    with pytest.raises(UsageError, match="valid: .*ttft_p95"):
        parse_metric_name("ttfb_p95")


def test_summary_reads_parquet_style_arrays_for_chunk_times() -> None:
    frame = pd.DataFrame([streamed(0.0, np.array([0.2, 0.3, 0.4]), 0.5, output_tokens=3)])
    assert cell_summary(frame).loc["a"].tpot_p50_s == pytest.approx(0.1)


def test_readme_section_defines_every_headline_metric() -> None:
    text = metrics_readme()
    for name in ("ttft_s", "tpot_s", "itl", "goodput_rps", "queue_wait_s", "output_tps", "cold"):
        assert f"`{name}`" in text


def test_summary_needs_only_its_input_columns() -> None:
    # A run's end reads only SUMMARY_INPUT_COLUMNS back from requests.parquet: every other record
    # field (stored text, headers_s, durations not used...) must not change the summary.
    from bench.analysis.metrics import SUMMARY_INPUT_COLUMNS
    from bench.records import RECORD_FIELDS

    rows = [
        streamed(0.0, [0.5, 0.6, 0.7], 1.0, output_tokens=3, scheduled_s=-0.1, load_duration_ns=2e8,
                 prompt_eval_duration_ns=1e8, headers_s=0.1, first_content_s=0.6, status=200,
                 eval_duration_ns=5e8, total_duration_ns=9e8, prompt_tokens=7, done_reason="stop",
                 prompt_chars=30, output_chars=12, prompt_text="p", output_text="o", worker=0),
        streamed(0.2, [0.9, 1.4], 2.0, output_tokens=2, surface="openai", repeat=1, headers_s=0.3),
        row(sent_s=1.0, end_s=1.1, error_class="rejected", status=503, error_message="busy"),
        streamed(-1.0, [-0.5, -0.4], -0.3, phase="warmup", output_tokens=2),
    ]
    full = pd.DataFrame(rows)
    assert set(SUMMARY_INPUT_COLUMNS) <= set(RECORD_FIELDS)
    slos = {"ttft_p95": 0.6, "tpot_p95": 0.2, "e2e_p95": 1.5, "queue_wait_p95": 1.0}
    pd.testing.assert_frame_equal(cell_summary(full, slos=slos),
                                  cell_summary(full[list(SUMMARY_INPUT_COLUMNS)], slos=slos))
