"""Files written whole or not at all: a temporary name beside the target, then a rename.

A kill during a write leaves the old file (or none) and a stray `.tmp`, never half a file that
makes `bench report` fail later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bench.errors import UsageError


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call write(temporary path), then rename it over `path`; the temporary is removed on failure.

    A path the system refuses (a directory, under a file, /proc, read-only) is a UsageError
    naming `path`, not the temporary.
    """
    path = Path(path)
    temp_path = path.with_name(f".{path.name}.tmp")
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory; give a file name")
        write(temp_path)
        os.replace(temp_path, path)
    except OSError as error:
        _remove_quietly(temp_path)
        raise UsageError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        _remove_quietly(temp_path)
        raise
    return path


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_text_atomically(path: Path, text: str) -> Path:
    return write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_parquet_atomically(table: object, path: Path) -> Path:
    """A pyarrow Table as Parquet, renamed into place."""
    import pyarrow.parquet as pq

    return write_atomically(path, lambda temp: pq.write_table(table, temp))
