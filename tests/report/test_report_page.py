"""The HTML report of stored runs: sections present exactly when the run has data, warnings, escaping."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.records import load_run
from bench.report import render_report, write_report

SCRIPT = "<script>window.__pwned=1</script>"
ALL_SECTIONS = ["answer", "throughput", "latency", "statistics", "errors", "timeline", "keepalive", "memory", "surfaces", "environment"]


def section_ids(html: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', html)


def report_of(*run_dirs: Path, out: Path | None = None) -> str:
    out = out or run_dirs[0] / "report.html"
    return write_report(list(run_dirs), out).read_text(encoding="utf-8")


def test_full_run_shows_every_section_in_order(shared_report: Callable[[str], Path]) -> None:
    html = shared_report("full").read_text(encoding="utf-8")  # gpu, ps, kv and recommendation
    assert section_ids(html) == ALL_SECTIONS
    assert html.count("<svg ") >= 10 and "<img " not in html  # plots are inline SVG
    assert "KV cache bytes per token of context" in html
    assert "Recommended OLLAMA_NUM_PARALLEL=2" in html
    assert "Where the 503s came from" in html


def test_sections_without_data_are_left_out(make_run: Callable[..., Path]) -> None:
    run = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None, cold_measured=False,
                   requests_per_cell=40)
    html = report_of(run)
    assert section_ids(html) == ["answer", "throughput", "latency", "statistics", "timeline", "environment"]
    assert "No warnings" in html


def test_run_with_only_errors_reports_them_without_latency(make_run: Callable[..., Path]) -> None:
    html = report_of(make_run(only_errors=True, cold_measured=False))
    assert section_ids(html) == ["answer", "errors", "timeline", "environment"]
    assert "client_error" in html and "404" in html
    assert "not found, try pulling it first" in html


def test_run_without_requests_still_gives_a_page(make_run: Callable[..., Path]) -> None:
    run = make_run(requests_per_cell=0, surfaces=("native",), concurrencies=(1,), rejected_at=None,
                   cold_measured=False)
    (run / "requests.jsonl").write_bytes(b"")
    html = report_of(run)
    assert section_ids(html)[0] == "answer" and section_ids(html)[-1] == "environment"
    assert "No measured request was recorded" in html


def test_warnings_name_saturation_rejections_spill_cold_loads_and_partial_runs(make_run: Callable[..., Path]) -> None:
    html = report_of(make_run(saturated=True, spill=True, status="partial"))
    answer = html.split('<section id="answer">')[1].split("</section>")[0]
    assert "client was saturated" in answer
    assert "rejected with 503" in answer
    assert "CPU spill" in answer and "41% on CPU" in answer
    assert "paid a model load" in answer and "native/chat c=1 (1)" in answer
    assert "The run is partial: 1 cell(s) did not complete" in answer


def test_script_from_server_and_scenario_is_escaped(make_run: Callable[..., Path]) -> None:
    run = make_run(model=SCRIPT, scenario_name=SCRIPT, error_message=f"model {SCRIPT} failed",
                   ps=True, gpu=True)
    html = report_of(run)
    # The page carries no script of its own, so any '<script' would be injected markup.
    assert "<script" not in html.lower()
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    title = re.search(r"<title>(.*?)</title>", html, re.S)
    assert title is not None and "&lt;script&gt;" in title.group(1)


def test_page_fetches_nothing_from_the_network(shared_report: Callable[[str], Path]) -> None:
    html = shared_report("full").read_text(encoding="utf-8")  # every section: every kind of figure and table
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith(("data:", "#")) for s in sources)
    assert "default-src 'none'" in html


def test_comparison_labels_runs_and_compares_matching_cells(make_run: Callable[..., Path], tmp_path: Path) -> None:
    baseline = make_run(run_id="baseline-run")
    current = make_run(run_id="current-run", speed_factor=0.5)
    html = report_of(baseline, current, out=tmp_path / "compare.html")
    assert "baseline-run (baseline) against current-run" in html
    assert "current-run against the baseline baseline-run" in html
    # TTFT halves (minus fixed overheads): the change column shows a large improvement.
    assert re.search(r"-[3-6]\d\.\d%", html)
    assert section_ids(html)[:3] == ["answer", "throughput", "latency"]


def test_same_run_twice_gets_distinct_labels(make_run: Callable[..., Path], tmp_path: Path) -> None:
    first = make_run(run_id="same", surfaces=("native",), concurrencies=(1,), rejected_at=None, cold_measured=False)
    second = tmp_path / "copy-of-same"
    shutil.copytree(first, second)
    html = report_of(first, second, out=tmp_path / "compare.html")
    assert "same (baseline) against same (2)" in html


def test_cli_writes_the_report_and_reports_a_missing_run_in_one_line(make_run: Callable[..., Path],
                                                                      tmp_path: Path) -> None:
    # One cell: the command's plumbing (path, default path, one-line error), not the page's content.
    run = make_run(surfaces=("native",), concurrencies=(1,), rejected_at=None, cold_measured=False)
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["report", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.output and out.stat().st_size > 10_000
    default = CliRunner().invoke(cli, ["report", str(run)])
    assert default.exit_code == 0 and (run / "report.html").exists()
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "not a run directory" in missing.output and "Traceback" not in missing.output


def test_a_sweep_without_bench_recommend_still_answers_which_num_parallel(make_run: Callable[..., Path]) -> None:
    run = make_run(sweep=True, surfaces=("native",), rejected_at=None, cold_measured=False,
                   slos={"ttft_p95": "1s"})
    html = render_report([load_run(run)])
    # 8 requests per cell, where ttft_p95 needs 40: the answer is given, and called provisional.
    assert "Provisional (n=8 where ttft_p95 needs ≥40" in html and "recommended OLLAMA_NUM_PARALLEL=4" in html
    assert "computed by the report from the scenario&#39;s SLOs" in html
    assert "Four charts against NUM_PARALLEL" in html  # throughput, latency and memory against the setting


def test_the_answer_says_which_cells_meet_the_scenarios_slos(make_run: Callable[..., Path]) -> None:
    run = make_run(rejected_at=None, cold_measured=False, slos={"ttft_p95": "200ms"})
    html = render_report([load_run(run)])
    # TTFT is 150, 180 and 240 ms at concurrency 1, 2 and 4 on both surfaces.
    assert "4 of 6 cells meet the SLOs (ttft_p95 ≤ 200ms)" in html
    assert "misses ttft_p95" in html
    # 8 requests per cell where a p95 needs 40: the SLO verdict says what it rests on.
    assert "Provisional: n=8 where ttft_p95 needs ≥40." in html


@pytest.mark.filterwarnings("error::UserWarning")  # matplotlib's "layout collapsed": a plot drawn wrong
def test_a_failed_sweep_still_reports_what_it_measured_and_names_the_cells_it_did_not(
        make_run: Callable[..., Path]) -> None:
    # A NUM_PARALLEL sweep that failed after its first cell: later cells have no record at all.
    run = make_run(sweep=True, status="failed", surfaces=("native",), rejected_at=None)
    first_cell = load_run(run).cells["cell_id"].iloc[0]
    kept = [line for line in (run / "requests.jsonl").read_text().splitlines() if first_cell in line]
    (run / "requests.jsonl").write_text("\n".join(kept) + "\n")
    html = report_of(run)
    assert section_ids(html)[0] == "answer" and "environment" in section_ids(html)
    assert "2 cell(s) have no measured request" in html
    assert "The run is failed" in html


def test_a_run_whose_server_never_started_still_reports(make_run: Callable[..., Path]) -> None:
    run = make_run(sweep=True, status="failed", surfaces=("native",), rejected_at=None)
    (run / "requests.jsonl").write_bytes(b"")
    html = report_of(run)
    assert "No measured request was recorded" in html


def test_quick_cells_warn_about_fewer_requests_than_concurrency_and_thin_percentiles(
        make_run: Callable[..., Path]) -> None:
    # `bench run --quick`: 4 requests per cell, here at concurrency 8.
    run = make_run(surfaces=("native",), concurrencies=(8,), rejected_at=None, cold_measured=False,
                   requests_per_cell=4)
    answer = report_of(run).split('<section id="answer">')[1].split("</section>")[0]
    assert "No warnings" not in answer
    assert "fewer requests than their concurrency" in answer and "4 at concurrency 8" in answer
    assert "fewer than 40 successful requests" in answer and "not enough samples" in answer


def test_environment_names_the_simulated_gpu_and_the_simulators_speed(make_run: Callable[..., Path]) -> None:
    import json

    run = make_run(surfaces=("native",), concurrencies=(1,), ps=True)
    (run / "server-0.log").write_text("bench sim listening on http://127.0.0.1:5 (Ollama 0.33.0, engine simulated, "
                                      "gpu L4 22.5 GiB, NUM_PARALLEL=2, speed x10)\n")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["servers"][0]["command"] = ["/usr/bin/python3", "-m", "bench", "sim", "--speed", "10", "--gpu", "l4",
                                         "--gpu-memory", "24GiB"]
    manifest["target"]["kind"] = "managed"
    (run / "manifest.json").write_text(json.dumps(manifest))
    html = report_of(run)
    from bench.records import load_run as load
    from bench.analysis.run_analysis import analyse_run
    from bench.report.data import build_view, gpu_capacity

    assert gpu_capacity(build_view(analyse_run(load(run)), "r")) == (22.5 * 2**30, "simulated L4: 22.5 GiB")
    environment = html.split('<section id="environment">')[1]
    assert "simulated l4 (24GiB)" in environment and "GPU none" not in environment
    assert "×10" in environment


def test_report_says_what_its_figures_rest_on(make_run: Callable[..., Path], tmp_path: Path) -> None:
    html = report_of(make_run(gpu=True, ps=True, surfaces=("native", "openai"), rejected_at=None))
    # Throughput still rose at the highest concurrency of this run: the report says saturation was not reached.
    assert "Saturation was not reached" in html
    # The throughput band is labelled as a spread over time, not passed off as an interval.
    assert "a spread, not a confidence interval" in html
    # The TTFT split does not call TTFT − load − prefill a queue wait.
    assert "first decode step" in html and "queue wait = TTFT" not in html
    # Native against OpenAI: n and an interval per difference.
    surfaces = html.split('<section id="surfaces">')[1].split("</section>")[0]
    assert "n (native / OpenAI)" in surfaces and ("n too small" in surfaces or "]%" in surfaces)


def test_comparison_opens_with_gate_verdicts_n_and_intervals(make_run: Callable[..., Path], tmp_path: Path) -> None:
    baseline = make_run(run_id="base", requests_per_cell=40)
    current = make_run(run_id="next", requests_per_cell=40, speed_factor=1.5)
    answer = report_of(baseline, current, out=tmp_path / "compare.html").split('<section id="answer">')[1]
    first = answer.split("Headline figures per cell</caption>")[0]
    assert "next against the baseline base: REGRESSION" in first
    assert "95% CI" in first and "n (base / current)" in first and "REGRESSED" in first
    assert "No p value" in first
