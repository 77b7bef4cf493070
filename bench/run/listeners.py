"""Which addresses a set of processes listens on (Linux /proc), to hold managed servers to loopback.

A scenario's `server.command` is refused when its words would listen beyond loopback, but a
script can bind 0.0.0.0 without saying so; once the server is ready, bench looks at the sockets
it actually holds.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

_LISTEN_STATE = "0A"  # TCP_LISTEN in /proc/net/tcp


def _socket_inodes(pids: list[int], proc: Path) -> set[str]:
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # exited, or not ours to read
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    return inodes


def _address(hex_address: str) -> tuple[str, int]:
    """`0100007F:1F90` or the 32-hex-digit IPv6 form, as /proc/net/tcp{,6} write them."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    # The kernel prints each 32-bit word in host (little-endian) order.
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(ordered)), int(port_hex, 16)


def descendants(root: int) -> list[int]:
    """`root` and every process below it (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return [root]
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # Field 2 (comm) may hold spaces and parentheses; the ppid is the second field after it.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 2:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    pids, pending = [], [root]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        pending.extend(children.get(pid, []))
    return sorted(pids)


def non_loopback_listeners(pids: list[int], proc: Path = Path("/proc")) -> list[str]:
    """`host:port` of every listening TCP socket of `pids` that is not on a loopback address."""
    inodes = _socket_inodes(pids, proc)
    if not inodes:
        return []
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN_STATE or fields[9] not in inodes:
                continue
            host, port = _address(fields[1])
            address = ipaddress.ip_address(host)
            mapped = getattr(address, "ipv4_mapped", None)
            if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
                found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return found
