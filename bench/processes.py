"""Child servers bench starts (managed `ollama serve` / `bench sim`, llama-server, the perf
emitter): the one owner of how they are started, held to loopback, waited for and stopped.

Every child gets its own process group (stopped as a group, so nothing it forks survives it) and,
on Linux, SIGTERM when bench dies (PR_SET_PDEATHSIG), so a killed bench leaves no orphan holding a
port or GPU memory. Ports are free loopback ports; a stop is SIGTERM to the group, then SIGKILL
after a grace period. Used by the client side (bench.run.managed_server) and by the servers apart
(bench.engine.process), so it imports nothing of either.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.1  # how often a start waits on its readiness check
LOG_TAIL_BYTES = 64 * 1024


def _parent_death_signal() -> Callable[[], Any] | None:
    """A preexec_fn that makes the child get SIGTERM when bench dies (Linux), else None.

    Without it a `kill -9` of bench orphans the child, which keeps its port and memory. The libc
    function is looked up here, before any fork: preexec_fn runs between fork and exec while other
    threads (telemetry) may hold locks, so it must do nothing but the syscall.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


DIE_WITH_PARENT = _parent_death_signal()


def child_options() -> dict[str, Any]:
    """Popen / create_subprocess_exec options of every child server: its own process group, no
    stdin, SIGTERM when bench dies."""
    return {"stdin": subprocess.DEVNULL, "start_new_session": True, "preexec_fn": DIE_WITH_PARENT}


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), brackets allowed."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now on `host` (bind port 0, read it, release it; Ollama does
    the same)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` non-empty lines of a child's log (reads at most LOG_TAIL_BYTES)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - LOG_TAIL_BYTES))
            tail = log.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    found = [line.rstrip() for line in tail.splitlines() if line.strip()]
    return found[-lines:] if lines > 0 else []


def signal_group(group: int, signum: int) -> None:
    """Signal a child's process group (its leader's pid, start_new_session); gone is fine."""
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def group_exists(group: int) -> bool:
    """Whether any process of the group is still there (signal 0 probes without signalling)."""
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_group_id(group: int, grace_s: float) -> None:
    """SIGTERM a process group, SIGKILL whatever is left after grace_s (no child handle: the reaper)."""
    if not group_exists(group):
        return
    signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_exists(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_exists(group):
        signal_group(group, signal.SIGKILL)


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the child's group, SIGKILL what is left after grace_s (the leader may be gone while
    children it spawned, such as Ollama's runners, linger in the group)."""
    group = process.pid
    signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    try:
        process.wait(timeout=max(0.0, grace_s))
    except subprocess.TimeoutExpired:
        pass
    while group_exists(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None or group_exists(group):
        signal_group(group, signal.SIGKILL)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


async def stop_group_async(process: asyncio.subprocess.Process, grace_s: float) -> None:
    """stop_group for a child started with asyncio, then SIGKILL anything left in its group."""
    if process.returncode is None:
        signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except asyncio.TimeoutError:
            signal_group(process.pid, signal.SIGKILL)
            await process.wait()
    signal_group(process.pid, signal.SIGKILL)


class NotReady(Exception):
    """A child did not become ready: it exited (`exit_code`) or time ran out (None)."""

    def __init__(self, exit_code: int | None) -> None:
        super().__init__("exited" if exit_code is not None else "timed out")
        self.exit_code = exit_code


def wait_ready(ready: Callable[[], bool], exit_code: Callable[[], int | None], timeout_s: float,
               poll_s: float = POLL_S) -> None:
    """Poll `ready()` until it says yes; NotReady when the child exits first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = exit_code()
        if code is not None:
            raise NotReady(code)
        if ready():
            return
        if time.monotonic() > deadline:
            raise NotReady(None)
        time.sleep(poll_s)


async def wait_ready_async(ready: Callable[[], Awaitable[bool]], exit_code: Callable[[], int | None],
                           timeout_s: float, poll_s: float = POLL_S) -> None:
    """wait_ready for an event loop: `ready` is awaited."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = exit_code()
        if code is not None:
            raise NotReady(code)
        if await ready():
            return
        if time.monotonic() > deadline:
            raise NotReady(None)
        await asyncio.sleep(poll_s)
