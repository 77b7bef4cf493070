"""The server dies mid-run: in-flight requests are `disconnected`, the next ones cannot connect,
the run stops as partial (exit 4) and still writes its records, summary and report."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from bench.records import load_run
from reliability.support import (
    free_port,
    manifest,
    manifest_or_empty,
    measured,
    start_bench,
    start_sim_process,
    wait_for,
    write_scenario,
)

pytestmark = pytest.mark.e2e

WORKLOAD = """\
workload:
  endpoint: native/chat
  model: llama3.2:1b
  prompt: {tokens: 64, calibrate: false}
  max_tokens: 200
load:
  concurrency: 2
  requests: 400
  warmup_requests: 0
"""


def _finish(process) -> str:  # noqa: ANN001
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    return output


def _assert_partial_with_report(out: Path, returncode: int, output: str, reason: str) -> None:
    assert returncode == 4, output
    assert "Traceback" not in output
    run_manifest = manifest(out)
    assert run_manifest["status"] == "partial"
    assert reason in run_manifest["stop_reason"]
    assert f"run partial ({run_manifest['stop_reason']})" in output
    assert (out / "report.html").stat().st_size > 0
    run = load_run(out)
    rows = run.requests[run.requests["phase"] == "measure"]
    assert rows["error_class"].isna().sum() >= 2  # what finished before the kill is kept
    assert set(rows["error_class"].dropna()) <= {"disconnected"}
    assert len(rows) < 400


def test_external_server_killed_mid_run_ends_partial_with_a_report(tmp_path: Path) -> None:
    port = free_port()
    server = start_sim_process(port, "--speed", "20")
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, WORKLOAD)
    process = start_bench("run", str(scenario), "--target", f"127.0.0.1:{port}", "--out", str(out))
    try:
        wait_for(lambda: len(measured(out)) >= 2, what="two requests recorded")
        server.kill()
        server.wait(timeout=30)
        output = _finish(process)
    finally:
        server.kill()
    _assert_partial_with_report(out, process.returncode, output, "stopped accepting connections")
    failed = [r for r in measured(out) if r["error_class"]]
    # Requests sent after the kill could not connect: that is what stopped the run.
    assert any(r["error_message"].startswith("ConnectError") for r in failed)


def test_managed_server_killed_mid_run_ends_partial_with_a_report(tmp_path: Path) -> None:
    command = json.dumps([sys.executable, "-m", "bench", "sim", "--speed", "20"])
    scenario = write_scenario(tmp_path, WORKLOAD + f"server:\n  command: {command}\n")
    out = tmp_path / "run"
    process = start_bench("run", str(scenario), "--out", str(out))
    try:
        wait_for(lambda: len(measured(out)) >= 2, what="two requests recorded")
        server_pid = manifest_or_empty(out)["servers"][0]["pid"]
        os.kill(server_pid, signal.SIGKILL)
        output = _finish(process)
    finally:
        process.kill()
    _assert_partial_with_report(out, process.returncode, output, "server exited")
    assert (out / "server-0.log").exists()
