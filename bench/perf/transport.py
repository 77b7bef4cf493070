"""A lean HTTP/1.1 transport for httpx: asyncio Protocol + httptools (C parser), no httpcore.

Why (profile evidence in the PERF report, issue 8): with httpx's default transport the client
spends its time in httpcore, not in bench:
- `AsyncConnectionPool._assign_requests_to_connections` runs on every request start and end and
  is O(connections²) (a list of every connection's `is_idle()` built inside a loop over the
  connections) plus one `poll()` syscall per idle connection (`has_expired`): client CPU per
  request grows from ~2 ms at 16 streams to ~80 ms at 256;
- h11 turns every HTTP chunk into several Python-level events (~25 µs a token).
This transport keeps idle connections in a LIFO list (O(1) per request; a connection the server
closed is dropped by `connection_lost`, no polling), parses with httptools, and hands the body
to httpx one socket read at a time (every HTTP chunk that arrived in that read, joined), so the
clients' `aiter_bytes()` loops run once per read rather than once per token. Responses,
exceptions and timeouts are httpx's own types, so bench.clients works unchanged on top of it.

Scope: plain http:// (Ollama on a host or loopback), HTTP/1.1, one stream per connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses one response at a time."""

    __slots__ = ("transport", "parser", "status", "headers", "parts", "waiter", "headers_done",
                 "complete", "lost", "keep_alive", "origin")

    def __init__(self, origin: tuple[str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.headers_done = False
        self.complete = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.lost = httpx.RemoteProtocolError(f"malformed HTTP response: {error}")
            assert self.transport is not None
            self.transport.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = httpx.RemoteProtocolError(
                f"server closed the connection{f': {exc}' if exc else ''}")
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    async def wait(self) -> None:
        """Until the next data_received or connection_lost."""
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    @property
    def reusable(self) -> bool:
        return self.lost is None and self.transport is not None and not self.transport.is_closing()


class _BodyStream(httpx.AsyncByteStream):
    def __init__(self, connection: _Connection, pool: FastTransport) -> None:
        self.connection = connection
        self.pool = pool
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self.connection
        while True:
            if connection.parts:
                parts = connection.parts
                connection.parts = []
                yield parts[0] if len(parts) == 1 else b"".join(parts)
                continue
            if connection.complete:
                return
            if connection.lost is not None:
                raise connection.lost
            await connection.wait()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.release(self.connection)


class FastTransport(httpx.AsyncBaseTransport):
    """httpx transport: LIFO keep-alive pool, httptools parsing, one body chunk per socket read."""

    def __init__(self, max_connections: int) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max(1, max_connections))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"FastTransport speaks plain http, not {url.scheme}")
        origin = (url.host, url.port or 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        await self._slots.acquire()
        try:
            connection = await self._connect(origin, timeouts.get("connect"))
            body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
            head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
            for name, value in request.headers.raw:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"\r\n")
            assert connection.transport is not None
            connection.transport.write(b"".join(head) + body)
            while not connection.headers_done:
                if connection.lost is not None:
                    raise connection.lost
                await connection.wait()
        except BaseException:
            self._slots.release()
            raise
        return httpx.Response(connection.status, headers=connection.headers,
                              stream=_BodyStream(connection, self),
                              extensions={"http_version": b"HTTP/1.1"})

    async def _connect(self, origin: tuple[str, int], timeout_s: float | None) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                connection._reset()
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(lambda: _Connection(origin), *origin)
        except TimeoutError as error:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from error
        except OSError as error:
            raise httpx.ConnectError(str(error)) from error
        return connection

    def release(self, connection: _Connection) -> None:
        """Back to the idle list when the response was read whole and the server keeps it open."""
        self._slots.release()
        if connection.complete and connection.keep_alive and connection.reusable:
            self._idle.setdefault(connection.origin, []).append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle.clear()
