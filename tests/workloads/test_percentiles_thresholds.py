"""Chosen percentiles with mean and std in the summary; k6-style thresholds that fail the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bench.analysis.metrics import cell_summary, parse_metric_name
from bench.analysis.thresholds import evaluate
from bench.cli import cli
from bench.scenario import parse_scenario, parse_threshold


def requests_with_ttfts(ttfts_s: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "cell_id": "c", "phase": "measure", "repeat": 0, "surface": "native", "error_class": None,
        "scheduled_s": 0.0, "sent_s": [float(i) for i in range(len(ttfts_s))],
        "first_token_s": [i + t for i, t in enumerate(ttfts_s)],
        "end_s": [i + t + 0.1 for i, t in enumerate(ttfts_s)],
        "chunk_times_s": [[i + t] for i, t in enumerate(ttfts_s)], "output_tokens": 1,
    })


def test_chosen_percentiles_get_columns_beside_mean_and_std() -> None:
    ttfts = [0.001 * (i + 1) for i in range(1000)]
    summary = cell_summary(requests_with_ttfts(ttfts), percentiles=[50, 99.9])
    row = summary.loc["c"]
    assert row["ttft_p99.9_s"] == pytest.approx(np.percentile(ttfts, 99.9))
    assert row["ttft_mean_s"] == pytest.approx(np.mean(ttfts))
    assert row["ttft_std_s"] == pytest.approx(np.std(ttfts, ddof=1))
    assert row["ttft_p95_s"] == pytest.approx(np.percentile(ttfts, 95))  # defaults stay
    assert parse_metric_name("ttft_p99.9") == "ttft_p99.9_s"


def test_thresholds_hold_only_when_every_cell_meets_them() -> None:
    summary = pd.DataFrame({"ttft_p95_s": [0.2, 0.7], "error_rate": [0.0, 0.0]},
                           index=pd.Index(["a", "b"], name="cell_id"))
    ttft, errors = evaluate(summary, [parse_threshold("ttft_p95", "<500ms"),
                                      parse_threshold("error_rate", "<1%")], {"b": "c=8"})
    assert not ttft.passed and ttft.broken_cells == 1 and ttft.worst_cell == "c=8"
    assert ttft.line() == "threshold ttft_p95 <500ms: BROKEN (worst 700 ms in c=8, 1 of 2 cells)"
    assert errors.passed
    throughput = evaluate(pd.DataFrame({"output_tps": [120.0, 80.0]}, index=["a", "b"]),
                          [parse_threshold("output_tps", ">100")], {})[0]
    assert not throughput.passed and throughput.worst_value == 80.0


def test_threshold_limits_parse_units_and_bad_ones_are_scenario_errors() -> None:
    assert parse_threshold("ttft_p95", "<= 2s").limit == 2.0
    assert parse_threshold("error_rate", "<1%").limit == pytest.approx(0.01)
    with pytest.raises(Exception, match=r"s.yaml:3: thresholds.ttft_p95: '500ms' is not a limit"):
        parse_scenario("workload: {model: m}\nthresholds:\n  ttft_p95: 500ms\n", "s.yaml")


SCENARIO = """\
workload: {{model: llama3.2:1b, prompt: {{tokens: 32}}, max_tokens: 4}}
load: {{concurrency: 1, requests: 4, warmup_requests: 0}}
thresholds: {{{thresholds}}}
"""


def run(sim, tmp_path: Path, thresholds: str):  # noqa: ANN001, ANN201
    base_url = sim(speed=50.0)
    scenario = tmp_path / "t.yaml"
    scenario.write_text(SCENARIO.format(thresholds=thresholds))
    return CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out",
                                    str(tmp_path / "run"), "--no-report"])


def test_a_broken_threshold_exits_1_with_one_line_per_threshold(sim, tmp_path: Path) -> None:  # noqa: ANN001
    result = run(sim, tmp_path, 'ttft_p95: "<1us", error_rate: "<1%"')
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("threshold ")]
    assert len(lines) == 2
    assert lines[0].startswith("threshold ttft_p95 <1us: BROKEN")
    assert lines[1].startswith("threshold error_rate <1%: ok")


def test_met_thresholds_exit_0(sim, tmp_path: Path) -> None:  # noqa: ANN001
    result = run(sim, tmp_path, 'ttft_p95: "<30s", ttft_p99.9: "<30s", error_rate: "<1%"')
    assert result.exit_code == 0, result.output
    assert sum(line.endswith(")") and ": ok (" in line for line in result.output.splitlines()) == 3


def test_an_unknown_threshold_metric_fails_before_the_run(sim, tmp_path: Path) -> None:  # noqa: ANN001
    result = run(sim, tmp_path, 'ttft_p959: "<1s"')
    assert result.exit_code == 2
    assert "thresholds.ttft_p959: unknown metric" in result.output
    assert not (tmp_path / "run").exists()
