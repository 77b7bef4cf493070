"""Managed servers never outlive bench: their whole process group is stopped on a normal exit, on
signals and, on Linux, when bench itself is killed, even through a shell wrapper (issue 16)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from reliability.support import bench, measured, start_bench, wait_for, write_scenario

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux: /proc, PDEATHSIG")]


def _group_members(group: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields: state, ppid, pgrp; a zombie (Z) is dead already, waiting for its reaper.
        if len(fields) >= 3 and int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _server_pid(out: Path) -> int | None:
    try:
        servers = json.loads((out / "manifest.json").read_text()).get("servers") or []
    except (OSError, ValueError):
        return None
    return servers[0].get("pid") if servers else None


def test_kill_9_of_bench_stops_a_server_behind_a_shell_wrapper(tmp_path: Path) -> None:
    # `; true` keeps bash as the parent (a lone command would be exec'd in place of the shell).
    wrapped = f"'{sys.executable}' -m bench sim --speed 1; true"
    scenario = write_scenario(tmp_path, f"""\
server:
  command: ["bash", "-c", {json.dumps(wrapped)}]
  stop_grace_s: 2
workload: {{model: llama3.2:1b, max_tokens: 64, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, duration_s: 300, warmup_requests: 0}}
""")
    out = tmp_path / "run"
    process = start_bench("run", str(scenario), "--out", str(out), "--no-report",
                          env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    group = None
    try:
        wait_for(lambda: len(measured(out)) >= 1, timeout_s=120, what="a first record")
        group = _server_pid(out)
        assert group is not None
        assert len(_group_members(group)) >= 2  # bash and the simulator it started
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        wait_for(lambda: not _group_members(group), timeout_s=60, what="the server group gone")
    finally:
        process.kill()
        if group is not None and _group_members(group):
            os.killpg(group, signal.SIGKILL)


def test_a_managed_server_that_listens_beyond_loopback_is_stopped(tmp_path: Path) -> None:
    fake = Path(__file__).resolve().parents[1] / "server" / "fake_ollama.py"
    # Nothing in the command says 0.0.0.0: the script binds every interface on its own.
    scenario = write_scenario(tmp_path, f"""\
server:
  command: [{json.dumps(sys.executable)}, {json.dumps(str(fake))}]
  env: {{FAKE_OLLAMA_ALSO_ALL_INTERFACES: "1", FAKE_OLLAMA_MODELS: m}}
workload: {{model: m, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, requests: 1}}
""")
    result = bench("run", str(scenario), "--out", str(tmp_path / "run"), "--no-report")
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: server.command: the managed server listened on 0.0.0.0:")
    assert "bench stopped it" in line
