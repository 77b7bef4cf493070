"""Reading the files a user names: regular files only, bounded in size, never blocking.

The one owner of input reads (scenario, prompt and trace files, baselines, manifests, catalogs).
A FIFO would block the reader forever and /dev/zero would be read until memory runs out, so the
file is opened non-blocking and refused unless fstat says it is a regular file; its size is
checked against the caller's limit before a byte is read. Symlink loops and permission problems
are the same one-line error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from bench.errors import UsageError

MiB = 2**20
# Limits per kind of input, far past any real file of the kind (docs/troubleshooting.md).
MAX_SCENARIO_BYTES = 16 * MiB
MAX_JSON_BYTES = 512 * MiB  # a manifest or baseline
MAX_DATA_BYTES = 2048 * MiB  # prompt, conversation and trace files
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_input(path: Path, error: type[Exception] = UsageError, what: str = "file") -> BinaryIO:
    """Regular file `path` opened for reading (binary), without blocking on a FIFO; `error` otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as failure:
        raise error(f"{path}: cannot read ({failure.strerror or failure})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((words for test, words in _KINDS if test(mode)), "not a regular file")
        raise error(f"{path}: {kind}, not a regular {what}")
    return os.fdopen(fd, "rb")


def read_input_bytes(path: Path, max_bytes: int, error: type[Exception] = UsageError,
                     what: str = "file") -> bytes:
    """The bytes of regular file `path`, at most `max_bytes`; `error` (one line) otherwise."""
    with open_input(path, error, what) as source:
        try:
            size = os.fstat(source.fileno()).st_size
            if size > max_bytes:
                raise error(f"{path}: {size:,} bytes, over the limit of {max_bytes:,} for a {what}")
            # read(max + 1): a file that grows while read (or /proc, size 0) stays bounded.
            data = source.read(max_bytes + 1)
        except OSError as failure:
            raise error(f"{path}: cannot read ({failure.strerror or failure})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: more than {max_bytes:,} bytes, over the limit for a {what}")
    return data


def read_input_text(path: Path, max_bytes: int, error: type[Exception] = UsageError,
                    what: str = "file") -> str:
    """read_input_bytes, decoded as UTF-8; `error` naming the byte when it is not."""
    data = read_input_bytes(path, max_bytes, error, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(f"{path}: not UTF-8 text (byte {failure.start})") from None
