"""Faults during a run, end to end through `bench run` against `bench sim` with faults injected.

Each fault shows up in requests.jsonl under its error class, on both surfaces, and the run goes
on to the end (exit 0) unless the scenario's abort_on limits stop it (exit 3, one-line reason).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.records import load_run
from reliability.support import bench, measured, write_scenario

pytestmark = pytest.mark.e2e

REQUESTS = 12

SCENARIO = """\
name: faults
target: sim
sim:
  speed: 50
  seed: 7
  args: {args}
  env: {env}
workload:
  endpoint: [native/chat, openai/chat]
  model: llama3.2:1b
  prompt: {{tokens: 32, calibrate: false}}
  max_tokens: 16
load:
  concurrency: {concurrency}
  requests: {requests}
  warmup_requests: 0
  timeout_s: {timeout_s}
{extra}"""


def fault_scenario(tmp_path: Path, args: list[str], env: dict[str, str] | None = None,
                   concurrency: int = 2, timeout_s: float = 60, extra: str = "") -> Path:
    text = SCENARIO.format(args=json.dumps(args), env=json.dumps(env or {}), concurrency=concurrency,
                           requests=REQUESTS, timeout_s=timeout_s, extra=extra)
    return write_scenario(tmp_path, text)


FAULTS = {
    # name: (sim args, sim env, expected error class, a phrase of its error_message)
    "500s": (["--fault-error-rate", "0.4"], {}, "server_error", "simulated fault"),
    "cut streams": (["--fault-cut-rate", "0.4"], {}, "disconnected", ""),
    "malformed lines": (["--fault-malformed-rate", "0.4"], {}, "bad_stream", "not JSON"),
    "never sends done": (["--fault-no-done-rate", "0.4"], {}, "bad_stream", "without"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_classified_on_both_surfaces_and_the_run_goes_on(tmp_path: Path, fault: str) -> None:
    args, env, error_class, phrase = FAULTS[fault]
    out = tmp_path / "run"
    result = bench("run", str(fault_scenario(tmp_path, args, env)), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    records = measured(out)
    assert len(records) == 2 * REQUESTS  # every request is recorded, failed or not
    for surface in ("native", "openai"):
        classes = [r["error_class"] for r in records if r["surface"] == surface]
        assert error_class in classes, (surface, classes)
        assert None in classes, (surface, classes)  # the others succeeded
        assert set(classes) <= {None, error_class}, (surface, classes)
    failed = [r for r in records if r["error_class"] == error_class]
    assert all(phrase in r["error_message"] for r in failed), failed[0]["error_message"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    summary = load_run(out).requests
    assert len(summary[summary["phase"] == "measure"]) == 2 * REQUESTS


def test_stall_past_the_request_timeout_is_a_timeout(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = fault_scenario(tmp_path, ["--fault-stall-rate", "0.3", "--fault-stall-s", "4"],
                              {"OLLAMA_NUM_PARALLEL": "2"}, timeout_s=1)
    result = bench("run", str(scenario), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    records = measured(out)
    assert len(records) == 2 * REQUESTS
    timed_out = [r for r in records if r["error_class"] == "timeout"]
    assert timed_out and {r["surface"] for r in timed_out} == {"native", "openai"}
    # The idle watchdog or httpx's own read timeout, whichever fires first: both are timeouts.
    assert all(r["error_message"] in ("no byte received for 1 s", "ReadTimeout") for r in timed_out)
    # A stalled stream had started: its first token arrived before the silence. (A request
    # queued behind it may time out before its first token: that is a timeout as well.)
    assert any(r["first_token_s"] is not None for r in timed_out)
    assert {r["error_class"] for r in records} == {None, "timeout"}


def test_flood_beyond_the_queue_is_rejected_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_MAX_QUEUE": "1"}
    scenario = fault_scenario(tmp_path, [], env, concurrency=8)
    result = bench("run", str(scenario), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    records = measured(out)
    rejected = [r for r in records if r["error_class"] == "rejected"]
    assert rejected and all(r["status"] == 503 for r in rejected)
    assert any("maximum pending requests exceeded" in r["error_message"] for r in rejected)
    assert any(r["error_class"] is None for r in records)
    assert "rejected" in result.stdout  # the progress line counts them


def test_abort_on_error_rate_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = fault_scenario(tmp_path, ["--fault-error-rate", "1.0"],
                              extra="abort_on: {error_rate: 0.5, min_requests: 4}\n")
    result = bench("run", str(scenario), "--out", str(out), "--no-report")
    assert result.returncode == 3, result.stdout + result.stderr
    reason_lines = [line for line in result.stdout.splitlines() if line.startswith("run failed")]
    assert len(reason_lines) == 1 and "abort_on: error rate 100% > 50%" in reason_lines[0]
    run = json.loads((out / "manifest.json").read_text())
    assert run["status"] == "failed" and run["failure"].startswith("abort_on: error rate")
    # Stopped early: the second cell never ran, the first did not finish its requests.
    assert len(measured(out)) < REQUESTS


def test_abort_on_consecutive_failures_stops_the_run_with_exit_3(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = fault_scenario(tmp_path, ["--fault-error-rate", "1.0"], concurrency=1,
                              extra="abort_on: {consecutive_failures: 3}\n")
    result = bench("run", str(scenario), "--out", str(out), "--no-report")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "abort_on: 3 consecutive failures (last: server_error)" in result.stdout
    assert len(measured(out)) == 3  # one worker: it stops at the third failure


def test_faults_below_the_abort_limits_do_not_stop_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = fault_scenario(tmp_path, ["--fault-error-rate", "0.2"], concurrency=1,
                              extra="abort_on: {error_rate: 0.9, consecutive_failures: 6, min_requests: 4}\n")
    result = bench("run", str(scenario), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    records = measured(out)
    assert len(records) == 2 * REQUESTS
    assert any(r["error_class"] == "server_error" for r in records)
