"""`bench run --ray`: server groups as Ray tasks on a local Ray cluster (2 CPUs), one run directory.

Skipped when Ray is not installed (`pip install 'bench[ray]'`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.analysis.recommend import recommend, scenario_slos
from bench.records import load_run

pytest.importorskip("ray")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# Two NUM_PARALLEL settings x two concurrencies: small enough for two CPUs, and NP=1 at two users
# queues while NP=2 does not, so the recommendation is not a coin toss.
SWEEP = """
name: ray-sweep
server:
  command: python -m bench sim --speed 1 --gpu l4
  env: {OLLAMA_NUM_PARALLEL: [1, 2], OLLAMA_KEEP_ALIVE: "-1"}
  ready_timeout_s: 60
placement: {num_cpus: 1}
workload:
  endpoint: native/chat
  model: qwen2.5:0.5b
  prompt: {tokens: 512}
  max_tokens: 64
  temperature: 0
  seed: 3
load:
  arrival: closed
  concurrency: [1, 2]
  requests: 12
  warmup_requests: 1
slos:
  ttft_p95: 2s
"""


def run(*args: str) -> tuple[int, str]:
    # A subprocess, not CliRunner: a Ray driver whose cluster fails may end its process with
    # os._exit, which must fail this test, not end the whole pytest session.
    result = subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                            timeout=600, check=False)
    return result.returncode, result.stdout + result.stderr


def cells_of(run_dir: Path) -> dict[str, dict]:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {cell["cell_id"]: cell for cell in manifest["cells"]}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray") / "sweep.yaml"
    path.write_text(SWEEP)
    return path


def test_ray_run_gives_the_sequential_runs_cells_and_recommendation(scenario: Path, tmp_path: Path) -> None:
    code, output = run("run", str(scenario), "--out", str(tmp_path / "seq"), "--no-report")
    assert code == 0, output
    code, output = run("run", str(scenario), "--out", str(tmp_path / "ray"), "--no-report", "--ray")
    assert code == 0, output
    sequential, on_ray = load_run(tmp_path / "seq"), load_run(tmp_path / "ray")
    ray_cells = cells_of(tmp_path / "ray")
    assert set(ray_cells) == set(cells_of(tmp_path / "seq"))
    assert all(cell["status"] == "complete" and cell["node"]["hostname"] for cell in ray_cells.values())
    measured = on_ray.requests[on_ray.requests["phase"] == "measure"]
    assert measured.groupby("cell_id").size().to_dict() == {cell_id: 12 for cell_id in ray_cells}
    assert (recommend(on_ray, scenario_slos(on_ray.manifest)).num_parallel
            == recommend(sequential, scenario_slos(sequential.manifest)).num_parallel)
    # The two server groups' tasks ran at the same time (one CPU each of two), in two workers.
    manifest = on_ray.manifest
    tasks = manifest.ray["tasks"]
    assert len(tasks) == 2 and len({task["node"]["pid"] for task in tasks}) == 2
    assert max(t["started_epoch_s"] for t in tasks) < min(t["ended_epoch_s"] for t in tasks)
    assert manifest.ray["address"] == "local" and len(manifest.servers) == 2
    assert all((tmp_path / "ray" / server.log).exists() for server in manifest.servers)


def test_placement_no_node_has_is_refused_in_one_line(scenario: Path, tmp_path: Path) -> None:
    gpu = scenario.parent / "gpu.yaml"
    gpu.write_text(SWEEP.replace("placement: {num_cpus: 1}", "placement: {num_cpus: 1, resources: {GPU: 1}}"))
    code, output = run("run", str(gpu), "--out", str(tmp_path / "gpu"), "--no-report", "--ray")
    assert code == 2
    assert "placement asks for {GPU: 1} per server group; the Ray cluster (local) has {CPU: " in output


def ray_task_pids() -> list[int]:
    """Processes running a group's Ray task (Ray titles a busy worker `ray::run_group`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::run_group"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_killed_ray_worker_leaves_a_partial_run_that_resume_completes(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    killed: list[int] = []

    def killer() -> None:
        # As a lost node would: SIGKILL the first worker that runs a group, once it is measuring.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (out / "requests.jsonl").exists():
            time.sleep(0.2)
        while time.monotonic() < deadline and not killed:
            pids = ray_task_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    code, output = run("run", str(scenario), "--out", str(out), "--no-report", "--ray")
    thread.join()
    assert killed and code == 4, output
    cells = cells_of(out)
    assert any(cell["status"] == "partial" for cell in cells.values())
    assert "was lost" in output
    code, output = run("run", "--resume", str(out), "--no-report")
    assert code == 0, output
    assert all(cell["status"] == "complete" for cell in cells_of(out).values())
    measured = load_run(out).requests
    measured = measured[measured["phase"] == "measure"]
    assert measured.groupby("cell_id").size().to_dict() == {cell_id: 12 for cell_id in cells}
