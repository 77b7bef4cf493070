"""The report's answer box says 'provisional' when the stored recommendation is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from bench.cli import cli
from bench.records import RECOMMENDATION_JSON, read_json, write_json


def test_a_provisional_recommendation_is_a_warning_box_that_says_so(make_run: Callable[..., Path]) -> None:
    # Two cells are all the stored recommendation names (its chosen cell is the second).
    run_dir = make_run(recommendation=True, surfaces=("native",), concurrencies=(1, 2), rejected_at=None)
    payload = read_json(run_dir / RECOMMENDATION_JSON)
    payload.update(provisional=True, verdict="provisional (n=8 where ttft_p95 needs ≥40: rerun with more "
                                              "requests per cell): recommended OLLAMA_NUM_PARALLEL=2")
    write_json(run_dir / RECOMMENDATION_JSON, payload)
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report.html").read_text()
    assert '<p class="note warning">Provisional (n=8 where ttft_p95 needs ≥40' in page
