"""Where bench writes, and how: every output path is checked before any work, then written whole.

The one owner of output paths. A path is refused (UsageError, one line) when writing it would
destroy something that is not bench's to replace: a device, FIFO, socket or directory (a rename
over /dev/null turns it into a regular file for the whole machine), a file the same command
reads, or a run's records (requests.jsonl, manifest.json, ... inside a run directory). A run
directory is bench's alone: a non-empty directory that is not a run is refused as `--out`.

Writes go to a temporary name beside the target, then a rename: a kill during a write leaves the
old file (or none) and a stray `.tmp`, never half a file that makes `bench report` fail later.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.errors import UsageError

# A directory holding this file is a bench run (bench.records.MANIFEST_FILE; not imported: records
# pulls in pyarrow and this module is on every command's start path).
RUN_MARKER = "manifest.json"
# What a command may replace inside a run directory: derived pages and gate tables. Everything
# else there (records, manifest, scenario, timelines, logs) is the run itself.
REPLACEABLE_IN_RUN = (".html", ".htm", ".md", ".xml")
_WRITE_PROBE = ".bench-write-check"  # created and removed to prove a directory writable
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _refuse(path: Path | str, why: str, option: str = "") -> UsageError:
    prefix = f"{option} " if option else ""
    return UsageError(f"{prefix}{path}: {why}")


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def refuse_unless_replaceable(path: Path, option: str = "") -> None:
    """Refuse a path whose current occupant is not a regular file (followed through symlinks)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return  # nothing there (or a dangling link): the rename creates the file
    except OSError as error:
        raise _refuse(path, f"cannot write ({error.strerror or error})", option) from None
    kind = _kind(mode)
    if kind is not None:
        raise _refuse(path, f"cannot write ({kind}; bench replaces only regular files"
                            + ("; give a file name)" if kind == "a directory" else ")"), option)


def begins_with(pattern: bytes, what: str) -> Callable[[Path], str | None]:
    """An `own_output` test for check_output_file: an existing file is this command's own earlier
    output when it is empty (nothing to lose) or its first 4 KiB match `pattern` (a regex at the
    start, DOTALL); else it is described as not `what`."""
    import re

    compiled = re.compile(pattern, re.DOTALL)

    def not_own(path: Path) -> str | None:
        try:
            with open(path, "rb") as file:
                head = file.read(4096)
        except OSError as error:
            return f"unreadable ({error.strerror or error})"
        return None if not head or compiled.match(head) else f"not {what}"
    return not_own


def _same_file(first: Path, second: Path) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)


def check_output_file(path: Path | str, option: str = "", inputs: Iterable[Path] = (),
                      own_output: Callable[[Path], str | None] | None = None) -> Path:
    """Refuse `path` as an output before any work (one line naming `option`); returns it.

    Refused: an empty name, a non-regular occupant, a file among `inputs` (or inside an input
    directory's records), an existing record of a run directory, a parent that cannot be written
    (probed by creating and removing the temporary the write will use).

    `own_output` (for a command whose files say what they are, like a baseline): given an existing
    file, None when it is this command's own earlier output, else what it is instead. Then that
    earlier output is replaced wherever it lies (a run directory too: `bench baseline save RUN
    RUN/baseline.json` twice) and any other existing file is refused.
    """
    if not str(path).strip():
        raise _refuse(repr(str(path)), "cannot write (an empty name; give a file name)", option)
    path = Path(path)
    refuse_unless_replaceable(path, option)
    for source in inputs:
        if _same_file(path, source):
            raise _refuse(path, "cannot write (it is an input of this command)", option)
    parent = path.parent
    other = own_output(path) if own_output is not None and path.exists() else None
    if (parent / RUN_MARKER).is_file() and path.exists() and path.suffix.lower() not in REPLACEABLE_IN_RUN \
            and (own_output is None or other is not None):
        raise _refuse(path, f"cannot write (a record of the run in {parent}; bench replaces only its "
                            f"pages and tables there: {', '.join(REPLACEABLE_IN_RUN)})", option)
    if other is not None:
        raise _refuse(path, f"cannot write (it exists and is {other}; bench replaces only its own "
                            "earlier output: choose another name)", option)
    if parent.exists():
        _probe(path, option)
    return path


def _probe(path: Path, option: str) -> None:
    temp_path = _temporary(path)
    try:
        with open(temp_path, "xb"):
            pass
    except FileExistsError:
        return  # a stray temporary of a killed write: the write replaces it
    except OSError as error:
        raise _refuse(path, f"cannot write ({error.strerror or error})", option) from None
    _remove_quietly(temp_path)


def check_run_dir(path: Path, option: str) -> Path:
    """Refuse `path` as a new run directory unless it is absent or empty (bench's alone)."""
    if not str(path).strip():
        raise _refuse(path, "cannot use an empty name as the run directory", option)
    path = Path(path)
    if (path / RUN_MARKER).exists():
        raise _refuse(path, "already holds a run (manifest.json); choose another", option)
    if path.is_dir():
        stray = next((entry.name for entry in os.scandir(path) if entry.name != _WRITE_PROBE), None)
        if stray is not None:
            raise _refuse(path, f"holds files that are not a bench run ({stray}, ...); a run directory "
                                "is bench's alone: give a new or empty directory", option)
    elif os.path.lexists(path):
        raise _refuse(path, "cannot create the run directory (a file is in the way)", option)
    return path


def make_run_dir(path: Path, option: str) -> Path:
    """Create the run directory (and parents) and prove it writable; UsageError naming `option`."""
    _make_writable_dir(path, "cannot create the run directory", option)
    return path


def check_output_dir(path: Path, option: str) -> Path:
    """A directory bench writes named files into (perf.json): creatable and writable, now."""
    if not str(path).strip():
        raise _refuse(path, "cannot use an empty name as a directory", option)
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise _refuse(path, "cannot write (not a directory)", option)
    _make_writable_dir(path, "cannot write", option)
    return path


def _make_writable_dir(path: Path, failure: str, option: str) -> None:
    """mkdir -p, then prove it writable by creating and removing a probe file; UsageError on failure."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / _WRITE_PROBE
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise _refuse(path, f"{failure} ({error.strerror or error})", option) from None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call write(temporary path), then rename it over `path`; the temporary is removed on failure.

    A path the system refuses (a directory, under a file, /proc, read-only), or whose occupant is
    not a regular file, is a UsageError naming `path`, not the temporary.
    """
    path = Path(path)
    refuse_unless_replaceable(path)
    temp_path = _temporary(path)
    try:
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
    """Text (UTF-8) written whole; any API key in it redacted (bench.secrets), as everywhere."""
    from bench.secrets import has_secrets, redact

    if has_secrets():
        text = redact(text)
    return write_atomically(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_parquet_atomically(table: object, path: Path) -> Path:
    """A pyarrow Table as Parquet, renamed into place."""
    import pyarrow.parquet as pq

    return write_atomically(path, lambda temp: pq.write_table(table, temp))
