"""stop_when statistics: intervals of a cell's metrics and when the rule is met (hand-made records)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis.stopping import StopRule, final_verdict, judge, metric_interval, next_check
from bench.analysis.metrics import request_metrics
from bench.scenario import parse_scenario


def cell_records(ttft_s: np.ndarray, e2e_s: float = 1.0, tokens: int = 64, concurrency: int = 1) -> pd.DataFrame:
    """Closed-loop records: `concurrency` streams back to back, one TTFT each."""
    rows = []
    clocks = [0.0] * concurrency
    for index, ttft in enumerate(ttft_s):
        stream = index % concurrency
        sent = clocks[stream]
        end = sent + e2e_s + float(ttft)
        clocks[stream] = end
        first = sent + float(ttft)
        chunks = list(np.linspace(first, end, tokens))
        rows.append({"cell_id": "c", "phase": "measure", "repeat": 0, "surface": "native",
                     "error_class": None, "scheduled_s": sent, "sent_s": sent, "first_token_s": first,
                     "end_s": end, "chunk_times_s": chunks, "output_tokens": tokens,
                     "load_duration_ns": 0, "prompt_eval_duration_ns": int(ttft * 1e9)})
    return pd.DataFrame(rows)


RULE = StopRule(within={"ttft_p95": 0.05, "output_tps": 0.05}, min_requests=20)


def test_steady_cell_meets_the_rule_once_it_has_the_minimum() -> None:
    rng = np.random.default_rng(1)
    steady = 0.2 + rng.normal(0, 0.001, 60)
    assert not judge(cell_records(steady[:10]), RULE, 10.0).met  # under min_requests
    verdict = judge(cell_records(steady[:40]), RULE, 40.0)
    assert verdict.met and verdict.kind == "met"
    assert "stop_when met" in verdict.reason and "ttft_p95 ±" in verdict.reason


def test_noisy_cell_is_not_met_and_says_so_at_its_maximum() -> None:
    rng = np.random.default_rng(2)
    noisy = rng.lognormal(mean=-1.5, sigma=1.0, size=40)
    verdict = final_verdict(cell_records(noisy), RULE, 30.0, "max_requests 40")
    assert not verdict.met and verdict.kind == "max"
    assert verdict.reason.startswith("stop_when not met by the maximum (max_requests 40)")
    deviation = {i.metric: i.deviation for i in verdict.intervals}
    assert deviation["ttft_p95"] > 0.05


def test_percentile_interval_brackets_the_value_and_narrows_with_more_requests() -> None:
    rng = np.random.default_rng(3)
    ttft = rng.gamma(4.0, 0.05, 400)
    widths = []
    for n in (40, 400):
        frame = request_metrics(cell_records(ttft[:n]))
        interval = metric_interval("ttft_p95", frame, 0.95)
        assert interval.lo <= interval.value <= interval.hi
        widths.append(interval.hi - interval.lo)
    assert widths[1] < widths[0]


def test_output_tps_value_is_the_cells_output_tps() -> None:
    frame = cell_records(np.full(30, 0.1), e2e_s=0.5, tokens=50, concurrency=2)
    metrics = request_metrics(frame)
    window_s = float(frame["end_s"].max() - frame["sent_s"].min())
    interval = metric_interval("output_tps", metrics, 0.95)
    assert interval.lo <= interval.value <= interval.hi
    assert interval.value == pytest.approx(30 * 50 / window_s)


def test_tail_percentile_is_not_judged_from_too_few_samples() -> None:
    # Ten samples hold no p95 tail: the interval is unknown, never "tight".
    frame = request_metrics(cell_records(np.full(10, 0.2)))
    assert math.isinf(metric_interval("ttft_p95", frame, 0.95).deviation)


def test_checks_are_spaced_geometrically() -> None:
    counts = [20]
    while counts[-1] < 10_000:
        counts.append(next_check(counts[-1], 20))
    assert len(counts) < 80  # O(log n) evaluations for a 10k-request cell


def test_scenario_stop_when_reads_percent_and_rejects_unknown_metrics() -> None:
    base = "workload: {model: m}\nload: {requests: 100}\n"
    scenario = parse_scenario(base + "stop_when: {within: {ttft_p95: 5%, output_tps: 0.1}, min_requests: 8}\n")
    rule = StopRule.from_scenario(scenario.stop_when)
    assert rule.within == {"ttft_p95": 0.05, "output_tps": 0.1} and rule.min_requests == 8
    with pytest.raises(Exception, match="stop_when.within"):
        parse_scenario(base + "stop_when: {within: {goodput: 5%}}\n")
    with pytest.raises(Exception, match="5 percent"):
        parse_scenario(base + "stop_when: {within: {ttft_p95: 5 percent}}\n")
