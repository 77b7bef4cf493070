"""Server-sent events, bounded: the data of each event in a byte stream, as the WHATWG event-stream
rules read it (lines end at CRLF, LF or CR; `:` starts a comment; a blank line dispatches the
event; only `data` matters to bench).

Bounded where httpx-sse is not: a line, or the data of one event, longer than MAX_LINE_BYTES is a
StreamFailure (`bad_stream`) as soon as that many bytes have arrived, so a server sending bytes
without a newline (or `data:` lines without the blank line) ends at the cap instead of growing a
buffer until the request deadline. On the hot path: one split per socket read, no per-byte work.
"""

from __future__ import annotations

from bench.clients._exchange import MAX_LINE_BYTES, StreamFailure


class SSEDataDecoder:
    """Feed the body's reads in order; each feed returns the data of the events they completed."""

    __slots__ = ("_data", "_data_bytes", "_max_bytes", "_pending", "_pending_bytes", "_trailing_cr")

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._pending: list[bytes] = []  # the line not yet ended, in pieces (joined once it ends)
        self._pending_bytes = 0
        self._data: list[str] = []  # the `data` lines of the event not yet dispatched
        self._data_bytes = 0
        self._trailing_cr = False  # the last read ended in CR: an LF opening the next one is its CRLF

    def feed(self, raw: bytes) -> list[str]:
        if self._trailing_cr:
            self._trailing_cr = False
            if raw[:1] == b"\n":
                raw = raw[1:]
        if b"\r" in raw:
            self._trailing_cr = raw[-1:] == b"\r"
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if b"\n" not in raw:
            self._add_pending(raw)
            return []
        lines = raw.split(b"\n")
        if self._pending:
            lines[0] = b"".join(self._pending) + lines[0]
            self._pending, self._pending_bytes = [], 0
        tail = lines.pop()
        events: list[str] = []
        for line in lines:
            self._line(line, events)
        if tail:
            self._add_pending(tail)
        return events

    def _add_pending(self, piece: bytes) -> None:
        if not piece:
            return
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        if self._pending_bytes > self._max_bytes:
            raise StreamFailure("bad_stream", f"an SSE line longer than {self._max_bytes} bytes "
                                              "(no newline): not an Ollama event")

    def _line(self, line: bytes, events: list[str]) -> None:
        if not line:
            if self._data:
                events.append("\n".join(self._data))
                self._data, self._data_bytes = [], 0
            return
        if line[:1] == b":":
            return  # a comment (`: ping`)
        name, _, value = line.partition(b":")
        if name != b"data":
            return  # event, id, retry, unknown fields: nothing bench reads
        if value[:1] == b" ":
            value = value[1:]
        self._data_bytes += len(value) + 1
        if self._data_bytes > self._max_bytes:
            raise StreamFailure("bad_stream", f"an SSE event with more than {self._max_bytes} bytes of data "
                                              "(no blank line ends it): not an Ollama event")
        self._data.append(value.decode("utf-8", "replace"))
