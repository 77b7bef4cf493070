"""`bench report` analyses each run once (bench.analysis.run_analysis): one cell summary and at
most one NUM_PARALLEL recommendation per run, none when `bench recommend --write` stored one; the
sections only format what that analysis holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bench.analysis import metrics, recommend
from bench.cli import cli


def _counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    """Counts the calls of `module.name`, which every caller reaches through the module (a global
    lookup at call time): recommend() through sweep_cells, cell_summary through _slo_columns."""
    calls: list[int] = []
    original = getattr(module, name)

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counting)
    return calls


def _report(run_dir: Path) -> str:
    result = CliRunner().invoke(cli, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    return (run_dir / "report.html").read_text(encoding="utf-8")


def test_a_sweep_report_recommends_and_summarises_once(make_run: Callable[..., Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = make_run(sweep=True, surfaces=("native",), concurrencies=(1, 2, 4), rejected_at=None,
                       slos={"ttft_p95": "2s"})
    recommendations = _counted(monkeypatch, recommend, "sweep_cells")
    summaries = _counted(monkeypatch, metrics, "_slo_columns")
    page = _report(run_dir)
    assert "computed by the report from the scenario&#39;s SLOs" in page
    assert "recommended OLLAMA_NUM_PARALLEL=" in page  # the answer box, the candidates table, the sweep marks
    assert len(recommendations) == 1
    assert len(summaries) == 1


def test_a_stored_recommendation_is_read_not_recomputed(make_run: Callable[..., Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = make_run(sweep=True, recommendation=True, surfaces=("native",), concurrencies=(1, 2, 4),
                       rejected_at=None)
    recommendations = _counted(monkeypatch, recommend, "sweep_cells")
    page = _report(run_dir)
    assert "stored by bench recommend (recommendation.json)" in page
    assert "Recommended OLLAMA_NUM_PARALLEL=2: 321.5 output tok/s at concurrency 2." in page
    assert len(recommendations) == 0


def test_a_stored_recommendation_reads_back_typed() -> None:
    from bench.analysis.run_analysis import stored_recommendation

    read = stored_recommendation({"num_parallel": 4, "slos": {"ttft_p95": 0.5, "output_tps": 100},
                                  "candidates": [{"num_parallel": 4, "output_tps": None, "fits_in_gpu": "?",
                                                  "outcome": "chosen"}], "verdict": "recommended 4"})
    assert read.num_parallel == 4 and read.verdict == "recommended 4"
    assert [(slo.metric, slo.threshold) for slo in read.slos] == [("ttft_p95", 0.5), ("output_tps", 100.0)]
    candidate = read.candidates[0]
    assert candidate.outcome == "chosen" and candidate.fits_in_gpu is None and candidate.output_tps != candidate.output_tps


def test_prompts_the_server_cut_to_fit_the_context_are_noted(make_run: Callable[..., Path]) -> None:
    """Cells planned with 6,000-token prompts whose server counted 512: the analysis reads the
    planned length from the typed cell settings (an integer), so the note appears."""
    run_dir = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None,
                       extra_settings={"prompt_tokens": 6000})
    page = _report(run_dir)
    assert "Prompts cut to fit the context" in page
    assert "6,000" in page or "6000" in page


def test_prompts_the_server_counted_whole_get_no_note(make_run: Callable[..., Path]) -> None:
    run_dir = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None)
    assert "Prompts cut to fit the context" not in _report(run_dir)
