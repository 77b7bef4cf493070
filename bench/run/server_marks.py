"""Every process a managed server's command started, found by a mark in its environment.

A process group reaches only what stays in it: a helper that double-forks and calls setsid
(a daemonizing script, `nohup … &` under `setsid`) leaves the group and the parent chain, so
neither killpg nor a walk of descendants finds it, and it outlives the run holding a port. Every
child inherits its parent's environment, so bench puts a random mark there
(`BENCH_SERVER_MARK=<token>`) and later reads /proc/*/environ for it: the mark survives fork,
setsid and exec. Only a process that empties its own environment escapes, which no server does by
accident. cgroups would hold even that, but they need privileges bench cannot count on (a CI
runner as a plain user); a PID namespace needs user namespaces, often disabled.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

MARK_ENV = "BENCH_SERVER_MARK"
_POLL_S = 0.05


def new_mark() -> str:
    """A token no other server (nor another bench) carries: bench's pid and 64 random bits."""
    return f"{os.getpid()}-{secrets.token_hex(8)}"


def marked_pids(mark: str, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose environment holds `BENCH_SERVER_MARK=mark` (zombies and unreadable ones skipped)."""
    needle = f"{MARK_ENV}={mark}".encode()
    found = []
    try:
        entries = os.listdir(proc)
    except OSError:
        return []  # no /proc (not Linux): the process group is all bench can reach
    own = os.getpid()
    for name in entries:
        if not name.isdigit() or int(name) == own:
            continue
        try:
            environ = (proc / name / "environ").read_bytes()
        except OSError:
            continue  # exited while we looked, or not ours to read
        if needle in environ.split(b"\0"):
            found.append(int(name))
    return sorted(found)


def signal_pids(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def stop_marked(mark: str, grace_s: float, proc: Path = Path("/proc")) -> None:
    """SIGTERM every marked process, SIGKILL those still there after grace_s."""
    pids = marked_pids(mark, proc)
    if not pids:
        return
    signal_pids(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while marked_pids(mark, proc) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    signal_pids(marked_pids(mark, proc), signal.SIGKILL)
    # SIGKILL is not instant: wait (bounded) until the kernel has taken them, so a caller that
    # checks right after (a test, the next server on the same port) sees them gone.
    deadline = time.monotonic() + 5.0
    while marked_pids(mark, proc) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
