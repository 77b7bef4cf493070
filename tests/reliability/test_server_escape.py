"""A managed server's command cannot leave anything behind: a daemon that double-forks with setsid
(out of the process group, nobody's descendant) is found by the mark in its environment, held to
loopback and stopped with the server, on a normal exit and when bench is killed (issue 26)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from reliability.support import bench, measured, start_bench, wait_for, write_scenario

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc")]

_HERE = Path(__file__).resolve().parent
_DAEMONIZER = _HERE / "daemonizer.py"
_FAKE = _HERE.parent / "server" / "fake_ollama.py"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2:].split()[0] != "Z"


def _daemon_pid(pid_file: Path) -> int:
    wait_for(pid_file.exists, timeout_s=60, what="the daemon's pid file")
    return int(pid_file.read_text())


def _command(pid_file: Path, server: list[str]) -> str:
    return json.dumps([sys.executable, str(_DAEMONIZER), str(pid_file), *server])


def _cleanup(pid_file: Path) -> None:
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_daemon_listening_beyond_loopback_is_found_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    scenario = write_scenario(tmp_path, f"""\
server:
  command: {_command(pid_file, [sys.executable, str(_FAKE)])}
  env: {{FAKE_OLLAMA_MODELS: m, DAEMONIZER_HOST: 0.0.0.0}}
  stop_grace_s: 2
workload: {{model: m, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, requests: 1}}
""")
    try:
        result = bench("run", str(scenario), "--out", str(tmp_path / "run"), "--no-report")
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: server.command: the managed server listened on 0.0.0.0:"), line
        assert not _alive(_daemon_pid(pid_file))
    finally:
        _cleanup(pid_file)


def test_a_daemon_does_not_survive_a_run_that_exits_0(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    sim = [sys.executable, "-m", "bench", "sim", "--speed", "50"]
    scenario = write_scenario(tmp_path, f"""\
server:
  command: {_command(pid_file, sim)}
  stop_grace_s: 2
workload: {{model: llama3.2:1b, max_tokens: 4, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, requests: 2, warmup_requests: 0}}
""")
    try:
        result = bench("run", str(scenario), "--out", str(tmp_path / "run"), "--no-report")
        assert result.returncode == 0, result.stdout + result.stderr
        assert not _alive(_daemon_pid(pid_file))
    finally:
        _cleanup(pid_file)


def test_kill_9_of_bench_stops_the_daemon_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    sim = [sys.executable, "-m", "bench", "sim", "--speed", "1"]
    scenario = write_scenario(tmp_path, f"""\
server:
  command: {_command(pid_file, sim)}
  stop_grace_s: 2
workload: {{model: llama3.2:1b, max_tokens: 64, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, duration_s: 300, warmup_requests: 0}}
""")
    out = tmp_path / "run"
    process = start_bench("run", str(scenario), "--out", str(out), "--no-report")
    try:
        wait_for(lambda: len(measured(out)) >= 1, timeout_s=120, what="a first record")
        daemon = _daemon_pid(pid_file)
        assert _alive(daemon)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        wait_for(lambda: not _alive(daemon), timeout_s=60, what="the daemon gone")
    finally:
        process.kill()
        _cleanup(pid_file)
