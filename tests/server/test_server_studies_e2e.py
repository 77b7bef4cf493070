"""End to end against managed `bench sim` servers: a NUM_PARALLEL sweep and `bench recommend`,
503s only while a model loads, cold loads only after gaps longer than keep_alive."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli
from bench.analysis.metrics import cell_summary
from bench.records import load_run
from bench.analysis.server_studies import keep_alive_study, queue_study

pytestmark = pytest.mark.e2e


def run_scenario_cli(tmp_path: Path, scenario: dict) -> tuple[Path, str]:
    """`bench run` of the scenario: the run directory and what the command printed."""
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out), "--no-report"])
    assert result.exit_code == 0, result.output
    return out, result.output


def run_scenario_file(tmp_path: Path, scenario: dict) -> Path:
    return run_scenario_cli(tmp_path, scenario)[0]


def sim_server(speed: float, env: dict, *extra: str) -> dict:
    return {"command": [sys.executable, "-m", "bench", "sim", "--speed", str(speed), *extra], "env": env,
            "ready_timeout_s": 60}


def test_num_parallel_sweep_grows_then_flattens_and_recommend_picks_the_largest_that_fits(tmp_path: Path) -> None:
    # 5 GiB of GPU: llama3.2:1b at num_ctx 16384 fits with NUM_PARALLEL 4 (weights 0.97 GiB + KV 2 GiB
    # + compute 0.5 GiB within llama-server's 1 GiB fit margin), spills with 8 (KV 4 GiB).
    run_dir, printed = run_scenario_cli(tmp_path, {
        "name": "np-sweep",
        "server": sim_server(1, {"OLLAMA_NUM_PARALLEL": [1, 2, 4, 8], "OLLAMA_KEEP_ALIVE": "-1"},
                             "--gpu-memory", "5GiB"),
        "workload": {"endpoint": "native/chat", "model": "llama3.2:1b", "num_ctx": 16384,
                     "prompt": {"tokens": 64}, "max_tokens": 32},
        "load": {"concurrency": [4, 8], "requests": 8, "warmup_requests": 1},
    })
    # `bench run` of a NUM_PARALLEL sweep ends with the answer (8 requests per cell: provisional).
    answer = printed[printed.index("OLLAMA_NUM_PARALLEL: the best cell of each setting"):]
    assert "recommended OLLAMA_NUM_PARALLEL=4" in answer and "provisional (n=" in answer
    assert "NP=8:" in answer and "spills to CPU" in answer
    run = load_run(run_dir)
    summary = cell_summary(run.requests).join(run.cells.set_index("cell_id")[["OLLAMA_NUM_PARALLEL", "concurrency"]])
    tps = summary.set_index(["OLLAMA_NUM_PARALLEL", "concurrency"])["output_tps"]
    ttft = summary.set_index(["OLLAMA_NUM_PARALLEL", "concurrency"])["ttft_p50_s"]
    assert tps["2", 4] > 1.3 * tps["1", 4] and tps["4", 4] > 1.3 * tps["2", 4]  # grows with slots
    assert abs(tps["4", 8] - tps["4", 4]) < 0.3 * tps["4", 4]  # past NUM_PARALLEL: flat...
    assert ttft["4", 8] > 1.5 * ttft["4", 4]  # ...and requests queue

    # Before `bench recommend`, the report works the answer out itself (no SLOs in this scenario).
    report = CliRunner().invoke(cli, ["report", str(run_dir), "--out", str(run_dir / "report.html")])
    assert report.exit_code == 0, report.output
    html = (run_dir / "report.html").read_text()
    # 8 requests per cell: fewer than a p95 needs, so the answer says it is provisional.
    assert "Provisional (n=" in html and "recommended OLLAMA_NUM_PARALLEL=4" in html and "computed by the report" in html

    # A what-if (no --write) leaves the run as it was, and says so; exit 1: no setting meets 1 ms.
    before = html
    what_if = CliRunner().invoke(cli, ["recommend", str(run_dir), "--slo", "ttft_p95=1ms"])
    assert what_if.exit_code == 1, what_if.output
    assert "no OLLAMA_NUM_PARALLEL setting" in what_if.output and "what-if only" in what_if.output
    assert not (run_dir / "recommendation.json").exists()
    assert (run_dir / "report.html").read_text() == before

    result = CliRunner().invoke(cli, ["recommend", str(run_dir), "--slo", "ttft_p95=2s", "--slo", "tpot_p95=100ms",
                                      "--write"])
    assert result.exit_code == 0, result.output
    html = (run_dir / "report.html").read_text()  # bench recommend --write redrew the run's report
    assert "stored by bench recommend" in html and "tpot_p95 ≤ 100 ms" in html
    # The per-cell SLO column judges by the same stored SLOs as the answer (one source).
    assert ">SLOs<" in html
    stored = json.loads((run_dir / "recommendation.json").read_text())
    assert stored["num_parallel"] == 4
    assert stored["memory_checked"] is True
    by_setting = {c["num_parallel"]: c for c in stored["candidates"]}
    assert by_setting[8]["fits_in_gpu"] is False and "spills to CPU" in by_setting[8]["reason"]
    assert "lower throughput" in by_setting[1]["reason"]
    assert "recommended OLLAMA_NUM_PARALLEL=4" in result.output


def test_recommend_on_a_run_without_a_sweep_is_a_one_line_error(tmp_path: Path) -> None:
    run_dir, printed = run_scenario_cli(tmp_path, {
        "name": "no-sweep", "server": sim_server(20, {}),
        "workload": {"model": "qwen2.5:0.5b", "max_tokens": 4, "prompt": {"tokens": 16}},
        "load": {"requests": 2, "warmup_requests": 0},
    })
    assert "OLLAMA_NUM_PARALLEL: the best cell" not in printed  # no NUM_PARALLEL axis, no answer block
    result = CliRunner().invoke(cli, ["recommend", str(run_dir)])
    assert result.exit_code == 2
    assert "not a NUM_PARALLEL sweep" in result.output
    assert not (run_dir / "recommendation.json").exists()


def test_503s_come_only_from_bursts_against_a_cold_or_reloading_model(tmp_path: Path) -> None:
    # Speed 2, not 5: a warm request reads as a load when its load_duration passes 100 ms / speed of
    # wall time, so at speed 5 a 20 ms stall of the sim process on a busy host made a warm cell "cold".
    run_dir = run_scenario_file(tmp_path, {
        "name": "queue",
        "server": sim_server(2, {"OLLAMA_MAX_QUEUE": "2", "OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "-1"}),
        "workload": {"endpoint": "native/chat", "model": "llama3.1:8b", "num_ctx": [2048, 4096],
                     "prompt": {"tokens": 64, "calibrate": False}, "max_tokens": 8},
        "load": {"concurrency": [12, 13], "requests": 12, "warmup_requests": 0},
    })
    cells = queue_study(load_run(run_dir))
    assert [(c.model_state, c.offered_concurrency) for c in cells] == [
        ("cold", 12), ("warm", 13), ("reload", 12), ("warm", 13)]
    for cell in cells:
        if cell.model_state == "warm":
            assert cell.rejected == 0, cell.verdict
        elif cell.model_state == "cold":
            # Ollama v0.33 (sched.go processPending): the load blocks the scheduler until the runner
            # is healthy, so a burst of 12 serves MAX_QUEUE 2 + the one being loaded for.
            assert cell.rejected == 9 and cell.rejected_while_loading == 9, cell.verdict
        else:
            # A reload: the first request expires the old runner and waits for its unload, then
            # loads (both block the scheduler): again MAX_QUEUE + 1 served.
            assert cell.rejected == 9 and cell.rejected_while_loading == cell.rejected, cell.verdict
            assert "all during the model" in cell.verdict and "nothing was rejected" in cell.verdict


def test_cold_loads_only_after_gaps_longer_than_keep_alive(tmp_path: Path) -> None:
    # Speed 4: keep_alive 4s (simulated) lasts 1 s of wall time; gaps 0.3 s and 2 s straddle it.
    run_dir = run_scenario_file(tmp_path, {
        "name": "keep-alive",
        "server": sim_server(4, {"OLLAMA_KEEP_ALIVE": "2m"}),
        "workload": {"endpoint": ["native/chat", "openai/chat"], "model": "qwen2.5:0.5b", "keep_alive": "4s",
                     "prompt": {"tokens": 32}, "max_tokens": 8},
        "load": {"concurrency": 1, "requests": 2, "warmup_requests": 0},
        "pace": {"gap_s": [0.3, 2.0]},
    })
    study = keep_alive_study(load_run(run_dir))
    timeline = study.requests
    cells = {(c.surface, c.gap_s): c for c in study.cells}
    # Native honours keep_alive 4s: cold after the long gap only (the short one stays warm).
    assert cells["native", 2.0].cold_requests == 1 and cells["native", 0.3].cold_requests == 0
    # The OpenAI surface ignores keep_alive in the body and leaves it unset, so the runner keeps the
    # last explicit value, the native cells' 4s (useLoadedRunner): cold again after the long gap,
    # although the server's OLLAMA_KEEP_ALIVE is 2m.
    assert cells["openai", 0.3].cold_requests == 0 and cells["openai", 2.0].cold_requests == 1
    assert all(timeline["cold"] == timeline["expected_cold"].fillna(timeline["cold"]))
    assert study.cold_penalty_s > 0
