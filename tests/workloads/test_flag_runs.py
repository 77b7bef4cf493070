"""Flag-only runs: `bench run --model M ...` without a file, and the scenario.yaml that reruns it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli
from bench.plan import plan_cells
from bench.records import load_run
from bench.scenario import flag_scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]

QUICKSTART_FLAGS = ["--model", "llama3.2:1b", "--endpoint", "native/chat,openai/chat",
                    "--prompt-tokens", "4096", "--max-tokens", "32", "--temperature", "0",
                    "--seed", "42", "--concurrency", "1,2,4,8", "--requests", "40",
                    "--warmup", "2"]


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_flags_alone_plan_the_quickstarts_cells() -> None:
    from bench.cli.run_cmd import run_command

    context = run_command.make_context("run", ["--target", "sim", *QUICKSTART_FLAGS])
    params = dict(context.params)
    flags = {name: params[name] for name in (
        "model", "endpoint", "prompt_tokens", "max_tokens", "temperature", "seed", "concurrency")}
    scenario = flag_scenario(target="sim", requests=params["requests"],
                             warmup_requests=params["warmup_requests"], **flags)
    quickstart = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    assert [(c.cell_id, c.settings) for c in plan_cells(scenario)] == \
        [(c.cell_id, c.settings) for c in plan_cells(quickstart)]


def test_a_flag_only_run_stores_a_scenario_that_reruns_the_same_cells(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "2"})
    first = tmp_path / "first"
    result = invoke("run", "--target", base_url, "--model", "llama3.2:1b", "--endpoint",
                    "native/chat", "--concurrency", "1,2", "--prompt-tokens", "64",
                    "--max-tokens", "8", "--requests", "4", "--warmup", "0", "--out", str(first),
                    "--no-report")
    assert result.exit_code == 0, result.output
    stored = first / "scenario.yaml"
    assert yaml.safe_load(stored.read_text())["load"]["concurrency"] == [1, 2]
    again = tmp_path / "again"
    result = invoke("run", str(stored), "--out", str(again), "--no-report")
    assert result.exit_code == 0, result.output
    first_cells = [c.cell_id for c in load_run(first).manifest.cells]
    assert first_cells == [c.cell_id for c in load_run(again).manifest.cells]
    assert len(first_cells) == 2
    measured = load_run(again).requests.query("phase == 'measure'")
    assert len(measured) == 8 and measured["error_class"].isna().all()


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "2"], "at least --model"),
    (["--model", "m", "--endpoint", "native/chatt"], "--endpoint: Input should be"),
    (["--model", "m", "--threshold", "ttft_p95"], "--threshold 'ttft_p95': expected"),
])
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["run", "--target", "sim", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_workload_flags_with_a_scenario_file_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(ROOT / "scenarios" / "quickstart.yaml"),
                                      "--concurrency", "2"])
    assert result.exit_code == 2 and "--concurrency: describes a flag-only run" in result.output
