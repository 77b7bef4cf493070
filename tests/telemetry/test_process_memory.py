"""Process-memory telemetry: RSS of the managed server's tree, and of its llama-server children."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.telemetry.process_memory import ProcessMemorySampler, sample_tree


def _fake_proc(root: Path, pid: int, ppid: int, name: str, rss_kib: int, anon_kib: int) -> None:
    entry = root / str(pid)
    entry.mkdir()
    (entry / "stat").write_text(f"{pid} ({name}) S {ppid} 1 1 0")
    (entry / "status").write_text(
        f"Name:\t{name}\nVmRSS:\t{rss_kib} kB\nRssAnon:\t{anon_kib} kB\nRssFile:\t{rss_kib - anon_kib} kB\n"
    )


def test_tree_rss_sums_the_server_and_its_engine_children(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 100, 1, "python3", 50_000, 40_000)  # bench sim
    _fake_proc(tmp_path, 101, 100, "llama-server", 300_000, 290_000)
    _fake_proc(tmp_path, 102, 100, "llama-server", 200_000, 150_000)
    _fake_proc(tmp_path, 200, 1, "llama-server", 999_999, 999_999)  # someone else's: not counted
    sample = sample_tree([100], t_s=1.5, proc_dir=tmp_path)
    assert sample.processes == 3 and sample.engine_processes == 2
    assert sample.rss_bytes == 550_000 * 1024
    assert sample.engine_rss_bytes == 500_000 * 1024
    assert sample.rss_anon_bytes == 480_000 * 1024


def test_a_process_that_vanished_is_skipped(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 100, 1, "ollama", 10, 10)
    (tmp_path / "101").mkdir()  # listed, then gone before its status was read
    (tmp_path / "101" / "stat").write_text("101 (llama-server) S 100 1 1 0")
    assert sample_tree([100], 0.0, tmp_path).processes == 1


def test_sampler_writes_a_timeline_of_a_real_process(tmp_path: Path) -> None:
    sampler = ProcessMemorySampler(time.monotonic(), [os.getpid()], interval_s=0.01)
    sampler.start()
    deadline = time.monotonic() + 10
    while len(sampler.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    sampler.stop()
    path = sampler.write(tmp_path / "proc.parquet")
    assert path is not None
    table = pq.read_table(path).to_pandas()
    assert len(table) >= 3 and (table["rss_bytes"] > 10 * 2**20).all()
    assert table["t_s"].is_monotonic_increasing


def test_no_server_pids_means_no_file(tmp_path: Path) -> None:
    sampler = ProcessMemorySampler(time.monotonic(), None)
    assert sampler.sample_once() is None
    assert sampler.write(tmp_path / "proc.parquet") is None


def test_the_report_draws_the_process_memory_timeline() -> None:
    import pandas as pd

    from bench.analysis.run_analysis import analyse_run
    from bench.records import Run
    from bench.report import memory
    from bench.report.data import RunView

    proc = pd.DataFrame({"t_s": [0.0, 0.25, 0.5], "processes": [2, 2, 2], "rss_bytes": [2**27] * 3,
                         "rss_anon_bytes": [2**26] * 3, "rss_file_bytes": [2**26] * 3, "engine_processes": [1] * 3,
                         "engine_rss_bytes": [2**26] * 3})
    run = Run(Path("."), {"run_id": "r"}, pd.DataFrame(), pd.DataFrame(), proc=proc)
    view = RunView(analyse_run(run), "r", pd.DataFrame(), ())
    section = memory.build([view])
    assert section is not None
    assert any("llama-server processes" in str(getattr(block, "caption", "")) for block in section.blocks)
