"""GPU timeline: a background thread samples NVML (memory, utilisation, power, server processes).

Without an NVIDIA driver (CI, laptops) the sampler is `available = False` with one note and does
nothing; it never raises. Tests pass a fake `nvml` module with pynvml's names.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from bench.records.atomic import write_parquet_atomically

GPU_COLUMNS: tuple[str, ...] = (
    "t_s",
    "device",
    "name",
    "mem_total_bytes",
    "mem_used_bytes",
    "mem_free_bytes",
    "util_gpu_pct",
    "power_w",
    "server_proc_mem_bytes",
)

GPU_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("device", pa.int32()),
        ("name", pa.string()),
        ("mem_total_bytes", pa.int64()),
        ("mem_used_bytes", pa.int64()),
        ("mem_free_bytes", pa.int64()),
        ("util_gpu_pct", pa.float64()),
        ("power_w", pa.float64()),
        ("server_proc_mem_bytes", pa.int64()),
    ]
)

# How often the set of server descendants is re-read from /proc: Ollama's model runner is a child
# process of `ollama serve`, started at each load, so the PIDs holding GPU memory change over a run.
_DESCENDANT_REFRESH_S = 1.0


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One device at one instant."""

    t_s: float
    device: int
    name: str
    mem_total_bytes: int
    mem_used_bytes: int
    mem_free_bytes: int
    util_gpu_pct: float | None
    power_w: float | None
    server_proc_mem_bytes: int | None


def _decode(value: str | bytes) -> str:
    # pynvml returned bytes before 11.5 and str since; accept both.
    return value.decode() if isinstance(value, bytes) else str(value)


def descendant_pids(root_pids: list[int], proc_dir: Path = Path("/proc")) -> set[int]:
    """The given PIDs and all their descendants, read from /proc (empty extras off Linux)."""
    children_of: dict[int, list[int]] = {}
    try:
        entries = list(proc_dir.iterdir())
    except OSError:
        return set(root_pids)
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat_text = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state, ppid, ...
        after_name = stat_text.rsplit(")", 1)[-1].split()
        if len(after_name) >= 2:
            children_of.setdefault(int(after_name[1]), []).append(int(entry.name))
    found: set[int] = set()
    frontier = list(root_pids)
    while frontier:
        pid = frontier.pop()
        if pid in found:
            continue
        found.add(pid)
        frontier.extend(children_of.get(pid, []))
    return found


class NvmlSampler:
    """Samples every NVML device every `interval_s` seconds on a daemon thread, rows kept in memory."""

    def __init__(
        self,
        t0: float,
        server_pids: list[int] | None = None,
        interval_s: float = 0.1,
        nvml: ModuleType | Any | None = None,
    ) -> None:
        self.t0 = t0
        self.interval_s = interval_s
        self.notes: list[str] = []
        self.gpu_info: dict[str, Any] | None = None
        self.available = False
        self.samples: list[GpuSample] = []
        self.sample_errors = 0
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._server_pids: list[int] | None = list(server_pids) if server_pids else None
        self._tracked_pids: set[int] = set()
        self._tracked_at = -1e18
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._nvml: Any = nvml
        self._initialised = False
        self._init_nvml()

    def _init_nvml(self) -> None:
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            nvml = self._nvml
            nvml.nvmlInit()
            self._initialised = True
            device_count = int(nvml.nvmlDeviceGetCount())
            if device_count == 0:
                raise RuntimeError("no devices")
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(device_count)]
            self._names = [_decode(nvml.nvmlDeviceGetName(h)) for h in self._handles]
            totals = [int(nvml.nvmlDeviceGetMemoryInfo(h).total) for h in self._handles]
            self.gpu_info = {
                "driver_version": _decode(nvml.nvmlSystemGetDriverVersion()),
                "devices": [
                    {"index": i, "name": name, "mem_total_bytes": total}
                    for i, (name, total) in enumerate(zip(self._names, totals, strict=True))
                ],
            }
            self.available = True
        except Exception as error:  # NVMLError, missing library, a broken fake: never fatal
            self.available = False
            self.notes.append(f"no GPU telemetry (NVML: {error or type(error).__name__})")
            self._shutdown_nvml()

    def _shutdown_nvml(self) -> None:
        if self._initialised:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a half-initialised library must not raise either
                pass
            self._initialised = False

    def set_server_pids(self, server_pids: list[int] | None) -> None:
        """Track a new set of server processes (a managed server restarted)."""
        with self._lock:
            self._server_pids = list(server_pids) if server_pids else None
            self._tracked_at = -1e18

    def _server_pid_set(self, now: float) -> set[int] | None:
        with self._lock:
            roots = self._server_pids
            if roots is None:
                return None
            if now - self._tracked_at >= _DESCENDANT_REFRESH_S:
                self._tracked_pids = descendant_pids(roots)
                self._tracked_at = now
            return self._tracked_pids

    def _optional(self, call: Any, *args: Any) -> Any:
        # Utilisation and power are unsupported on some boards (NVMLError_NotSupported): None.
        try:
            return call(*args)
        except Exception:
            return None

    def _proc_mem_bytes(self, handle: Any, pids: set[int] | None) -> int | None:
        if pids is None:
            return None
        processes = self._optional(self._nvml.nvmlDeviceGetComputeRunningProcesses, handle)
        if processes is None:
            return None
        # usedGpuMemory is None where the driver hides it (e.g. Windows WDDM): count nothing then.
        return sum(int(p.usedGpuMemory or 0) for p in processes if int(p.pid) in pids)

    def sample_once(self) -> list[GpuSample]:
        """Read every device now; appends to `samples` and returns the new rows."""
        now = time.monotonic()
        t_s = now - self.t0
        pids = self._server_pid_set(now)
        nvml = self._nvml
        rows: list[GpuSample] = []
        for index, handle in enumerate(self._handles):
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            utilisation = self._optional(nvml.nvmlDeviceGetUtilizationRates, handle)
            power_mw = self._optional(nvml.nvmlDeviceGetPowerUsage, handle)
            rows.append(
                GpuSample(
                    t_s=t_s,
                    device=index,
                    name=self._names[index],
                    mem_total_bytes=int(memory.total),
                    mem_used_bytes=int(memory.used),
                    mem_free_bytes=int(memory.free),
                    util_gpu_pct=None if utilisation is None else float(utilisation.gpu),
                    power_w=None if power_mw is None else float(power_mw) / 1000.0,
                    server_proc_mem_bytes=self._proc_mem_bytes(handle, pids),
                )
            )
        self.samples.extend(rows)
        return rows

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            try:
                self.sample_once()
            except Exception:  # a transient driver error loses one sample, not the run
                self.sample_errors += 1
            next_at += self.interval_s
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (loaded machine): resume the cadence from now
                next_at = time.monotonic()
                delay = 0.0
            self._stop_event.wait(delay)

    def start(self) -> None:
        if not self.available or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="bench-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and release NVML; safe to call twice."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._shutdown_nvml()
        if self.sample_errors:
            self.notes.append(f"GPU telemetry: {self.sample_errors} NVML samples failed")
            self.sample_errors = 0

    def to_table(self) -> pa.Table:
        columns = {name: [getattr(s, name) for s in self.samples] for name in GPU_COLUMNS}
        return pa.table(columns, schema=GPU_SCHEMA)

    def write(self, path: Path) -> Path | None:
        """Write gpu.parquet; nothing is written when NVML was unavailable."""
        if not self.available:
            return None
        return write_parquet_atomically(self.to_table(), path)
