"""Hostile server JSON, impossible numbers, full disks and narrow terminals (issue 26, class 6):
every reader of server JSON is bounded in size and depth and typed, every count a server sends is
checked for sign and range, a failed write names its file and leaves a resumable run, and a
terminal that cannot encode `…` gets escapes instead of a UnicodeEncodeError."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import TargetError
from bench.telemetry.ollama_ps import PsPoller
from bench.telemetry.server_info import show_model
from polling import wait_for
from reliability.support import bench, manifest, measured, write_scenario

DEEP = b"[" * 100_000 + b"]" * 100_000


def invoke(*args: str):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": ""}, prog_name="bench")


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def _show_answer(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(200, content=body))


@pytest.mark.parametrize(("body", "says"), [
    (DEEP, "answered with something other than JSON"),
    (b'{"model_info": ' + b"[" * 40 + b"]" * 40 + b"}", "nested more than 32 levels"),
    (b'{"model_info": [1, 2]}', "model_info is a list, not a JSON object"),
    (b'{"model_info": {"a": 1}, "details": "x"}', "details is a str, not a JSON object"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"model_info": {}, "capabilities": {"a": 1}}', "capabilities is a dict, not a list"),
])
def test_a_hostile_api_show_is_one_target_error(body: bytes, says: str) -> None:
    with pytest.raises(TargetError) as raised:
        show_model("http://127.0.0.1:9", "m", transport=_show_answer(body), need_model_info=False)
    assert says in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("body", [
    DEEP,
    b'{"models": ' + b"[" * 50 + b"]" * 50 + b"}",
    b'{"models": [1, "x", null, [2]]}',
    b'{"models": [{"name": "m", "size": -5, "size_vram": 1e308, "context_length": [1]}]}',
    b'{"models": [{"name": "m", "size": {"a": 1}, "size_vram": true}]}',
])
def test_hostile_api_ps_answers_never_end_sampling(body: bytes) -> None:
    answers = {"count": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        answers["count"] += 1
        return httpx.Response(200, content=body)

    poller = PsPoller(0.0, "http://127.0.0.1:9", interval_s=0.01, transport=httpx.MockTransport(handler))
    poller.start()
    try:
        wait_for(lambda: answers["count"] >= 5, timeout_s=30, what="five polls")
        assert poller._thread is not None and poller._thread.is_alive()
    finally:
        poller.stop()
    for row in poller.rows:  # what was kept is typed: counts are non-negative ints or None
        for value in (row.size_bytes, row.size_vram_bytes, row.context_length):
            assert value is None or (type(value) is int and value >= 0)


def test_a_deeply_nested_baseline_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(DEEP)
    result = invoke("compare", str(path), str(path))
    assert result.exit_code == 2
    assert one_line(result.output).startswith(f"error: {path}")


def test_a_prompt_file_that_is_a_symlink_loop_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    scenario = write_scenario(tmp_path, "target: sim\nworkload: {model: m, prompt: {file: a}}\nload: {requests: 1}\n")
    result = invoke("validate", str(scenario))
    assert result.exit_code == 2
    line = one_line(result.output)
    assert "workload.prompt.file: cannot read (Too many levels of symbolic links)" in line, line
    flags = invoke("run", "--target", "sim", "--model", "m", "--prompt-file", str(tmp_path / "a"))
    assert flags.exit_code == 2 and "symbolic links" in one_line(flags.output)


SCENARIO = """\
target: sim
sim: {speed: 50}
workload: {model: llama3.2:1b, max_tokens: 4, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: 8, requests: 400, warmup_requests: 0}
"""


def _file_size_limit(limit_bytes: int):  # noqa: ANN202 - a preexec_fn
    def limit() -> None:
        # EFBIG past the limit (SIGXFSZ ignored): the same failed write() as a full disk's ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))
    return limit


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_failed_record_write_names_the_file_and_the_run_resumes(tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO)
    result = subprocess.run([sys.executable, "-m", "bench", "run", str(scenario), "--out", str(out), "--no-report"],
                            capture_output=True, text=True, timeout=180, preexec_fn=_file_size_limit(60_000))
    assert result.returncode == 2, result.stderr
    assert one_line(result.stderr) == f"error: {out / 'requests.jsonl'}: File too large"
    assert manifest(out)["status"] == "failed"
    resumed = bench("run", "--resume", str(out), "--no-report")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(measured(out)) == 400


@pytest.mark.e2e
def test_resume_runs_again_a_complete_cell_whose_records_are_gone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO.replace("requests: 400", "requests: 3"))
    assert bench("run", str(scenario), "--out", str(out), "--no-report").returncode == 0
    (out / "requests.jsonl").unlink()
    (out / "requests.parquet").unlink(missing_ok=True)
    resumed = bench("run", "--resume", str(out), "--no-report")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "nothing to resume" not in resumed.stdout + resumed.stderr
    assert len(measured(out)) == 3 and manifest(out)["status"] == "complete"


@pytest.mark.e2e
def test_an_ascii_terminal_gets_escapes_not_a_unicode_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO.replace("requests: 400", "requests: 2"))
    result = bench("run", str(scenario), "--out", str(out), "--no-report",
                   env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert "UnicodeEncodeError" not in result.stderr
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


@pytest.mark.parametrize(("key", "value", "says"), [
    ("attention.head_count", 0, "llama.attention.head_count is 0"),
    ("attention.head_count", -4, "llama.attention.head_count is -4"),
    ("block_count", "16", "llama.block_count: '16' is not a whole number"),
    ("embedding_length", [64, "x"], "is not a whole number"),
    ("context_length", 2**70, "llama.context_length is"),
])
def test_impossible_model_shapes_from_a_server_are_one_target_error(key: str, value: Any, says: str) -> None:
    from bench.analysis.kv_model import ModelArch

    info = {"general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 64,
            "llama.attention.head_count": 2, "llama.context_length": 2048, f"llama.{key}": value}
    with pytest.raises(TargetError) as raised:
        ModelArch.from_model_info(info, source="http://x/api/show m")
    assert says in str(raised.value)


def test_a_gguf_with_head_count_0_is_one_line(tmp_path: Path) -> None:
    made = tmp_path / "tiny.gguf"
    result = invoke("gguf", "make", str(made), "--layers", "1", "--hidden", "64", "--heads", "2", "--kv-heads", "2",
                    "--ffn", "64", "--vocab", "300")
    assert result.exit_code == 0, result.output
    data = bytearray(made.read_bytes())
    key = b"llama.attention.head_count"
    at = data.find(key + b"\x04\x00\x00\x00")  # the key, then its type: uint32
    assert at > 0
    value_at = at + len(key) + 4
    data[value_at:value_at + 4] = (0).to_bytes(4, "little")
    broken = tmp_path / "heads0.gguf"
    broken.write_bytes(bytes(data))
    result = invoke("kv", "--gguf", str(broken))
    assert result.exit_code == 2
    assert one_line(result.output) == f"error: {broken}: llama.attention.head_count is 0: a model shape needs 1 to 2^48"


@pytest.mark.e2e
def test_records_with_1e308_times_are_read_around_without_numpy_warnings(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO.replace("requests: 400", "requests: 4"))
    assert bench("run", str(scenario), "--out", str(out), "--no-report").returncode == 0
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    for row in rows[-2:]:
        row.update(end_s=1e308, first_token_s=1e308, chunk_times_s=[1e308, -1e308], eval_duration_ns=10**30)
    (out / "requests.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (out / "requests.parquet").unlink()
    result = bench("report", str(out))
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr and "overflow" not in result.stderr
