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


def test_sim_env_with_a_list_is_a_server_axis_of_managed_simulators() -> None:
    scenario = flag_scenario(target="sim", model=["llama3.2:1b"], concurrency=[1, 4], sim_gpu="l4",
                             sim_env={"OLLAMA_NUM_PARALLEL": "1,2,4", "OLLAMA_KEEP_ALIVE": "-1"})
    assert scenario.server is not None and scenario.target is None
    assert scenario.server.env == {"OLLAMA_NUM_PARALLEL": ["1", "2", "4"], "OLLAMA_KEEP_ALIVE": ["-1"]}
    assert list(scenario.server.command)[:4] == ["bench", "sim", "--gpu", "l4"]
    cells = plan_cells(scenario)
    assert sorted({(c.settings.server_setting("OLLAMA_NUM_PARALLEL"), c.settings.concurrency) for c in cells}) == [
        ("1", 1), ("1", 4), ("2", 1), ("2", 4), ("4", 1), ("4", 4)]
    assert len({c.server_group for c in cells}) == 3  # one simulator per NUM_PARALLEL


@pytest.mark.parametrize("value,message", [("1,x", "'x' is not a whole number"), ("1,,2", "an empty value in the list"),
                                           ("2,2", "a value is listed twice")])
def test_a_bad_sim_env_list_fails_before_anything_starts(tmp_path: Path, value: str, message: str) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "--target", "sim", "--model", "llama3.2:1b", "--sim-env",
                                      f"OLLAMA_NUM_PARALLEL={value}", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: --sim-env OLLAMA_NUM_PARALLEL={value}: {message}"]
    assert not out.exists()
