"""End to end: a run against a server whose answers never end finishes on its own, a SIGTERM'd
run keeps its in-flight requests as `interrupted`, and every duration a file or flag can write
is capped at a week (issue 26, class 2)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from reliability.support import bench, json_lines, start_bench, wait_for, write_scenario


def _scenario(tmp_path: Path, endpoint: str, extra_load: str = "") -> Path:
    return write_scenario(tmp_path, f"""\
name: endless
workload: {{model: m, endpoint: {endpoint}, max_tokens: 2, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, requests: 1, warmup_requests: 0, timeout_s: 30{extra_load}}}
abort_on: {{consecutive_failures: 100}}
""")


@pytest.mark.e2e
@pytest.mark.parametrize("mode,endpoint", [("drip", "native/chat"), ("ping", "openai/chat")])
def test_a_run_against_an_endless_server_ends_at_the_request_deadline(endless, tmp_path: Path,  # noqa: ANN001
                                                                      mode: str, endpoint: str) -> None:
    server = endless(mode)
    out = tmp_path / "run"
    scenario = _scenario(tmp_path, endpoint, ", request_deadline_s: 2")
    result = bench("run", str(scenario), "--target", server.url, "--out", str(out), "--no-report", timeout_s=120)
    assert result.returncode in (0, 3), result.stdout + result.stderr
    records = json_lines(out / "requests.jsonl")
    assert len(records) == 1 and records[0]["error_class"] == "timeout", records
    assert "request deadline of 2 s" in records[0]["error_message"]


@pytest.mark.e2e
def test_the_default_deadline_ends_a_drip_without_a_scenario_setting(endless, tmp_path: Path) -> None:  # noqa: ANN001
    server = endless("drip")
    out = tmp_path / "run"
    # timeout_s 1 and max_tokens 2: the derived deadline is 1 + 2 x 1 s = 3 s; a byte every 0.5 s
    # keeps the idle limit from ever firing.
    scenario = write_scenario(tmp_path, """\
name: endless
workload: {model: m, max_tokens: 2, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: 1, requests: 1, warmup_requests: 0, timeout_s: 1}
""")
    result = bench("run", str(scenario), "--target", server.url, "--out", str(out), "--no-report", timeout_s=120)
    records = json_lines(out / "requests.jsonl")
    assert len(records) == 1 and "request deadline of 3 s" in records[0]["error_message"], (
        records, result.stderr)


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_keeps_the_in_flight_request_as_interrupted(endless, tmp_path: Path,  # noqa: ANN001
                                                            workers: int) -> None:
    server = endless("ping")
    out = tmp_path / "run"
    # deadline 32 s: only the signal ends the requests sooner
    scenario = _scenario(tmp_path, "openai/chat").read_text().replace("concurrency: 1, requests: 1",
                                                                      f"concurrency: {workers}, requests: {workers}")
    scenario_path = write_scenario(tmp_path, scenario, name="w.yaml")
    process = start_bench("run", str(scenario_path), "--target", server.url, "--out", str(out), "--no-report",
                          "--grace", "1", "--workers", str(workers))
    try:
        # Probes and /api/ps polls are requests too: wait for the generations' streams themselves.
        wait_for(lambda: server.streams >= workers, timeout_s=120, what="the requests in flight")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, output
    records = json_lines(out / "requests.jsonl")
    assert [row["error_class"] for row in records] == ["interrupted"] * workers, (records, output)
    assert all(row["end_s"] is not None and row["headers_s"] is not None for row in records)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "partial"


@pytest.mark.parametrize("think", ["1000000000", "1.0e+9", "{distribution: uniform, low: 1, high: 1000000000}",
                                   "{distribution: exponential, mean: 1.0e+300}"])
def test_a_think_time_past_a_week_is_refused(tmp_path: Path, think: str) -> None:
    scenario = write_scenario(tmp_path, f"""\
target: sim
workload:
  model: m
  conversation: {{turns: 2, think_time_s: {think}}}
""")
    result = bench("validate", str(scenario), timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "think_time_s" in result.stderr and "604800" in result.stderr, result.stderr
    flags = bench("run", "--target", "sim", "--model", "m", "--turns", "2", "--think-time", "1e9", timeout_s=60)
    assert flags.returncode == 2 and "--think-time" in flags.stderr, flags.stderr


@pytest.mark.parametrize("second", ['{"timestamp": 1e290, "prompt_tokens": 8}',
                                    '{"timestamp_ms": 1e300, "prompt_tokens": 8}',
                                    '{"timestamp": 604801, "prompt_tokens": 8}'])
def test_a_trace_gap_past_a_week_is_refused_naming_the_line(tmp_path: Path, second: str) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"timestamp": 0, "prompt_tokens": 8}\n' + second + "\n")
    scenario = write_scenario(tmp_path, f"""\
target: sim
workload: {{model: m}}
load: {{arrival: trace, trace: {{file: {json.dumps(str(trace))}}}}}
""")
    result = bench("validate", str(scenario), timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{trace}:2:" in result.stderr and "a week" in result.stderr, result.stderr
