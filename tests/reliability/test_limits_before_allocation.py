"""Sizes are checked before the allocation: a GGUF too large to make, a matrix of 10^9 cells, a
report past its limit, inputs that are not regular files (FIFOs, devices, symlink loops) or are
too large, and GGUF headers claiming impossible lengths are one line at once (issue 26, class 3)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from reliability.support import bench, write_scenario

QUICK = """\
name: limits
target: sim
sim: {speed: 50}
workload: {model: llama3.2:1b, max_tokens: 8, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: 1, requests: 2, warmup_requests: 0}
"""


def _invoke(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": ""})


def _one_line(result, fragment: str) -> None:  # noqa: ANN001 - click's Result
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("flags", [["--layers", "256", "--hidden", "16384", "--ffn", "65536"],
                                   ["--vocab", "65536", "--hidden", "16384", "--layers", "1"]])
def test_gguf_make_refuses_a_shape_too_large_before_building(tmp_path: Path, flags: list[str]) -> None:
    out = tmp_path / "big.gguf"
    started = time.monotonic()
    result = _invoke("gguf", "make", str(out), *flags)
    _one_line(result, "GiB of memory, over bench gguf make's limit of 3 GiB")
    assert not out.exists()
    assert time.monotonic() - started < 30  # refused from the flags, not after allocating


def test_a_matrix_of_a_billion_cells_is_refused_before_expansion(tmp_path: Path) -> None:
    values = "[" + ",".join(str(n) for n in range(1, 1001)) + "]"
    scenario = write_scenario(tmp_path, f"""\
target: sim
workload: {{model: m, max_tokens: {values}, prompt: {{tokens: {values}, calibrate: false}}}}
load: {{concurrency: {values}}}
""")
    result = bench("validate", str(scenario), timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "1000 x 1000 x 1000 = 1,000,000,000 cells, over the limit of 10,000" in result.stderr


def test_a_report_past_its_cell_limit_is_refused_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert bench("run", str(write_scenario(tmp_path, QUICK)), "--out", str(out), "--no-report").returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    cell = manifest["cells"][0]
    manifest["cells"] = [{**cell, "cell_id": f"{cell['cell_id']}-{index}", "cell_index": index}
                         for index in range(1001)]
    (out / "manifest.json").write_text(json.dumps(manifest))
    started = time.monotonic()
    result = _invoke("report", str(out))
    _one_line(result, "1,001 cells, over the report's limit of 1,000")
    assert not (out / "report.html").exists()
    assert time.monotonic() - started < 30  # nothing drawn (2,000 cells took 4.6 min to draw on a busy 2-core box)


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    return tmp_path / "loop-a"


KINDS = {"fifo": (_fifo, "a FIFO"), "dev-zero": (lambda tmp: Path("/dev/zero"), "a character device"),
         "symlink-loop": (_loop, "Too many levels of symbolic links"),
         "directory": (lambda tmp: tmp, "a directory")}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("command", ["validate", "compare", "sim-catalog"])
def test_an_input_that_is_not_a_regular_file_is_one_line_never_a_hang(tmp_path: Path, kind: str,
                                                                      command: str) -> None:
    make, fragment = KINDS[kind]
    path = str(make(tmp_path))
    if command == "compare" and kind in ("directory", "symlink-loop"):
        # A directory is what a run is (it must hold a manifest); a loop resolves to nothing.
        fragment = {"directory": "not a run directory", "symlink-loop": "no such baseline file"}[kind]
    args = {"validate": ["validate", path], "compare": ["compare", path, path],
            "sim-catalog": ["sim", "--catalog", path, "--port", "0"]}[command]
    if kind in ("fifo", "dev-zero"):
        # A subprocess: before the fix a FIFO read blocked forever and /dev/zero filled memory.
        result = bench(*args, timeout_s=60)
        code, output = result.returncode, result.stderr
    else:
        invoked = _invoke(*args)
        code, output = invoked.exit_code, invoked.output
    assert code == 2, output
    errors = output.strip().splitlines()
    assert len(errors) == 1 and fragment in errors[0], output


@pytest.mark.parametrize("record", ["manifest.json", "requests.jsonl"])
def test_a_run_directory_whose_records_are_a_fifo_or_device_is_one_line(tmp_path: Path, record: str) -> None:
    run = tmp_path / "run"
    assert bench("run", str(write_scenario(tmp_path, QUICK)), "--out", str(run), "--no-report").returncode == 0
    (run / "requests.parquet").unlink()
    (run / record).unlink()
    if record == "manifest.json":
        (run / record).symlink_to("/dev/zero")
    else:
        os.mkfifo(run / record)
    result = bench("report", str(run), timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a regular" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_scenario_file_past_its_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as sparse:
        sparse.truncate(17 * 2**20)  # sparse: nothing is written, the size is what counts
    result = _invoke("validate", str(path))
    _one_line(result, "17,825,792 bytes, over the limit of 16,777,216 for a scenario file")


def _kv_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


GGUF_LIES = {
    "uint8 array of 2^60": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _kv_string(b"general.architecture")
                           + struct.pack("<IIQ", 9, 0, 2**60) + b"x" * 100,
    "string array of 2^40": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _kv_string(b"k")
                            + struct.pack("<IIQ", 9, 8, 2**40) + b"\0" * 1000,
    "key of 2^63 bytes": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**63) + b"x" * 100,
    "tensor with 2^31 dims": b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + _kv_string(b"t") + struct.pack("<I", 2**31)
                             + b"\0" * 64,
}


@pytest.mark.parametrize("lie", list(GGUF_LIES))
def test_a_gguf_header_claiming_impossible_lengths_is_one_line(tmp_path: Path, lie: str) -> None:
    path = tmp_path / "lie.gguf"
    path.write_bytes(GGUF_LIES[lie])
    result = bench("kv", "--gguf", str(path), "--ctx", "4096", timeout_s=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a readable GGUF file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_real_gguf_header_passes_the_length_check(tmp_path: Path) -> None:
    from bench.analysis.gguf_header import check_gguf_header

    lines = [b"GGUF" + struct.pack("<IQQ", 3, 1, 2),
             _kv_string(b"general.architecture") + struct.pack("<I", 8) + _kv_string(b"llama"),
             _kv_string(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + _kv_string(b"a") + _kv_string(b"bc"),
             _kv_string(b"token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 4, 2)
             + struct.pack("<IQ", 0, 0)]
    path = tmp_path / "ok.gguf"
    path.write_bytes(b"".join(lines) + b"\0" * 64)
    check_gguf_header(path)  # no exception
