"""A raw-socket fake Ollama on loopback whose answers never end (issue 26, class 2).

Modes: `forever` streams a native NDJSON chunk every 10 ms and never `done`; `drip` sends one
byte every 0.5 s; `ping` answers text/event-stream and sends only `: ping` comments. Lines that
never end, as fast as the socket takes them: `line` (NDJSON bytes, no newline), `sse-line` (one
`data:` line, no newline), `sse-event` (`data:` lines, never the blank line that ends the event),
`error-body` (a 500 whose body never ends), `flood` (whole NDJSON chunks, never `done`). Each connection gets its own thread; `stop()` closes
the listener and every open connection.
"""

from __future__ import annotations

import socket
import threading
import time

_DRIP = b'{"model":"m","message":{"role":"assistant","content":"a"},"done":false}\n'
_CHUNK = _DRIP
_HEADERS = {
    "ndjson": b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n",
    "sse": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    "error": b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n",
}
_SSE_MODES = ("ping", "sse-line", "sse-event")
# What the fast modes send, again and again, after their first piece.
_ENDLESS = {"line": (b'{"model":"m","message":{"content":"', b"a" * 65536),
            "sse-line": (b'data: {"choices":[{"delta":{"content":"', b"a" * 65536),
            "sse-event": (b"", b'data: {"choices":[]}\n' * 2048),
            "error-body": (b'{"error":"', b"e" * 65536),
            "flood": (b"", _CHUNK * 1024)}


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class EndlessServer:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._connections: list[socket.socket] = []
        self.requests = 0
        self.streams = 0  # generation requests answered with an endless stream (now in flight)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self._connections.append(connection)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _read_request(self, connection: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = connection.recv(65536)
            if not piece:
                return b""
            data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += connection.recv(65536)
        return head

    def _serve(self, connection: socket.socket) -> None:
        try:
            while not self._stopped.is_set():
                head = self._read_request(connection)
                if not head:
                    return
                self.requests += 1
                if head.startswith(b"GET"):
                    body = b'{"version":"0.33.0"}' if b"/api/version" in head else b'{"models":[]}'
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                if b"/api/show" in head:
                    body = b'{"details":{"family":"llama"},"model_info":{}}'
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
                self._stream(connection)
                return
        except OSError:
            return
        finally:
            connection.close()

    def _stream(self, connection: socket.socket) -> None:
        kind = "sse" if self.mode in _SSE_MODES else "error" if self.mode == "error-body" else "ndjson"
        connection.sendall(_HEADERS[kind])
        self.streams += 1
        index = 0
        if self.mode in _ENDLESS:
            first, again = _ENDLESS[self.mode]
            if first:  # an empty chunk would end the chunked body
                connection.sendall(_chunked(first))
        while not self._stopped.is_set():
            if self.mode in _ENDLESS:
                connection.sendall(_chunked(again))  # blocks while the client reads no further
            elif self.mode == "forever":
                connection.sendall(_chunked(_CHUNK))
                time.sleep(0.01)
            elif self.mode == "drip":
                connection.sendall(_chunked(_DRIP[index % len(_DRIP):index % len(_DRIP) + 1]))
                index += 1
                time.sleep(0.5)
            else:
                connection.sendall(_chunked(b": ping\n\n"))
                time.sleep(0.2)

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for connection in self._connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()
