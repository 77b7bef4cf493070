"""The NVML sampler against a fake pynvml: timelines, per-process memory, and no-GPU behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.telemetry import start_telemetry
from bench.telemetry.nvml import GPU_COLUMNS, NvmlSampler, descendant_pids

from .fake_nvml import FakeDevice, FakeNvml
from polling import wait_for

GIB = 1024**3


@pytest.fixture
def fake_gpu() -> FakeNvml:
    return FakeNvml([FakeDevice("NVIDIA H100 80GB HBM3", 80 * GIB, 1 * GIB, util_pct=37, power_mw=250_500)])


@pytest.fixture
def sampler_factory() -> Iterator[Callable[..., NvmlSampler]]:
    started: list[NvmlSampler] = []

    def make(*args: object, **kwargs: object) -> NvmlSampler:
        sampler = NvmlSampler(*args, **kwargs)  # type: ignore[arg-type]
        started.append(sampler)
        return sampler

    yield make
    for sampler in started:
        sampler.stop()


def test_memory_allocation_appears_in_the_timeline(fake_gpu: FakeNvml, sampler_factory) -> None:
    sampler = sampler_factory(time.monotonic(), [os.getpid()], 0.01, nvml=fake_gpu)
    sampler.start()
    wait_for(lambda: len(sampler.samples) >= 3)
    fake_gpu.set_process_memory(0, os.getpid(), 2 * GIB)
    wait_for(lambda: sampler.samples[-1].server_proc_mem_bytes == 2 * GIB)
    sampler.stop()
    timeline = sampler.to_table().to_pandas()
    assert list(timeline.columns) == list(GPU_COLUMNS)
    assert timeline["mem_used_bytes"].iloc[0] == 1 * GIB
    assert timeline["mem_used_bytes"].iloc[-1] == 3 * GIB
    assert (timeline["mem_free_bytes"] + timeline["mem_used_bytes"] == 80 * GIB).all()
    assert timeline["t_s"].is_monotonic_increasing
    assert timeline["name"].iloc[0] == "NVIDIA H100 80GB HBM3"
    assert timeline["power_w"].iloc[0] == pytest.approx(250.5)
    assert timeline["util_gpu_pct"].iloc[0] == 37


def test_server_memory_sums_only_the_server_processes(sampler_factory) -> None:
    device = FakeDevice("GPU", 24 * GIB, 0, processes={111: 3 * GIB, 222: 5 * GIB, 333: 7 * GIB})
    # Server PIDs that do not exist on this host: descendants are looked up but none are found.
    sampler = sampler_factory(0.0, [111, 333], 0.1, nvml=FakeNvml([device]))
    (row,) = sampler.sample_once()
    assert row.server_proc_mem_bytes == 10 * GIB
    assert row.mem_used_bytes == 15 * GIB


def test_child_runner_processes_count_as_server_memory(sampler_factory) -> None:
    # Ollama's runner is a child of `ollama serve`: memory held by a child of the given PID counts.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in descendant_pids([os.getpid()])
        device = FakeDevice("GPU", 24 * GIB, 0, processes={child.pid: 4 * GIB, 999_999_999: GIB})
        sampler = sampler_factory(0.0, [os.getpid()], 0.1, nvml=FakeNvml([device]))
        (row,) = sampler.sample_once()
        assert row.server_proc_mem_bytes == 4 * GIB
    finally:
        child.kill()
        child.wait()


def test_without_server_pids_process_memory_is_null(fake_gpu: FakeNvml, sampler_factory) -> None:
    sampler = sampler_factory(0.0, None, 0.1, nvml=fake_gpu)
    (row,) = sampler.sample_once()
    assert row.server_proc_mem_bytes is None


def test_unsupported_power_reading_is_null_not_fatal(sampler_factory) -> None:
    device = FakeDevice("GPU", 8 * GIB, GIB, power_mw=-1)
    sampler = sampler_factory(0.0, None, 0.1, nvml=FakeNvml([device]))
    (row,) = sampler.sample_once()
    assert row.power_w is None and row.mem_used_bytes == GIB


def test_every_device_is_sampled(sampler_factory) -> None:
    devices = [FakeDevice("A", 16 * GIB, GIB), FakeDevice("B", 16 * GIB, 2 * GIB)]
    sampler = sampler_factory(0.0, None, 0.1, nvml=FakeNvml(devices))
    rows = sampler.sample_once()
    assert [(r.device, r.name, r.mem_used_bytes) for r in rows] == [(0, "A", GIB), (1, "B", 2 * GIB)]
    assert sampler.gpu_info == {
        "driver_version": "550.54.15",
        "devices": [
            {"index": 0, "name": "A", "mem_total_bytes": 16 * GIB},
            {"index": 1, "name": "B", "mem_total_bytes": 16 * GIB},
        ],
    }


def test_nvml_error_at_init_gives_one_note_and_no_file(tmp_path: Path) -> None:
    broken = FakeNvml([], init_error="Driver Not Loaded")
    session = start_telemetry(tmp_path, time.monotonic(), None, None, nvml=broken)
    session.stop()
    session.stop()
    assert session.notes == ["no GPU telemetry (NVML: Driver Not Loaded)"]
    assert session.gpu_info is None
    assert not (tmp_path / "gpu.parquet").exists()


def test_missing_nvml_library_is_not_an_error(tmp_path: Path) -> None:
    # The real pynvml on a machine without a driver (CI): a note, never an exception.
    sampler = NvmlSampler(0.0, None, 0.1)
    sampler.start()
    sampler.stop()
    if sampler.available:
        pytest.skip("this machine has an NVIDIA driver")
    assert len(sampler.notes) == 1 and sampler.notes[0].startswith("no GPU telemetry (NVML: ")


def test_session_writes_gpu_parquet_at_10_hz(fake_gpu: FakeNvml, tmp_path: Path) -> None:
    t0 = time.monotonic()
    session = start_telemetry(tmp_path, t0, None, [os.getpid()], interval_s=0.1, nvml=fake_gpu)
    try:
        wait_for(lambda: len(session.nvml_sampler.samples) >= 5)
    finally:
        written = session.stop()
    assert tmp_path / "gpu.parquet" in written
    timeline = pd.read_parquet(tmp_path / "gpu.parquet")
    assert len(timeline) >= 5
    gaps = timeline["t_s"].diff().dropna()
    # The cadence is 0.1 s; a loaded CI host may stretch single gaps, never the median much.
    assert gaps.median() < 0.2
    assert session.gpu_info is not None and session.gpu_info["devices"][0]["mem_total_bytes"] == 80 * GIB
    assert fake_gpu.shutdowns == 1


def test_selfcheck_without_a_gpu_says_so_and_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.telemetry import selfcheck

    if NvmlSampler(0.0).available:
        pytest.skip("this machine has an NVIDIA driver: run `python -m bench.telemetry.selfcheck` instead")
    assert selfcheck.main(["--out", str(tmp_path)]) == 3
    assert capsys.readouterr().out.startswith("no GPU telemetry (NVML: ")
