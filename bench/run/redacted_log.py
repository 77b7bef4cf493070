"""A managed server's output copied to its log with the API key redacted (bench.secrets).

A server (or a wrapper script) may print its environment or a request's headers; the key must
not reach server-<n>.log in clear. Without a key the child writes the log itself (no copy, no
thread); with one its output goes through a pipe and this thread, line by line.
"""

from __future__ import annotations

import threading
from typing import IO

from bench.secrets import redact

# A line longer than this is copied in pieces (a key split across two pieces may survive; a
# server printing 64 KiB without a newline is not printing a key on purpose).
_MAX_LINE_BYTES = 65536


class RedactedLogCopier:
    """Copies `source` (the child's stdout+stderr pipe) to `log` until end of file, redacted."""

    def __init__(self, source: IO[bytes], log: IO[bytes]) -> None:
        self._source, self._log = source, log
        self._thread = threading.Thread(target=self._copy, name="server-log", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        while True:
            try:
                line = self._source.readline(_MAX_LINE_BYTES)
            except (OSError, ValueError):
                return
            if not line:
                return
            try:  # keep draining even when the log cannot be written: a full pipe stalls the server
                self._log.write(redact(line.decode("utf-8", errors="replace")).encode("utf-8"))
            except (OSError, ValueError):
                pass

    def join(self, timeout_s: float) -> None:
        """Wait for the copy to reach end of file (every writer of the pipe gone), at most timeout_s."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            # A daemonized grandchild still holds the pipe: stop copying, keep what was copied.
            try:
                self._source.close()
            except OSError:
                pass
