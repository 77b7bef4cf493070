"""bench compare on hand-made samples: verdicts, exit codes, and the three output formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.analysis.compare import compare, parse_gate_options
from bench.outputs.gate_tables import headline, render_table, to_junit_xml, to_markdown
from bench.errors import UsageError
from tests.gate.gate_samples import SETTINGS, make_baseline, make_cell, write_baseline

GATES = ["--max-regression", "ttft_p95=10%", "--max-regression", "tpot_p95=10%",
         "--max-regression", "output_tps=-5%"]


def run_compare(*args: str | Path):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_clear_30_percent_slowdown_is_flagged_with_exit_1(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=1))
    slow = write_baseline(tmp_path / "slow.json", make_cell(seed=2, slowdown=1.3))
    result = run_compare(base, slow, *GATES)
    assert result.exit_code == 1, result.output
    assert "REGRESSION: 3 of 3 gates failed" in result.output
    for metric in ("ttft_p95", "tpot_p95", "output_tps"):
        assert metric in result.output
    assert "✗ REGRESSED" in result.output


def test_identical_distributions_never_flag_a_regression() -> None:
    # 40 independent pairs of draws from one distribution, every default gate.
    for seed in range(40):
        comparison = compare(make_baseline(make_cell(seed=seed)),
                             make_baseline(make_cell(seed=1000 + seed)))
        assert not comparison.regressed, [g for g in comparison.gates if g.verdict == "fail"]


def test_change_within_threshold_is_not_flagged_even_with_many_samples() -> None:
    comparison = compare(make_baseline(make_cell(seed=3, n=400)),
                         make_baseline(make_cell(seed=4, n=400, slowdown=1.05)),
                         {"ttft_p95": 0.10, "tpot_p95": 0.10, "output_tps": -0.10})
    assert not comparison.regressed


def test_significant_but_small_change_is_reported_and_not_flagged() -> None:
    comparison = compare(make_baseline(make_cell(seed=5, n=3000)),
                         make_baseline(make_cell(seed=6, n=3000, slowdown=1.05)),
                         {"tpot_p50": 0.10})
    (gate,) = comparison.gates
    assert gate.ci_low > 0.0  # clearly slower...
    assert gate.ci_high < 0.10 and gate.verdict == "pass"  # ...but well within the 10% allowed


def test_point_estimate_beyond_threshold_with_wide_interval_is_a_warning_not_a_failure() -> None:
    comparison = compare(make_baseline(make_cell(seed=7, n=12)),
                         make_baseline(make_cell(seed=8, n=12, slowdown=1.14)), {"ttft_p50": 0.10})
    (gate,) = comparison.gates
    assert gate.change > 0.10 and gate.ci_low < 0.10
    assert gate.verdict == "warn" and not comparison.regressed


def test_six_requests_per_side_get_no_verdict_however_large_the_change() -> None:
    # Issue 16: two back-to-back 6-request runs were called a regression on ttft_p95.
    comparison = compare(make_baseline(make_cell(seed=11, n=6)),
                         make_baseline(make_cell(seed=12, n=6, slowdown=1.5)),
                         {"ttft_p95": 0.10, "output_tps": -0.05, "ttft_p50": 0.10})
    assert not comparison.regressed
    assert [gate.verdict for gate in comparison.gates] == ["skip"] * 3
    by_metric = {gate.metric: gate for gate in comparison.gates}
    assert by_metric["ttft_p95"].note == "not enough samples (n=6, needs ≥40)"
    assert by_metric["output_tps"].note == "not enough samples (n=6, needs ≥10)"
    assert by_metric["ttft_p95"].change > 0.3  # the change is still shown, with no verdict
    assert headline(comparison).startswith("no verdict")


def test_forty_requests_per_side_judge_a_p95() -> None:
    comparison = compare(make_baseline(make_cell(seed=13, n=40)),
                         make_baseline(make_cell(seed=14, n=40, slowdown=1.5)), {"ttft_p95": 0.10})
    assert comparison.regressed and comparison.gates[0].baseline_n == 40


def test_table_shows_n_and_explains_itself_without_a_p_value() -> None:
    from rich.console import Console

    comparison = compare(make_baseline(make_cell(seed=15, n=60)),
                         make_baseline(make_cell(seed=16, n=50)), {"ttft_p95": 0.10})
    console = Console(width=300, record=True)
    console.print(render_table(comparison))
    text = console.export_text()
    assert "60 / 50" in text and " p " not in text.split("\n")[2]
    assert "No p value" in text and "scipy.stats.bootstrap" in text
    markdown = to_markdown(comparison)
    assert "| n |" in markdown and "60 / 50" in markdown and "No p value" in markdown


def test_throughput_drop_is_flagged_and_throughput_gain_is_not() -> None:
    base = make_baseline(make_cell(seed=9))
    slower = compare(base, make_baseline(make_cell(seed=10, slowdown=1.3)), {"output_tps": -0.05})
    faster = compare(base, make_baseline(make_cell(seed=10, slowdown=0.7)), {"output_tps": -0.05})
    assert slower.regressed and slower.gates[0].change == pytest.approx(1 / 1.3 - 1, abs=0.03)
    assert not faster.regressed and faster.gates[0].change > 0.3


def test_error_rate_jump_is_flagged_in_percentage_points() -> None:
    comparison = compare(make_baseline(make_cell(seed=11)),
                         make_baseline(make_cell(seed=12, errors=20)), {"error_rate": 0.01})
    (gate,) = comparison.gates
    assert gate.change == pytest.approx(0.25) and gate.verdict == "fail"


def test_cells_match_by_settings_not_by_request_count(tmp_path: Path) -> None:
    fewer = {**SETTINGS, "requests": 30, "warmup_requests": 0}
    base = write_baseline(tmp_path / "base.json", make_cell(seed=13))
    current = write_baseline(tmp_path / "cur.json", make_cell(seed=14, n=30, settings=fewer))
    assert run_compare(base, current, *GATES).exit_code == 0


def test_unmatched_cell_is_an_error_naming_its_settings(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=15),
                          make_cell(seed=16, settings={**SETTINGS, "concurrency": 4}))
    current = write_baseline(tmp_path / "cur.json", make_cell(seed=17),
                             make_cell(seed=18, settings={**SETTINGS, "concurrency": 8}))
    result = run_compare(base, current)
    assert result.exit_code == 2
    assert "baseline cell" in result.output and "concurrency=4" in result.output
    assert "has no match" in result.output and "concurrency 4 vs 8" in result.output
    assert "Traceback" not in result.output


def test_extra_cell_in_current_is_an_error_too(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=19))
    current = write_baseline(tmp_path / "cur.json", make_cell(seed=20),
                             make_cell(seed=21, settings={**SETTINGS, "model": "llama3.2:1b"}))
    result = run_compare(base, current)
    assert result.exit_code == 2 and "current cell" in result.output


def test_unknown_metric_is_a_usage_error_listing_valid_names(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=22))
    result = run_compare(base, base, "--max-regression", "ttft_p97=10%")
    assert result.exit_code == 2
    assert "unknown metric 'ttft_p97'" in result.output and "ttft_p95" in result.output


@pytest.mark.parametrize("option, message", [
    ("output_tps=5%", "write output_tps=-5%"),
    ("ttft_p95=-10%", "write ttft_p95=10%"),
    ("ttft_p95=fast", "expected a percentage"),
    ("ttft_p95", "expected METRIC=PCT"),
    ("queue_wait_p95=10%", "cannot be gated"),
])
def test_malformed_thresholds_are_rejected_with_a_hint(option: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_gate_options([option])


def test_junit_xml_has_one_testcase_per_gate_and_failures_for_regressions(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=23))
    slow = write_baseline(tmp_path / "slow.json", make_cell(seed=24, slowdown=1.3))
    junit = tmp_path / "gate.xml"
    result = run_compare(base, slow, "--max-regression", "tpot_p95=10%",
                         "--max-regression", "error_rate=1%", "--junit", junit)
    assert result.exit_code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["tpot_p95"].find("failure") is not None
    assert "allowed +10%" in cases["tpot_p95"].find("failure").get("message")
    assert cases["error_rate"].find("failure") is None


def test_markdown_report_is_a_table_that_marks_regressions(tmp_path: Path) -> None:
    base = write_baseline(tmp_path / "base.json", make_cell(seed=25))
    slow = write_baseline(tmp_path / "slow.json", make_cell(seed=26, slowdown=1.3))
    markdown = tmp_path / "summary.md"
    assert run_compare(base, slow, *GATES, "--markdown", markdown).exit_code == 1
    text = markdown.read_text()
    assert text.startswith("## ❌ bench compare: REGRESSION")
    rows = [line for line in text.splitlines() if line.startswith("| ✗")]
    assert len(rows) == 3 and all(row.count("|") == 11 for row in rows)
    assert "| **tpot_p95** |" in text


def test_outputs_of_a_clean_comparison_say_so() -> None:
    comparison = compare(make_baseline(make_cell(seed=27)), make_baseline(make_cell(seed=28)))
    assert to_markdown(comparison).startswith("## ✅ bench compare: no regression")
    assert 'failures="0"' in to_junit_xml(comparison)


def test_same_inputs_give_the_same_intervals() -> None:
    first = compare(make_baseline(make_cell(seed=29)), make_baseline(make_cell(seed=30)))
    second = compare(make_baseline(make_cell(seed=29)), make_baseline(make_cell(seed=30)))
    assert [(g.ci_low, g.ci_high) for g in first.gates] == [(g.ci_low, g.ci_high) for g in second.gates]
    assert all(np.isfinite(g.ci_low) for g in first.gates)


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "something-else"}', "not a bench baseline"),
    ('{"format": "bench-baseline", "format_version": 99, "cells": []}', "format_version 99"),
    ('{"format": "bench-baseline", "format_version": 1, "cells": [{"cell_id": "x"}]}',
     "missing field"),
])
def test_unreadable_baseline_is_a_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = run_compare(bad, bad)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_baseline_path_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_compare(tmp_path / "nope.json", tmp_path / "nope2")
    assert result.exit_code == 2 and "no such baseline file or run directory" in result.output
