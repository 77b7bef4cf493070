"""Every command's failure goes through one funnel: one line on stderr and a documented exit code;
`--debug` / BENCH_DEBUG=1 add the traceback (issue 16)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import bench.scenario
from bench.cli import cli
from bench.cli.funnel import EXIT_INTERNAL

OK_SCENARIO = "target: sim\nworkload: {model: m}\nload: {concurrency: 1, requests: 1}\n"


def invoke(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": "", **(env or {})}, prog_name="bench")


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(OK_SCENARIO)
    return path


def test_a_bug_is_one_line_with_exit_70_and_the_way_to_the_traceback(
        monkeypatch: pytest.MonkeyPatch, scenario: Path) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("something\nbroke")
    monkeypatch.setattr(bench.scenario, "load_scenario", broken)
    result = invoke("run", str(scenario))
    assert result.exit_code == EXIT_INTERNAL
    assert one_line(result.output) == ("error: internal error (RuntimeError: something broke); "
                                       "run again with BENCH_DEBUG=1 for the traceback and report it")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, scenario: Path, how: str) -> None:
    def broken(path: Path) -> None:
        raise RuntimeError("boom")
    monkeypatch.setattr(bench.scenario, "load_scenario", broken)
    # env names BENCH_DEBUG so that CliRunner restores it after --debug set it.
    result = (CliRunner().invoke(cli, ["--debug", "run", str(scenario)], env={"BENCH_DEBUG": ""})
              if how == "flag"
              else invoke("run", str(scenario), env={"BENCH_DEBUG": "1"}))
    assert result.exit_code == EXIT_INTERNAL
    assert "Traceback" in result.output and "RuntimeError: boom" in result.output


def test_ctrl_c_is_exit_130_not_aborted(monkeypatch: pytest.MonkeyPatch, scenario: Path) -> None:
    def interrupted(path: Path) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(bench.scenario, "load_scenario", interrupted)
    result = invoke("run", str(scenario))
    assert result.exit_code == 130
    assert one_line(result.output) == "error: interrupted"
    assert "Aborted" not in result.output


def test_a_usage_error_is_one_line_naming_the_help() -> None:
    result = invoke("sim", "--port", "99999")
    assert result.exit_code == 2
    assert one_line(result.output) == ("error: Invalid value for '--port': 99999 is not in the range "
                                       "0<=x<=65535. (see bench sim --help)")


@pytest.mark.parametrize("args", [
    ["run", "S", "--duration", "nan"], ["run", "S", "--duration", "inf"],
    ["run", "S", "--sim-speed", "nan"], ["sim", "--speed", "nan"], ["sim", "--speed", "-inf"],
    ["run", "S", "--requests", "99999999999999999999999"], ["run", "S", "--target", "localhost:99999"],
    ["run", "S", "--target", "http://10.1.2.3:abc"], ["run", "S", "--target", "http://127.0.0.1:1:2"],
    ["sim", "--fault-error-rate", "2"], ["kv", "--model", "llama3.2:1b", "--ctx", "1e999"],
])
def test_bad_flags_are_one_line_exit_2(scenario: Path, args: list[str]) -> None:
    result = invoke(*[str(scenario) if arg == "S" else arg for arg in args])
    assert result.exit_code == 2, result.output
    assert one_line(result.output).startswith("error: ")


def test_out_under_a_file_is_one_line(tmp_path: Path, scenario: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for out in (blocker / "run", Path("/proc/bench-run")):
        result = invoke("run", str(scenario), "--out", str(out), "--no-report")
        assert result.exit_code == 2, result.output
        assert str(out) in one_line(result.output)


def test_validate_lists_every_problem_of_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload: {model: m}\nload:\n  concurency: 4\n  requsts: 2\n")
    good = tmp_path / "good.yaml"
    good.write_text(OK_SCENARIO)
    result = invoke("validate", str(bad), str(good))
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"error: {bad}:3: load.concurency: unknown field (did you mean concurrency?)",
        f"error: {bad}:4: load.requsts: unknown field (did you mean requests?)",
        f"{good}: ok (1 cells)",
    ]


@pytest.mark.e2e
def test_ctrl_c_while_the_report_is_drawn_is_exit_130_in_one_line(tmp_path: Path) -> None:
    import signal

    from reliability.support import start_bench

    scenario = tmp_path / "s.yaml"
    scenario.write_text("target: sim\nsim: {speed: 50}\nworkload: {model: llama3.2:1b, max_tokens: 8, "
                        "prompt: {tokens: 16, calibrate: false}}\nload: {concurrency: 1, requests: 2, "
                        "warmup_requests: 0}\n")
    process = start_bench("run", str(scenario), "--out", str(tmp_path / "run"))
    assert process.stdout is not None
    seen = []
    try:
        for line in process.stdout:  # ends when bench exits: no line, no hang past the timeout
            seen.append(line)
            if "drawing report.html" in line:
                process.send_signal(signal.SIGINT)
                break
        rest = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert any("drawing report.html" in line for line in seen), "".join(seen)
    output = "".join(seen) + rest
    assert process.returncode == 130, output
    assert "Traceback" not in output and "Aborted" not in output
    assert output.rstrip().splitlines()[-1] == "error: interrupted"
