"""Process-memory timeline: RSS of the managed server's process tree, on the same clock as NVML.

Where there is no NVML (a CPU box, a Mac) this is bench's only measurement of real memory: the
KV analysis fits bytes per token from it. `engine_rss_bytes` counts only llama-server processes
(the engine's KV cache, weights and compute buffers live there), `rss_bytes` the whole tree
(for `ollama serve` or `bench sim` with the simulated engine, the server itself). Linux only
(/proc); elsewhere the sampler says so in one note and records nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.telemetry.nvml import descendant_pids

ENGINE_PROCESS_NAMES = ("llama-server",)
_KIB = 1024

PROC_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("processes", pa.int32()),
        ("rss_bytes", pa.int64()),
        ("rss_anon_bytes", pa.int64()),
        ("rss_file_bytes", pa.int64()),
        ("engine_processes", pa.int32()),
        ("engine_rss_bytes", pa.int64()),
    ]
)


@dataclass(frozen=True, slots=True)
class ProcessMemorySample:
    t_s: float
    processes: int
    rss_bytes: int
    rss_anon_bytes: int
    rss_file_bytes: int
    engine_processes: int
    engine_rss_bytes: int


@dataclass(frozen=True, slots=True)
class _ProcStatus:
    name: str
    rss_bytes: int
    rss_anon_bytes: int
    rss_file_bytes: int


def read_proc_status(pid: int, proc_dir: Path = Path("/proc")) -> _ProcStatus | None:
    """Name and resident memory of one process from /proc/PID/status; None if it is gone."""
    try:
        text = (proc_dir / str(pid) / "status").read_text()
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        values[key] = value.strip()

    def kib(key: str) -> int:
        raw = values.get(key, "0 kB").split()
        return int(raw[0]) * _KIB if raw and raw[0].isdigit() else 0

    # RssFile includes the model's mmapped weight pages; RssShmem is counted into RSS as well.
    return _ProcStatus(values.get("Name", ""), kib("VmRSS"), kib("RssAnon"), kib("RssFile"))


def sample_tree(root_pids: list[int], t_s: float, proc_dir: Path = Path("/proc")) -> ProcessMemorySample:
    """One sample of the whole tree under root_pids."""
    statuses = [s for pid in sorted(descendant_pids(root_pids, proc_dir)) if (s := read_proc_status(pid, proc_dir))]
    engine = [s for s in statuses if s.name.startswith(ENGINE_PROCESS_NAMES)]
    return ProcessMemorySample(
        t_s=t_s,
        processes=len(statuses),
        rss_bytes=sum(s.rss_bytes for s in statuses),
        rss_anon_bytes=sum(s.rss_anon_bytes for s in statuses),
        rss_file_bytes=sum(s.rss_file_bytes for s in statuses),
        engine_processes=len(engine),
        engine_rss_bytes=sum(s.rss_bytes for s in engine),
    )


class ProcessMemorySampler:
    """Samples the server tree every interval_s on a daemon thread; nothing without server PIDs."""

    def __init__(self, t0: float, server_pids: list[int] | None, interval_s: float = 0.25) -> None:
        self.t0 = t0
        self.interval_s = interval_s
        self.samples: list[ProcessMemorySample] = []
        self.notes: list[str] = []
        self._server_pids = list(server_pids) if server_pids else None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self.available = sys.platform.startswith("linux") and Path("/proc/self/status").exists()
        if not self.available:
            self.notes.append("no process-memory telemetry (needs Linux /proc)")

    def set_server_pids(self, server_pids: list[int] | None) -> None:
        with self._lock:
            self._server_pids = list(server_pids) if server_pids else None

    def sample_once(self) -> ProcessMemorySample | None:
        with self._lock:
            roots = self._server_pids
        if not roots:
            return None
        sample = sample_tree(roots, time.monotonic() - self.t0)
        if sample.processes:
            self.samples.append(sample)
        return sample

    def _loop(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sample_once()
            except OSError:  # a process vanished between listing and reading: skip this tick
                pass
            self._stop_event.wait(self.interval_s)

    def start(self) -> None:
        if not self.available or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="bench-proc-mem", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def to_table(self) -> pa.Table:
        names = [f.name for f in fields(ProcessMemorySample)]
        return pa.table({name: [getattr(s, name) for s in self.samples] for name in names}, schema=PROC_SCHEMA)

    def write(self, path: Path) -> Path | None:
        """Write proc.parquet; nothing when no sample was taken (external server, not Linux)."""
        if not self.samples:
            return None
        pq.write_table(self.to_table(), path)
        return path
