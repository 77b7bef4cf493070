"""The `ollama` tier: a managed real Ollama restarted per NUM_PARALLEL cell, and nothing left
behind when bench is killed with SIGKILL mid-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.ollama.build import OllamaInstall
from tests.engine.runs import run_scenario

pytestmark = pytest.mark.ollama

_NP_RE = re.compile(r"starting llama-server.* -np (\d+)")


def _scenario(num_parallel: list[int], requests: int) -> dict[str, object]:
    return {
        "name": "ollama-np", "target": "ollama",
        "server": {"env": {"OLLAMA_NUM_PARALLEL": num_parallel, "OLLAMA_CONTEXT_LENGTH": "1024",
                           "LLAMA_ARG_THREADS": "1"}},
        "workload": {"endpoint": "native/generate", "model": "tiny-llama3.2-1b",
                     "prompt": {"tokens": 64, "calibrate": False}, "max_tokens": 8},
        "load": {"arrival": "closed", "concurrency": 2, "requests": requests, "warmup_requests": 0},
    }


def test_a_num_parallel_sweep_restarts_ollama_per_cell(ollama_install: OllamaInstall, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    records = run_scenario(_scenario([1, 2], 4), run_dir)
    assert len(records) == 8 and all(record["error_class"] is None for record in records)
    servers = json.loads((run_dir / "manifest.json").read_text())["servers"]
    assert [server["env"]["OLLAMA_NUM_PARALLEL"] for server in servers] == ["1", "2"]
    assert servers[0]["pid"] != servers[1]["pid"]
    launched = [_NP_RE.findall((run_dir / server["log"]).read_text()) for server in servers]
    assert launched == [["1"], ["2"]]  # each server started its own llama-server with -np = NUM_PARALLEL


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _wait_for(condition, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def _serving_pids(run_dir: Path) -> list[int] | None:
    """The managed ollama's pid and its llama-server children, once a llama-server runs."""
    try:
        servers = json.loads((run_dir / "manifest.json").read_text()).get("servers") or []
    except (OSError, ValueError):
        return None
    if not servers or not servers[-1].get("pid"):
        return None
    ollama_pid = int(servers[-1]["pid"])
    runners = [pid for pid in _children(ollama_pid)
               if Path(f"/proc/{pid}/comm").exists() and "llama-server" in Path(f"/proc/{pid}/comm").read_text()]
    return [ollama_pid, *runners] if runners else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PDEATHSIG and /proc are Linux")
def test_kill_9_of_bench_leaves_no_ollama_or_llama_server(ollama_install: OllamaInstall, tmp_path: Path) -> None:
    scenario = tmp_path / "long.yaml"
    scenario.write_text(yaml.safe_dump(_scenario([1], 100000)))
    run_dir = tmp_path / "run"
    bench = subprocess.Popen([sys.executable, "-m", "bench", "run", str(scenario), "--out", str(run_dir),
                              "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True, env={**os.environ})
    pids: list[int] = []
    try:
        pids = _wait_for(lambda: _serving_pids(run_dir), 180, "ollama serve and its llama-server")
        os.kill(bench.pid, signal.SIGKILL)
        bench.wait(timeout=30)
        _wait_for(lambda: not any(_alive(pid) for pid in pids), 60, f"processes {pids} to exit")
    finally:
        for pid in [bench.pid, *pids]:  # a failed test must not leave them either
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
