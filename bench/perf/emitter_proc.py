"""The emitter as a subprocess for `bench perf`: free port, pinned CPU, ready check, clean stop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.processes import free_port
from bench.errors import TargetError

READY_DEADLINE_S = 30.0  # generous: the machine may be shared and busy


@dataclass(frozen=True)
class EmitterProcess:
    base_url: str
    pid: int
    cpu: int | None  # the CPU it is pinned to, None when not pinned
    emit_log: Path | None


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces, so split after its ')').
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_plan() -> tuple[int | None, int | None]:
    """(emitter CPU, client CPU): the first two CPUs this process may use, or (None, None) on one."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


@contextmanager
def running_emitter(tokens: int = 32, itl_ms: float = 0.0, ttft_ms: float = 0.0,
                    emit_log: Path | None = None, cpu: int | None = None) -> Iterator[EmitterProcess]:
    """Start `python -m bench.sim.emitter` on a free port (pinned to `cpu`), yield, stop it."""
    port = free_port()
    command = [sys.executable, "-m", "bench.sim.emitter", "--port", str(port),
               "--tokens", str(tokens), "--itl-ms", str(itl_ms), "--ttft-ms", str(ttft_ms)]
    if emit_log is not None:
        command += ["--emit-log", str(emit_log)]

    def pin() -> None:  # runs in the child before exec, so every thread it starts inherits it
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    process = subprocess.Popen(command, preexec_fn=pin, stdout=subprocess.DEVNULL,  # noqa: S603
                               stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, base_url)
        yield EmitterProcess(base_url=base_url, pid=process.pid, cpu=cpu, emit_log=emit_log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_ready(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error_text = process.stderr.read().decode(errors="replace")[-500:] if process.stderr else ""
            raise TargetError(f"emitter exited with {process.returncode}: {error_text.strip()}")
        try:
            if httpx.get(base_url + "/", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TargetError(f"emitter at {base_url} not ready after {READY_DEADLINE_S:g} s")
