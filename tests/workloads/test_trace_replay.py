"""Trace replay: original timing (time-scaled), prompts or token counts, max_tokens, conversations."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import ScenarioError
from bench.records import load_run
from bench.workload.trace import read_trace

TRACE = """\
{"timestamp": 100.0, "prompt_tokens": 200, "max_tokens": 16, "conversation_id": "a"}
{"timestamp": 100.5, "prompt": "What is the capital of France?", "max_tokens": 8}
{"timestamp": 101.0, "prompt_tokens": 100, "max_tokens": 16, "conversation_id": "a"}
{"timestamp": 102.0, "prompt_tokens": 300, "max_tokens": 32}
{"timestamp": 102.2, "prompt_tokens": 100, "max_tokens": 12, "conversation_id": "a"}
"""


def test_trace_lines_are_read_in_time_order_and_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp_ms": 2000, "prompt": "b"}\n{"timestamp": 1, "prompt": "a"}\n')
    assert [e.prompt for e in read_trace(path)] == ["a", "b"]
    path.write_text('{"timestamp": 1, "prompt": "a"}\n{"timestamp": 2}\n')
    with pytest.raises(ScenarioError, match=r"t.jsonl:2: needs a prompt or prompt_tokens"):
        read_trace(path)
    path.write_text('{"timestamp": -1, "prompt": "a"}\n')
    with pytest.raises(ScenarioError, match=r"t.jsonl:1: timestamp: Input should be greater"):
        read_trace(path)


@pytest.mark.e2e
def test_a_trace_replays_with_its_timing_turns_and_lengths(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=20.0)
    (tmp_path / "trace.jsonl").write_text(TRACE)
    scenario = tmp_path / "s.yaml"
    scenario.write_text("workload: {model: llama3.2:1b}\n"
                        "load: {arrival: trace, trace: {file: trace.jsonl, time_scale: 0.5}}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                      "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    measured = load_run(out).requests.query("phase == 'measure'").sort_values("scheduled_s")
    assert len(measured) == 5 and measured["error_class"].isna().all()
    offsets = (measured["scheduled_s"] - measured["scheduled_s"].iloc[0]).round(6).tolist()
    assert offsets == [0.0, 0.25, 0.5, 1.0, 1.1]  # the trace's gaps x 0.5
    assert (measured["output_tokens"] <= [16, 8, 16, 32, 12]).all()
    turns = measured[measured["conversation_id"] == "r0-a"]
    assert turns["turn"].tolist() == [1, 2, 3]
    # Each turn resends the history: the prompt grows by the previous reply and the new message.
    prompts = turns["prompt_tokens"].tolist()
    assert prompts[1] > prompts[0] + 100 and prompts[2] > prompts[1] + 100
    assert (tmp_path / "run" / "scenario.yaml").exists()


def test_a_trace_with_workers_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "trace.jsonl").write_text(TRACE)
    scenario = tmp_path / "s.yaml"
    scenario.write_text("target: sim\nworkload: {model: llama3.2:1b}\n"
                        "load: {arrival: trace, trace: {file: trace.jsonl}}\n")
    result = CliRunner().invoke(cli, ["run", str(scenario), "--workers", "2", "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--workers: a trace is replayed in one process" in result.output
    assert not (tmp_path / "run").exists()
