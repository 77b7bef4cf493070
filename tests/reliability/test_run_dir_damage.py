"""Damaged run directories and output paths give one line, never a traceback; a run killed after
its last record is finished by --resume; timelines are written whole or not at all (issue 16)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.cli.funnel import EXIT_INTERNAL
from bench.records import load_run
from bench.telemetry.ollama_ps import PsPoller, PsRow
from reliability.support import bench, write_scenario

QUICK = """\
name: damage
target: sim
sim: {speed: 50}
workload: {model: llama3.2:1b, max_tokens: 8, prompt: {tokens: 16, calibrate: false}}
load: {concurrency: 2, requests: 4, warmup_requests: 0}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("damage")
    out = root / "run"
    result = bench("run", str(write_scenario(root, QUICK)), "--out", str(out), "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def _invoke(*args: str):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": ""})


def _damage_manifest(run: Path, change) -> None:  # noqa: ANN001
    path = run / "manifest.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


DAMAGE = {
    "manifest is a list": lambda run: (run / "manifest.json").write_text("[1, 2]"),
    "cells not a list": lambda run: _damage_manifest(run, lambda m: {**m, "cells": 5}),
    "cell not an object": lambda run: _damage_manifest(run, lambda m: {**m, "cells": ["x"]}),
    "manifest not JSON": lambda run: (run / "manifest.json").write_text("{"),
    "corrupt requests.parquet": lambda run: (run / "requests.parquet").write_bytes(b"garbage"),
    "corrupt ps.parquet": lambda run: (run / "ps.parquet").write_bytes(b"PAR1 cut"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["report", "compare", "baseline"])
def test_a_damaged_run_directory_is_one_line_or_read(finished_run: Path, tmp_path: Path, damage: str,
                                                     command: str) -> None:
    run = _copy(finished_run, tmp_path)
    DAMAGE[damage](run)
    args = {"report": ["report", str(run), "-o", str(tmp_path / "r.html")],
            "compare": ["compare", str(finished_run), str(run)],
            "baseline": ["baseline", "save", str(run), str(tmp_path / "b.json")]}[command]
    result = _invoke(*args)
    assert result.exit_code != EXIT_INTERNAL and "Traceback" not in result.output, result.output
    if result.exit_code == 2:
        (line,) = result.output.strip().splitlines()
        assert line.startswith("error: ") and str(run) in line


@pytest.mark.e2e
def test_records_that_are_not_objects_or_have_wrong_types_are_read_around(finished_run: Path,
                                                                          tmp_path: Path) -> None:
    run = _copy(finished_run, tmp_path)
    (run / "requests.parquet").unlink()
    rows = [json.loads(line) for line in (run / "requests.jsonl").read_text().splitlines()]
    rows[0]["ttft_s"], rows[1]["chunk_times_s"], rows[2]["output_tokens"] = "fast", "x", 2**70
    lines = [json.dumps(row) for row in rows] + ["[1, 2]", '"text"', "3"]
    (run / "requests.jsonl").write_text("\n".join(lines) + "\n")
    loaded = load_run(run)
    assert len(loaded.requests) == len(rows)
    assert loaded.requests["output_tokens"].isna().sum() >= 1
    result = _invoke("report", str(run), "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 0, result.output


@pytest.mark.e2e
def test_a_run_killed_after_its_last_record_is_finished_by_resume(finished_run: Path, tmp_path: Path) -> None:
    run = _copy(finished_run, tmp_path)
    # What a kill -9 between the last record and the outputs leaves: every cell complete, the
    # run still "running", no parquet, summary or report.
    _damage_manifest(run, lambda m: {**m, "status": "running", "ended_at": None})
    for name in ("requests.parquet", "summary.csv", "summary.json", "report.html"):
        (run / name).unlink(missing_ok=True)
    result = bench("run", "--resume", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "finishing" in result.stdout
    assert json.loads((run / "manifest.json").read_text())["status"] == "complete"
    for name in ("requests.parquet", "summary.json", "report.html"):
        assert (run / name).exists(), name
    again = bench("run", "--resume", str(run))
    assert again.returncode == 0 and "nothing to resume" in again.stdout


def test_output_paths_the_system_refuses_are_one_line(finished_run: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    for args in (["report", str(finished_run), "-o", str(a_dir)],
                 ["report", str(finished_run), "-o", str(blocker / "r.html")],
                 ["baseline", "save", str(finished_run), str(blocker / "b.json")],
                 ["compare", str(finished_run), str(finished_run), "--junit", str(blocker / "j.xml")]):
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        # compare prints its table before writing the files: the error is the one last line.
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "cannot write" in errors[0], result.output
        assert result.output.rstrip().endswith(errors[0]) and "Traceback" not in result.output


@pytest.mark.parametrize("content", [
    b"GGUF" + struct.pack("<IQQ", 3, 0, 5) + struct.pack("<Q", 100) + b"general.arch",  # cut mid-key
    b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**40) + b"x",  # absurd counts
    b"GGUF",
])
def test_a_truncated_gguf_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(content)
    result = _invoke("kv", "--gguf", str(path), "--ctx", "4096")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {path}: not a readable GGUF file")


def test_a_timeline_write_cut_short_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    poller = PsPoller(0.0, None)
    poller.rows.append(PsRow(**{name: None for name in PsRow.__dataclass_fields__} | {"t_s": 1.0}))
    path = tmp_path / "ps.parquet"
    poller.write(path)
    before = path.read_bytes()
    real_write = pq.write_table

    def killed_midway(table: pa.Table, where: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        Path(where).write_bytes(b"PAR1 half a file")
        raise KeyboardInterrupt  # as a kill during the write

    monkeypatch.setattr(pq, "write_table", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        poller.write(path)
    monkeypatch.setattr(pq, "write_table", real_write)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ps.parquet"]
