"""`bench perf --quick` runs end to end and writes perf.json with every section (no speed asserted)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from bench.perf.suite import ramp_should_stop


def test_ramp_stops_after_two_levels_without_growth() -> None:
    assert not ramp_should_stop([100, 200, 400])
    assert not ramp_should_stop([100, 200, 205])
    assert ramp_should_stop([100, 400, 405, 390])
    assert not ramp_should_stop([100, 400, 405, 500])


def test_perf_quick_writes_every_field(tmp_path: Path) -> None:
    completed = subprocess.run(
        # --quick alone: the fast transport on the native surface.
        [sys.executable, "-m", "bench", "perf", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-2000:]
    perf = json.loads((tmp_path / "perf.json").read_text())
    assert {"cpu_model", "cpu_count", "python", "uvloop", "pinned"} <= set(perf["machine"])
    assert perf["workers"] == 1 and len(perf["load_average_end"]) == 3
    best = perf["throughput"]["fast"]["native"]["best"]
    assert best["rps"] > 0 and best["ok"] > 0
    assert best["cpu_us_per_request"] > 0 and best["cpu_us_per_token"] > 0
    assert 0 < best["emitter_cpu_fraction"]
    held = perf["held_streams"]["fast"]["native"]
    assert held["levels"][0]["streams"] == 1024 and held["kib_per_stream"] is not None
    levels = perf["accuracy"]["fast"]["native"]["levels"]
    assert set(perf["throughput"]) == {"fast"} and set(perf["throughput"]["fast"]) == {"native"}
    assert set(levels) == {"1", "64", "64-staggered"}  # --quick holds no 256-stream level
    for errors in levels.values():
        assert errors["matched"] > 0 and errors["count_mismatch"] == 0
        assert errors["ttft_error"]["p99_ms"] is not None
        assert errors["request_lag"]["n"] == errors["matched"]
    targets = perf["summary"]["fast"]["targets"]
    assert set(targets) == {"rps_1000", "streams_1024", "ttft_p99_1ms_at_256"}
    assert targets["ttft_p99_1ms_at_256"] is None  # not measured, not "missed"
    assert "bench perf" in completed.stdout
    # The table judges the run against its own targets.
    assert "target: ≥ 1000 req/s" in completed.stdout and "not measured" in completed.stdout
    assert ("✓ met" in completed.stdout) or ("✗ missed" in completed.stdout)


def test_sigterm_writes_a_partial_perf_json_without_a_traceback(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "bench", "perf", "--out", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until the first throughput level is measured
            if "throughput" in line and "req/s" in line:
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, rest
    assert "Traceback" not in rest and "interrupted (SIGTERM)" in rest
    perf = json.loads((tmp_path / "perf.json").read_text())
    assert perf["partial"] is True and perf["interrupted"] == "SIGTERM"
    assert "machine" in perf and "throughput" in perf
