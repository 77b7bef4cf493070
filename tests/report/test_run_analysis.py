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
    """Cells planned with 6,000-token prompts whose server counted 512: the note appears (the
    planned length read from the typed cell settings)."""
    run_dir = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None,
                       extra_settings={"prompt_tokens": 6000})
    page = _report(run_dir)
    assert "Prompts cut to fit the context" in page
    assert "6,000" in page or "6000" in page


def test_prompts_the_server_counted_whole_get_no_note(make_run: Callable[..., Path]) -> None:
    run_dir = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None)
    assert "Prompts cut to fit the context" not in _report(run_dir)


def test_the_report_and_the_end_of_run_warnings_render_the_analysis_without_redoing_it(
        make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Saturation, the GPU fit per cell, the recommendation and the cell summary are found once, in
    analyse_run; rendering the page (and the saturation lines `bench run` prints) only reads them."""
    from bench.analysis import gpu_fit, saturation, sweep
    from bench.analysis.run_analysis import analyse_run
    from bench.records import load_run
    from bench.report import render_report
    from bench.run.finish import _found_without_analysis

    run_dir = make_run(sweep=True, spill=True, surfaces=("native",), concurrencies=(1, 2, 4), rejected_at=None,
                       slos={"ttft_p95": "2s"})
    analysis = analyse_run(load_run(run_dir))
    assert analysis.gpu_fit and set(analysis.gpu_fit.values()) == {False}
    # What `bench run` prints without an analysis (a partial run with --no-report) says the same.
    assert _found_without_analysis(analysis.manifest, analysis.summary) == (analysis.saturations, analysis.sweeps)

    def analysed_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("analysis at render time")

    for module, name in ((saturation, "find_saturation"), (saturation, "run_saturations"), (gpu_fit, "memory_fit"),
                         (gpu_fit, "memory_fits"), (recommend, "recommend"), (metrics, "cell_summary"),
                         (sweep, "sweep_results"), (sweep, "run_sweeps")):
        monkeypatch.setattr(module, name, analysed_again)
    page = render_report([analysis])
    assert "CPU spill" in page and "offer more load" not in page  # the fit per cell, found once


def test_recommend_write_summarises_the_run_once_and_redraws_its_report(make_run: Callable[..., Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = make_run(sweep=True, surfaces=("native",), concurrencies=(1, 2, 4), rejected_at=None)
    assert "stored by bench recommend" not in _report(run_dir)
    recommendations = _counted(monkeypatch, recommend, "sweep_cells")
    summaries = _counted(monkeypatch, metrics, "_slo_columns")
    result = CliRunner().invoke(cli, ["recommend", str(run_dir), "--slo", "ttft_p95=2s", "--write"])
    assert result.exit_code == 0, result.output
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "stored by bench recommend (recommendation.json)" in page and "SLOs: ttft_p95 ≤ 2000 ms" in page
    assert len(recommendations) == 1
    assert len(summaries) == 1


def test_the_gate_of_bench_run_baseline_compares_the_run_in_hand_as_compare_reads_it_from_disk(
        make_run: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.analysis import baseline
    from bench.analysis.run_analysis import analyse_run
    from bench.cli.run_cmd import GATES_MARKDOWN, gate_run
    from bench.records import load_run

    base = make_run(run_id="base", requests_per_cell=40)
    current = make_run(run_id="next", requests_per_cell=40, speed_factor=1.5)
    regressed = gate_run(base, current)  # as `bench compare BASE NEXT` reads both from disk
    gates = (current / GATES_MARKDOWN).read_text(encoding="utf-8")
    analysis = analyse_run(load_run(current))
    from_disk = baseline.baseline_from_run

    def only_the_baseline(path: Any) -> Any:
        assert Path(path) != current, "the finished run loaded again"
        return from_disk(path)

    monkeypatch.setattr(baseline, "baseline_from_run", only_the_baseline)
    (current / GATES_MARKDOWN).unlink()
    assert gate_run(base, current, analysis) is regressed is True
    assert (current / GATES_MARKDOWN).read_text(encoding="utf-8") == gates
