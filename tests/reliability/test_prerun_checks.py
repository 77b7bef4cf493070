"""A run is refused before its run directory exists for anything the scenario, its prompt file
or the baseline gets wrong; `bench validate` finds the same problems (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.run.resolve import RunOptions, new_run_dir
from bench.scenario import parse_scenario

BASE = "name: pre\ntarget: sim\nworkload: {model: m%s}\nload: {concurrency: 1, requests: 1}\n"


def _run(tmp_path: Path, text: str, *extra: str):  # noqa: ANN202 - click's Result
    scenario = tmp_path / "s.yaml"
    scenario.write_text(text)
    results = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--results", str(results), "--no-report",
                                      *extra], env={"BENCH_DEBUG": ""})
    return result, results


def _assert_refused_before_the_run(result, results: Path, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), result.output
    for fragment in fragments:
        assert fragment in result.output
    assert not results.exists() or not any(results.iterdir())


@pytest.mark.parametrize("gates, fragment", [
    ("{ttft_p99x: 10%}", "unknown metric 'ttft_p99x'"),
    ("{ttft_p95: lots}", "ttft_p95=lots: expected a percentage"),
])
def test_a_bad_gate_is_refused_before_the_run(tmp_path: Path, gates: str, fragment: str) -> None:
    result, results = _run(tmp_path, BASE % "" + f"gates: {gates}\n")
    _assert_refused_before_the_run(result, results, "s.yaml:5: gates: ", fragment)


def test_a_corrupt_baseline_is_refused_before_the_run(tmp_path: Path) -> None:
    baseline = tmp_path / "base.json"
    baseline.write_text("{not json")
    result, results = _run(tmp_path, BASE % "", "--baseline", str(baseline))
    _assert_refused_before_the_run(result, results, f"{baseline}:1: not valid JSON")


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe\x00bad", "not UTF-8 text"),
    (b'{"prompt": "ok"}\n{oops\n', ":2: not valid JSON"),
    (b"[" * 100_000, "not valid JSON"),
    (b"", "no prompts in file"),
])
def test_a_bad_prompt_file_leaves_no_run_directory(tmp_path: Path, content: bytes, fragment: str) -> None:
    (tmp_path / "prompts.jsonl").write_bytes(content)
    result, results = _run(tmp_path, BASE % ", prompt: {file: prompts.jsonl}")
    _assert_refused_before_the_run(result, results, "workload.prompt.file", fragment)
    validated = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert validated.exit_code == 2 and fragment in validated.output


def test_validate_finds_bad_gates_and_slos_too(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(BASE % "" + "slos: {warp_speed: 1s}\ngates: {nope: 5%}\n")
    result = CliRunner().invoke(cli, ["validate", str(scenario)])
    assert result.exit_code == 2
    assert [line.split(": ")[1] for line in result.output.splitlines()] == [f"{scenario}:5", f"{scenario}:6"]


def test_out_under_a_file_names_the_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result, _ = _run(tmp_path, BASE % "", "--out", str(blocker / "run"))
    assert result.exit_code == 2
    assert result.output.startswith(f"error: --out {blocker / 'run'}: cannot create the run directory")


def test_a_long_scenario_name_makes_a_short_directory_name(tmp_path: Path) -> None:
    scenario = parse_scenario("name: " + "x" * 400 + "\nworkload: {model: m}\n")
    run_dir = new_run_dir(RunOptions(results_root=tmp_path), scenario)
    assert run_dir.is_dir() and len(run_dir.name.encode()) < 255
