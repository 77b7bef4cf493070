"""A managed `bench sim` runs on bench's own interpreter whatever the scenario's command says,
--sim-speed is applied or refused (never ignored), and a server that never starts leaves no run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import UsageError
from bench.run.targets import resolve_server_command, with_sim_speed

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("command", [
    ["python", "-m", "bench", "sim", "--gpu", "l4"],
    ["python3", "-m", "bench", "sim", "--gpu", "l4"],
    ["/usr/bin/python3.11", "-m", "bench", "sim", "--gpu", "l4"],
    ["bench", "sim", "--gpu", "l4"],
    ["/opt/venv/bin/bench", "sim", "--gpu", "l4"],
])
def test_every_spelling_of_bench_sim_runs_on_this_interpreter(command: list[str]) -> None:
    assert resolve_server_command(command) == [sys.executable, "-m", "bench", "sim", "--gpu", "l4"]


def test_other_servers_are_left_as_written() -> None:
    assert resolve_server_command(["ollama", "serve"]) == ["ollama", "serve"]
    assert resolve_server_command(["python", "-m", "other", "sim"]) == ["python", "-m", "other", "sim"]


def test_sim_speed_replaces_the_commands_speed_and_is_refused_for_ollama() -> None:
    assert with_sim_speed(["bench", "sim", "--speed", "10", "--gpu", "l4"], 2.5) == [
        sys.executable, "-m", "bench", "sim", "--speed", "2.5", "--gpu", "l4"]
    assert with_sim_speed(["bench", "sim", "--speed=10"], 3) == [sys.executable, "-m", "bench", "sim", "--speed", "3"]
    with pytest.raises(UsageError, match="not bench sim"):
        with_sim_speed(["ollama", "serve"], 2)


def _scenario(tmp_path: Path, command: str) -> Path:
    path = tmp_path / "managed.yaml"
    path.write_text(yaml.safe_dump({
        "name": "managed", "server": {"command": command, "ready_timeout_s": 60},
        "workload": {"endpoint": "native/chat", "model": "qwen2.5:0.5b", "max_tokens": 4,
                     "prompt": {"tokens": 16, "calibrate": False}},
        "load": {"requests": 2, "warmup_requests": 0},
    }))
    return path


def test_python_on_path_without_bench_does_not_matter_and_sim_speed_is_applied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first `python` and `bench` on PATH are broken (a venv that is not activated, pipx).
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("python", "bench"):
        (stubs / name).write_text("#!/bin/sh\necho 'No module named pandas' >&2\nexit 1\n")
        (stubs / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{stubs}:{__import__('os').environ['PATH']}")
    scenario = _scenario(tmp_path, "python -m bench sim --speed 5")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--no-report",
                                      "--sim-speed", "40"])
    assert result.exit_code == 0, result.output
    command = json.loads((out / "manifest.json").read_text())["servers"][0]["command"]
    assert command[:4] == [sys.executable, "-m", "bench", "sim"]
    assert command[command.index("--speed") + 1] == "40" and command.count("--speed") == 1


def test_sim_speed_against_a_real_server_is_refused_before_any_run_directory(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, "ollama serve")
    results = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--results", str(results), "--sim-speed", "4"])
    assert result.exit_code == 2
    assert "--sim-speed 4" in result.output and "not bench sim" in result.output
    assert not results.exists() or not any(results.iterdir())


def test_a_server_that_never_starts_leaves_no_run_directory(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, "bench sim --no-such-flag")
    results = tmp_path / "results"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--results", str(results)])
    assert result.exit_code == 2, result.output
    assert "exited with code" in result.output and "nothing was measured" in result.output
    assert not results.exists() or not any(results.iterdir())
