"""A fake of pynvml's surface that the sampler uses: devices whose memory a test changes live."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    """Stands in for pynvml.NVMLError."""


@dataclass
class FakeDevice:
    name: str
    total_bytes: int
    used_bytes: int
    util_pct: int = 0
    power_mw: int = 100_000
    # pid -> GPU memory used by that process
    processes: dict[int, int] = field(default_factory=dict)


class FakeNvml:
    """Module-like object with pynvml's function names; thread-safe state changes."""

    NVMLError = NVMLError

    def __init__(self, devices: list[FakeDevice], init_error: str | None = None) -> None:
        self.devices = devices
        self.init_error = init_error
        self.lock = threading.Lock()
        self.initialised = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        return self.devices[index]

    def nvmlDeviceGetName(self, handle: FakeDevice) -> bytes:
        return handle.name.encode()  # old pynvml returned bytes: the sampler must decode

    def nvmlDeviceGetMemoryInfo(self, handle: FakeDevice) -> SimpleNamespace:
        with self.lock:
            used = handle.used_bytes + sum(handle.processes.values())
            return SimpleNamespace(total=handle.total_bytes, used=used, free=handle.total_bytes - used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeDevice) -> SimpleNamespace:
        return SimpleNamespace(gpu=handle.util_pct, memory=0)

    def nvmlDeviceGetPowerUsage(self, handle: FakeDevice) -> int:
        if handle.power_mw < 0:
            raise NVMLError("Not Supported")
        return handle.power_mw

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeDevice) -> list[SimpleNamespace]:
        with self.lock:
            return [SimpleNamespace(pid=pid, usedGpuMemory=mem) for pid, mem in handle.processes.items()]

    def set_process_memory(self, device: int, pid: int, used_bytes: int) -> None:
        with self.lock:
            self.devices[device].processes[pid] = used_bytes
