"""Telemetry during a run: the NVML GPU timeline, the /api/ps timeline and the server's process memory,
started and stopped together.

The runner calls `start_telemetry(...)` after t0 and `session.stop()` in a `finally`; when it
restarts a managed server it calls `session.set_target(new_base_url, new_pids)`.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from bench.records import GPU_PARQUET, PROC_PARQUET, PS_PARQUET
from bench.telemetry.nvml import NvmlSampler
from bench.telemetry.ollama_ps import PsPoller
from bench.telemetry.process_memory import ProcessMemorySampler

__all__ = ["TelemetrySession", "start_telemetry", "NvmlSampler", "PsPoller", "ProcessMemorySampler"]

# /api/ps is a cheap handler, but polling it at 10 Hz would add visible load on a 2-core host;
# 4 Hz still resolves loads and unloads (which take seconds).
PS_INTERVAL_S = 0.25


class TelemetrySession:
    """The samplers of one run; `stop()` joins the threads and writes gpu/ps/proc.parquet."""

    def __init__(
        self,
        run_dir: Path,
        nvml_sampler: NvmlSampler,
        ps_poller: PsPoller,
        process_sampler: ProcessMemorySampler | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.nvml_sampler = nvml_sampler
        self.ps_poller = ps_poller
        self.process_sampler = process_sampler
        self.written: list[Path] = []
        self._stopped = False

    @property
    def gpu_info(self) -> dict[str, Any] | None:
        """Driver version and devices (name, total memory), or None without NVML."""
        return self.nvml_sampler.gpu_info

    @property
    def notes(self) -> list[str]:
        """One-line remarks for the run's output (e.g. 'no GPU telemetry (NVML: ...)')."""
        process_notes = self.process_sampler.notes if self.process_sampler else []
        return [*self.nvml_sampler.notes, *self.ps_poller.notes, *process_notes]

    def set_target(self, base_url: str | None, server_pids: list[int] | None) -> None:
        """Follow a restarted managed server: new /api/ps address and new server processes."""
        self.ps_poller.set_target(base_url)
        self.nvml_sampler.set_server_pids(server_pids)
        if self.process_sampler is not None:
            self.process_sampler.set_server_pids(server_pids)

    def stop(self) -> list[Path]:
        """Stop both samplers and write their files; returns the paths written. Idempotent."""
        if self._stopped:
            return self.written
        self._stopped = True
        self.nvml_sampler.stop()
        self.ps_poller.stop()
        writers: list[tuple[Any, str]] = [(self.nvml_sampler, GPU_PARQUET), (self.ps_poller, PS_PARQUET)]
        if self.process_sampler is not None:
            self.process_sampler.stop()
            writers.append((self.process_sampler, PROC_PARQUET))
        for writer, name in writers:
            path = writer.write(self.run_dir / name)
            if path is not None:
                self.written.append(path)
        return self.written

    def __enter__(self) -> TelemetrySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_telemetry(
    run_dir: Path,
    t0: float,
    base_url: str | None,
    server_pids: list[int] | None,
    interval_s: float = 0.1,
    *,
    ps_interval_s: float = PS_INTERVAL_S,
    nvml: ModuleType | Any | None = None,
    ps_transport: httpx.BaseTransport | None = None,
    ps_headers: dict[str, str] | None = None,
) -> TelemetrySession:
    """Start the GPU sampler (every interval_s) and the /api/ps poller; never raises for a missing GPU.

    server_pids: the managed server's PIDs (their child runners are found through /proc), or None
    for an external server (then server_proc_mem_bytes is null and no proc.parquet is written).
    The process-memory sampler runs at the /api/ps cadence: RSS moves at load/unload speed.
    """
    nvml_sampler = NvmlSampler(t0, server_pids, interval_s, nvml=nvml)
    ps_poller = PsPoller(t0, base_url, ps_interval_s, transport=ps_transport, headers=ps_headers)
    process_sampler = ProcessMemorySampler(t0, server_pids, ps_interval_s)
    nvml_sampler.start()
    ps_poller.start()
    process_sampler.start()
    return TelemetrySession(run_dir, nvml_sampler, ps_poller, process_sampler)
