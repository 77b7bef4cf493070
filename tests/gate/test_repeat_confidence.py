"""Run-to-run confidence in the gate: with --repeats on both sides, a throughput change must lie
beyond the spread between repeats too (AIPerf's multi-run intervals), not only beyond request noise."""

from __future__ import annotations

import dataclasses

import pytest

from bench.analysis.compare import compare
from bench.analysis.rates import repeat_change_interval
from bench.outputs.gate_tables import format_interval
from tests.gate.gate_samples import make_baseline, make_cell


def _with_repeats(cell, output_tps: list[float]):  # noqa: ANN001, ANN202
    return dataclasses.replace(cell, per_repeat={**cell.per_repeat, "output_tps": output_tps})


def test_welch_interval_of_the_relative_change_of_repeat_means() -> None:
    low, high = repeat_change_interval([100.0, 102.0, 98.0], [90.0, 91.0, 89.0])
    assert low < -0.10 < high < 0  # a 10% drop, an interval that excludes no change
    assert repeat_change_interval([100.0], [90.0, 91.0]) is None  # one repeat: nothing to say


def test_a_drop_within_the_run_to_run_spread_is_not_a_regression() -> None:
    base, current = make_cell(seed=1), make_cell(seed=2, slowdown=1.12)  # ~11% less throughput
    thresholds = {"output_tps": -0.05}
    requests_only = compare(make_baseline(base), make_baseline(current), thresholds).gates[0]
    assert requests_only.verdict == "fail" and requests_only.interval_basis == "requests"
    # The same two cells, but their repeats scattered by ±15% from run to run.
    noisy = compare(make_baseline(_with_repeats(base, [base.aggregates["output_tps"] * f for f in (0.85, 1.0, 1.15)])),
                    make_baseline(_with_repeats(current, [current.aggregates["output_tps"] * f for f in (1.15, 1.0, 0.85)])),
                    thresholds).gates[0]
    assert noisy.verdict != "fail"
    assert noisy.interval_basis == "requests + 3/3 repeats"
    assert noisy.ci_low < requests_only.ci_low and noisy.ci_high > requests_only.ci_high
    assert format_interval(noisy).endswith("(runs 3/3)")


def test_steady_repeats_keep_a_clear_regression_failing() -> None:
    base, current = make_cell(seed=1), make_cell(seed=2, slowdown=1.3)
    steady_base = _with_repeats(base, [base.aggregates["output_tps"] * f for f in (0.995, 1.0, 1.005)])
    steady_current = _with_repeats(current, [current.aggregates["output_tps"] * f for f in (1.005, 1.0, 0.995)])
    gate = compare(make_baseline(steady_base), make_baseline(steady_current), {"output_tps": -0.05}).gates[0]
    assert gate.verdict == "fail" and gate.interval_basis.endswith("repeats")
    assert gate.change == pytest.approx(current.aggregates["output_tps"] / base.aggregates["output_tps"] - 1)
