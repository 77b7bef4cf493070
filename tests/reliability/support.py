"""Helpers for the reliability tests: write a scenario, run `bench` as a user would, wait on files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from polling import wait_for  # noqa: F401 - the reliability tests import it from here

# Generous: a loaded 2-core CI machine runs these next to other suites.
RUN_TIMEOUT_S = 180.0


def write_scenario(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def bench(*args: str, env: dict[str, str] | None = None, timeout_s: float = RUN_TIMEOUT_S
          ) -> subprocess.CompletedProcess[str]:
    """`python -m bench ARGS` in a subprocess, output captured (stdout and stderr apart)."""
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True,
                          timeout=timeout_s, env=env)


def start_bench(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Parseable lines of a JSONL file (a torn last line is skipped, like bench's reader)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def measured(path: Path) -> list[dict[str, Any]]:
    return [row for row in json_lines(path / "requests.jsonl") if row["phase"] == "measure"]


def manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def manifest_or_empty(run_dir: Path) -> dict[str, Any]:
    try:
        return manifest(run_dir)
    except (FileNotFoundError, ValueError):
        return {}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sim_process(port: int, *args: str) -> subprocess.Popen[bytes]:
    """`bench sim` as its own process (so a test can kill it), ready when this returns."""
    process = subprocess.Popen([sys.executable, "-m", "bench", "sim", "--port", str(port), *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"bench sim exited with {process.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, what="bench sim ready")
    return process
