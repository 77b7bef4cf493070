"""A run killed with SIGKILL keeps every record it had received; an interrupted run resumes with
`bench run --resume RUN_DIR`, running only the cells not yet complete."""

from __future__ import annotations

import collections
import json
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.records import load_run
from reliability.support import (
    json_lines,
    manifest,
    manifest_or_empty,
    measured,
    start_bench,
    wait_for,
    write_scenario,
)

pytestmark = pytest.mark.e2e


def _cli(*args: str):  # noqa: ANN202
    return CliRunner().invoke(cli, list(args))


MAX_TOKENS = 40  # below the simulator's shortest natural answer: every done line is at index 40
KILL_SCENARIO = f"""\
workload:
  endpoint: native/chat
  model: llama3.2:1b
  prompt: {{tokens: 64, calibrate: false}}
  max_tokens: {MAX_TOKENS}
load:
  concurrency: 2
  requests: 400
  warmup_requests: 0
"""


def test_kill_9_keeps_every_request_the_client_had_received(sim, tmp_path: Path) -> None:  # noqa: ANN001
    emit_log = tmp_path / "emit.jsonl"
    base_url = sim(speed=20.0, env={"OLLAMA_NUM_PARALLEL": "2"}, emit_log_path=str(emit_log))
    out = tmp_path / "run"
    process = start_bench("run", str(write_scenario(tmp_path, KILL_SCENARIO)), "--target", base_url,
                          "--out", str(out), "--no-report")
    try:
        wait_for(lambda: len(measured(out)) >= 6, what="six requests recorded")
        killed_at = time.monotonic()  # the in-process simulator stamps chunks on this clock
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    # Requests whose done line the simulator had sent before the kill.
    done_before_kill = sum(1 for row in json_lines(emit_log)
                           if row["chunk_index"] == MAX_TOKENS and row["t_monotonic_s"] < killed_at)
    run = load_run(out)  # the directory loads: manifest, JSONL (no parquet: it never finished)
    assert run.manifest.status == "running"
    rows = run.requests[run.requests["phase"] == "measure"]
    assert rows["error_class"].isna().all()
    # Each record is flushed when its request ends: at most the two requests in flight at the kill
    # (done line sent, not yet read by the client) are missing.
    assert done_before_kill - 2 <= len(rows) <= done_before_kill
    assert not rows.duplicated(["cell_id", "repeat", "request_index"]).any()

    # A killed run resumes like an interrupted one (in-process: the kill above is the process test).
    result = _cli("run", "--resume", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    resumed = load_run(out)
    assert resumed.manifest.status == "complete"
    final = resumed.requests[resumed.requests["phase"] == "measure"]
    assert len(final) == 400 and final["error_class"].isna().all()
    assert resumed.manifest.sessions[0].previous_status == "running"


RESUME_SCENARIO = """\
name: resume
target: sim
sim: {speed: 20, env: {OLLAMA_NUM_PARALLEL: '2'}}
workload:
  endpoint: native/chat
  model: llama3.2:1b
  prompt: {tokens: 64}
  max_tokens: 16
load:
  concurrency: [1, 2, 2]
  requests: [4, 300, 5]
  warmup_requests: 1
matrix:
  zip: [[concurrency, requests]]
"""


def _interrupted_run(tmp_path: Path) -> tuple[Path, Path]:
    """A run SIGINTed while its second cell runs: cell 1 complete, cell 2 partial, cell 3 pending."""
    scenario = write_scenario(tmp_path, RESUME_SCENARIO)
    out = tmp_path / "run"
    process = start_bench("run", str(scenario), "--out", str(out), "--no-report", "--grace", "30")

    def second_cell_started() -> bool:
        cells = manifest_or_empty(out).get("cells") or [{}]
        if cells[0].get("status") != "complete":
            return False
        return sum(1 for r in measured(out) if r["cell_id"] == cells[1]["cell_id"]) >= 2

    try:
        wait_for(second_cell_started, what="the second cell under way")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
    finally:
        process.kill()
    assert process.returncode == 130, output
    return scenario, out


def test_resume_runs_only_unfinished_cells_and_counts_each_once(tmp_path: Path) -> None:
    scenario, out = _interrupted_run(tmp_path)
    first = manifest(out)
    assert [c["status"] for c in first["cells"]] == ["complete", "partial", "pending"]
    cell_ids = [c["cell_id"] for c in first["cells"]]
    first_cell_before = [r for r in measured(out) if r["cell_id"] == cell_ids[0]]
    partial_before = [r for r in json_lines(out / "requests.jsonl") if r["cell_id"] == cell_ids[1]]

    # In-process: the interrupt above is the process test; the resume's exit and output are the CLI's.
    result = _cli("run", str(scenario), "--resume", str(out))
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output and "2 of 3 cells" in result.output

    final = manifest(out)
    assert final["status"] == "complete"
    assert [c["status"] for c in final["cells"]] == ["complete"] * 3
    assert final["sessions"][0]["previous_status"] == "partial"
    assert final["sessions"][0]["cells"] == cell_ids[1:]
    records = measured(out)
    counts = collections.Counter(r["cell_id"] for r in records)
    assert [counts[cell_id] for cell_id in cell_ids] == [4, 300, 5]
    keys = [(r["cell_id"], r["repeat"], r["request_index"]) for r in records]
    assert len(keys) == len(set(keys))
    # The complete cell was not run again: its records are the very same.
    assert [r for r in records if r["cell_id"] == cell_ids[0]] == first_cell_before
    # The interrupted cell's first attempt is kept aside, not counted.
    assert json_lines(out / "requests.superseded.jsonl") == partial_before
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(row["ok"] for row in summary) == [4, 5, 300]
    assert (out / "report.html").exists()
    assert len(load_run(out).requests.query("phase == 'measure'")) == 309


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path) -> None:
    missing = _cli("run", "--resume", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and missing.output.count("\n") == 1
    assert "no such directory" in missing.output

    (tmp_path / "empty").mkdir()
    not_a_run = _cli("run", "--resume", str(tmp_path / "empty"))
    assert not_a_run.exit_code == 2 and "not a bench run" in not_a_run.output
    assert not_a_run.output.count("\n") == 1

    overrides = _cli("run", "--resume", str(tmp_path / "empty"), "--requests", "3")
    assert overrides.exit_code == 2 and "come from the run being resumed" in overrides.output

    nothing = _cli("run")
    assert nothing.exit_code == 2 and "SCENARIO_FILE" in nothing.output


def test_resume_refuses_a_different_scenario_and_a_finished_run(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, RESUME_SCENARIO.replace("[4, 300, 5]", "[2, 3, 2]"))
    out = tmp_path / "run"
    assert _cli("run", str(scenario), "--out", str(out), "--no-report").exit_code == 0

    other = write_scenario(tmp_path, RESUME_SCENARIO.replace("[4, 300, 5]", "[2, 4, 2]"), "other.yaml")
    differs = _cli("run", str(other), "--resume", str(out))
    assert differs.exit_code == 2 and differs.output.count("\n") == 1
    assert "differs from the run's scenario at load.requests" in differs.output

    done = _cli("run", str(scenario), "--resume", str(out))
    assert done.exit_code == 0 and "nothing to resume" in done.output
