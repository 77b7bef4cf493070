"""Ctrl-C / SIGTERM: stop dispatching, keep every record, mark the run partial."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.records import load_run
from polling import wait_for

pytestmark = pytest.mark.e2e

SCENARIO = """\
workload:
  endpoint: native/chat
  model: llama3.2:1b
  prompt: {tokens: 64}
  max_tokens: 400
load:
  concurrency: 2
  requests: 200
  warmup_requests: 0
"""


def measured_lines(out: Path) -> int:
    path = out / "requests.jsonl"
    if not path.exists():
        return 0
    return sum(1 for line in path.read_bytes().splitlines() if b'"measure"' in line)


def start_run(base_url: str, tmp_path: Path, grace_s: str) -> tuple[subprocess.Popen[bytes], Path]:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(scenario), "--target", base_url, "--out", str(out),
         "--grace", grace_s, "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    return process, out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_lets_in_flight_finish_and_marks_partial(sim, tmp_path: Path, signum: int) -> None:  # noqa: ANN001
    base_url = sim(speed=20.0, env={"OLLAMA_NUM_PARALLEL": "2"})
    process, out = start_run(base_url, tmp_path, grace_s="30")
    try:
        wait_for(lambda: measured_lines(out) >= 2)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, output.decode()
    # The interrupt says how to finish the run, at the signal and at the end.
    assert output.decode().count(f"bench run --resume {out}") >= 2, output.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "partial"
    assert "interrupted" in manifest["stop_reason"]
    assert manifest["cells"][0]["status"] == "partial"
    run = load_run(out)
    measured = run.requests[run.requests["phase"] == "measure"]
    assert 2 <= len(measured) < 200
    # The grace period was long enough: the requests in flight at the signal finished normally.
    assert measured["error_class"].isna().all()
    assert (out / "requests.parquet").exists()


def test_second_signal_stops_at_once_and_keeps_appended_records(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=1.0, env={"OLLAMA_NUM_PARALLEL": "2"})  # long requests: still in flight
    process, out = start_run(base_url, tmp_path, grace_s="60")
    try:
        wait_for(lambda: measured_lines(out) >= 1, timeout_s=90)
        before = measured_lines(out)
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130, output.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "partial"
    assert measured_lines(out) >= before


def test_server_killed_mid_run_ends_partial_and_keeps_records(tmp_path: Path) -> None:
    import os

    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO + "target: sim\nsim:\n  speed: 20\n")
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out), "--no-report"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: measured_lines(out) >= 2)
        server_pid = json.loads((out / "manifest.json").read_text())["servers"][0]["pid"]
        os.kill(server_pid, signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 4, output.decode()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "partial"
    assert "server exited" in manifest["stop_reason"]
    run = load_run(out)
    measured = run.requests[run.requests["phase"] == "measure"]
    assert measured["error_class"].isna().sum() >= 2  # what finished before the kill is kept
    assert set(measured["error_class"].dropna()) <= {"disconnected"}
