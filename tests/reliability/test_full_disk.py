"""A full disk while a run writes its manifest, its records or its end files: one line naming the
file, exit 2, no traceback; the manifest left as the last whole write (resumable) and every record
already appended kept; `bench run --resume` then finishes the run (issue 26, second pass).

The disk fills through a monkeypatched write that fails with ENOSPC after a number of writes of
that file (the first bytes reach the disk, as on a real full disk): no root, no tmpfs needed.
"""

from __future__ import annotations

import errno
import io
import pathlib
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

import bench.records as records_module
from bench.cli import cli
from reliability.support import json_lines, manifest, measured, write_scenario

SCENARIO = """\
target: sim
sim: {speed: 50}
workload: {model: llama3.2:1b, max_tokens: 4, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: [1, 2, 3], requests: 6, warmup_requests: 0}
"""
REQUESTS = 3 * 6


def _full(what: str) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class _FillingFile(io.RawIOBase):
    """requests.jsonl opened unbuffered, whose writes fail with ENOSPC after `room` of them."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: Any) -> int:
        if self.room <= 0:
            raise _full("requests.jsonl")
        self.room -= 1
        return int(self.real.write(data))

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.real.close()
        super().close()


def _fill_after(monkeypatch: pytest.MonkeyPatch, name: str, room: int,
                full_when: Callable[[bytes], bool] | None = None) -> None:
    """Writes of the file `name` fail with ENOSPC once `room` whole writes have succeeded (or, with
    `full_when`, from the first write whose bytes it picks); the disk stays full after that."""
    left = {"room": room, "full": False}
    if name == "requests.jsonl":
        real_open = open

        def opening(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            opened = real_open(path, mode, *args, **kwargs)
            return _FillingFile(opened, room) if Path(path).name == name and "a" in mode else opened

        monkeypatch.setattr(records_module, "open", opening, raising=False)
        return
    real_write_bytes = pathlib.Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        # The temporary beside the file (.manifest.json.tmp): half of it lands, then the disk is full.
        if name in self.name and self.name != name:
            left["full"] = left["full"] or (full_when(data) if full_when else left["room"] <= 0)
            if left["full"]:
                real_write_bytes(self, data[:len(data) // 2])
                raise _full(name)
            left["room"] -= 1
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)


@pytest.mark.e2e
@pytest.mark.parametrize(("name", "room"), [
    ("manifest.json", 3),  # mid-run: after the first cell's end was written
    ("manifest.json", 0),  # the very first write: nothing measured yet
    ("requests.jsonl", 8),  # mid-cell
])
def test_a_full_disk_is_one_line_naming_the_file_and_the_run_resumes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, room: int) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO)
    with monkeypatch.context() as patched:
        _fill_after(patched, name, room)
        result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--no-report"],
                                    env={"BENCH_DEBUG": ""})
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and str(out / name) in errors[0] and "No space left on device" in errors[0], \
        result.output
    assert "Traceback" not in result.output
    if name == "manifest.json" and room == 0:
        assert not out.exists() or not any(out.iterdir()), "nothing measured: nothing left behind"
        return
    kept = json_lines(out / "requests.jsonl")
    assert kept, "what was measured before the disk filled is kept"
    stored = manifest(out)  # whole JSON: the last complete write, never half a file
    assert stored["status"] in ("running", "failed"), stored["status"]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp")), "no temporary left behind"
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(out), "--no-report"], env={"BENCH_DEBUG": ""})
    assert resumed.exit_code == 0, resumed.output
    assert manifest(out)["status"] == "complete"
    assert len(measured(out)) == REQUESTS
    now = json_lines(out / "requests.jsonl") + json_lines(out / "requests.superseded.jsonl")
    assert all(row in now for row in kept), "every record written before the disk filled is still there"


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["requests.parquet", "summary.json", "manifest.json"])
def test_a_disk_that_fills_at_the_end_keeps_every_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          name: str) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SCENARIO.replace("[1, 2, 3]", "1"))
    with monkeypatch.context() as patched:
        if name == "requests.parquet":
            import pyarrow.parquet as pq

            def full(*args: Any, **kwargs: Any) -> None:
                raise _full(name)  # pyarrow's own error names no file

            patched.setattr(pq.ParquetWriter, "write_table", full)
        else:
            # manifest.json: every write before the run's last one (status complete) succeeds.
            _fill_after(patched, name, 0, (lambda data: b'"status": "complete"' in data)
                        if name == "manifest.json" else None)
        result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--no-report"],
                                    env={"BENCH_DEBUG": ""})
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and str(out / name) in errors[0] and "No space left on device" in errors[0], \
        result.output
    assert "Traceback" not in result.output
    assert len(measured(out)) == 6
    assert manifest(out)["status"] in ("running", "failed")
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp")), "no temporary left behind"
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(out), "--no-report"], env={"BENCH_DEBUG": ""})
    assert resumed.exit_code == 0, resumed.output
    assert manifest(out)["status"] == "complete" and len(measured(out)) == 6
