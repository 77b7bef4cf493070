"""`bench run --workers N`: a cell's load over N client processes gives the run one process gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.analysis.metrics import cell_summary
from bench.cli import cli
from bench.load.cell import CellLoad
from bench.records import load_run
from bench.load.workers import split_load
from polling import wait_for

pytestmark = pytest.mark.e2e

RATE_LIMITED = """
name: workers-rate
target: sim
sim: {speed: 10, gpu: l4, seed: 0, env: {OLLAMA_NUM_PARALLEL: "4"}}
workload:
  endpoint: native/chat
  model: qwen2.5:0.5b
  prompt: {tokens: 256}
  max_tokens: 16
  temperature: 0
  seed: 7
load:
  arrival: constant
  rate_rps: 16
  concurrency: 8
  requests: 32
  warmup_requests: 2
"""


def test_open_loop_shares_deal_out_one_schedule() -> None:
    load = CellLoad(arrival="poisson", concurrency=8, rate_rps=5.0, requests=30, warmup_requests=3)
    shares = split_load(load, 2)
    assert [s.worker for s in shares] == [0, 1] and all(s.workers == 2 for s in shares)
    assert [s.concurrency for s in shares] == [4, 4]
    assert [s.requests for s in shares] == [30, 30]  # the whole schedule, dealt round-robin
    assert sum(s.warmup_requests for s in shares) == 3 and all(s.warmup_total == 3 for s in shares)


def test_closed_loop_shares_split_streams_and_requests() -> None:
    shares = split_load(CellLoad(arrival="closed", concurrency=5, requests=11), 2)
    assert [s.concurrency for s in shares] == [3, 2] and [s.requests for s in shares] == [6, 5]
    assert len(split_load(CellLoad(arrival="closed", concurrency=1, requests=10), 4)) == 1


def _run(tmp_path: Path, workers: int) -> Path:
    scenario = tmp_path / "rate.yaml"
    scenario.write_text(RATE_LIMITED)
    out = tmp_path / f"w{workers}"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--no-report",
                                       "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    return out


def test_two_workers_give_the_same_records_and_summary_as_one(tmp_path: Path) -> None:
    one, two = load_run(_run(tmp_path, 1)), load_run(_run(tmp_path, 2))
    assert two.manifest.workers == 2
    measured = {name: run.requests[run.requests["phase"] == "measure"] for name, run in (("1", one), ("2", two))}
    assert len(measured["1"]) == len(measured["2"]) == 32
    # Every arrival is sent once, under the same index and with the same scheduled time.
    for frame in measured.values():
        assert sorted(frame["request_index"]) == list(range(2, 34))
        assert frame["error_class"].isna().all()
    assert set(measured["2"]["worker"]) == {0, 1}
    offsets = {name: (frame.set_index("request_index")["scheduled_s"]
                      - frame["scheduled_s"].min()).sort_index() for name, frame in measured.items()}
    assert (offsets["1"] - offsets["2"]).abs().max() < 0.05
    first, second = cell_summary(one.requests).iloc[0], cell_summary(two.requests).iloc[0]
    for column in ("requests", "ok", "errors", "rejected"):
        assert first[column] == second[column]
    # Rate-limited: the window is the schedule's, so request rate and tok/s match closely.
    assert second["rps"] == pytest.approx(first["rps"], rel=0.1)
    assert second["output_tps"] == pytest.approx(first["output_tps"], rel=0.1)


# A parent that starts one client process, which blocks, then waits; the test SIGKILLs the parent.
ORPHAN_PARENT = """
import os, sys, time
from bench.load.workers import WorkerPool

def block(plan, link):
    print("child", os.getpid(), flush=True)
    link.wait_stop(600)

if __name__ == "__main__":
    pool = WorkerPool(block, [None], time.monotonic())
    time.sleep(600)
"""


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_client_process_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    # As when a Ray task's worker or bench itself is SIGKILLed: no client process lives on.
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = 0
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("child "), line
        child = int(line.split()[1])
        parent.kill()
        parent.wait()
        wait_for(lambda: gone(child), timeout_s=60, what="the orphaned client process ends")
    finally:
        parent.kill()
        if child and not gone(child):
            os.kill(child, signal.SIGKILL)
