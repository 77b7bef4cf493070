"""A lean HTTP/1.1 transport for httpx: non-blocking sockets + httptools (C parser), no httpcore.

Why (profiles in `bench perf`, issue 8): with httpx's default transport the client spends its
time in httpcore, not in bench:
- `AsyncConnectionPool._assign_requests_to_connections` runs on every request start and end and
  is O(connections²) (a list of every connection's `is_idle()` built inside a loop over the
  connections) plus one `poll()` syscall per idle connection (`has_expired`): client CPU per
  request grows from ~2 ms at 16 streams to ~80 ms at 256;
- h11 turns every HTTP chunk into several Python-level events (~25 µs a token).
This transport keeps idle connections in a LIFO list (O(1) per request; a connection the server
closed is noticed by its EOF, no polling), parses with httptools, and hands the body to httpx one
socket read at a time (every HTTP chunk in that read, joined), so the clients' `aiter_bytes()`
loops run once per read rather than once per token.

Timestamps: every read carries the kernel's receive time (SO_TIMESTAMPNS via recvmsg, Linux;
elsewhere time.monotonic() at the read), and `arrival_s(response)` gives a reader the stamp of
the read it was last handed. A stamp is then the moment the bytes reached this host, not the
moment the reader's task got its turn on a busy event loop: with hundreds of streams whose
tokens land in the same millisecond, that turn can come milliseconds later.

Responses, exceptions and timeouts are httpx's own types, so bench.clients works unchanged on top
of it. Scope: plain http:// (Ollama on a host or loopback), HTTP/1.1, one stream per connection.
Timeouts honoured: pool, connect, and read while waiting for the response head; reads inside the
body rely on the caller (bench's IdleWatchdog), which saves a timer per read. The body is not
flow-controlled: a reader that stops reading lets the server's bytes pile up in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httptools
import httpx

# The response extension under which `arrival_s()` finds the stream's last read stamp.
ARRIVAL_EXTENSION = "bench_arrival"
# Bytes per socket read: a burst of tokens (or a long non-streamed answer) comes in few reads.
READ_BYTES = 256 * 1024
# Least time between two drains of ready sockets (_ReadyReads): while the event loop is busy,
# reads stay about this close together, so only tokens sent closer than this share a stamp.
# At 0.2 ms the polls cost ~10% of the CPU per request at 1,500 req/s; at 1 ms, within noise.
DRAIN_INTERVAL_S = 0.001
# Reads a body stream hands over back to back (they were already waiting) before it lets the event
# loop run once: a server that sends without pause would otherwise keep one request's task running
# for ever, and no timer (its own request deadline included) nor any other request would run.
READS_BEFORE_YIELD = 16
# SO_TIMESTAMPNS (Linux, asm-generic value; Python's socket module does not name it): the kernel
# stamps each received segment (CLOCK_REALTIME) and recvmsg() returns the stamp as SCM_TIMESTAMPNS.
_SO_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@qq")
_TIMESPEC_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def _kernel_arrival_s(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive stamp of a read, moved from CLOCK_REALTIME onto time.monotonic().

    In integer nanoseconds: a float of epoch seconds resolves only ~0.2 µs. The two clocks are
    read back to back for every read, so a clock step or slew between reads costs nothing.
    """
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(payload)
            realtime_ns: int = seconds * 1_000_000_000 + nanoseconds
            return (realtime_ns - time.time_ns() + time.monotonic_ns()) * 1e-9
    return time.monotonic()


def _enable_kernel_stamps(sock: socket.socket) -> bool:
    if _SO_TIMESTAMPNS is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class _ReadyReads:
    """An epoll set over the pool's sockets, polled without waiting from inside tasks' steps.

    Why: a kernel stamp is the arrival of the newest segment in a read, so two tokens that wait
    in the socket for the same read share the later one's stamp. The event loop reads sockets
    only between its iterations, and one iteration can run hundreds of requests' work back to
    back (256 streams that end together, then start again together: ~90 ms on one core), longer
    than a gap between tokens. Draining ready sockets at request starts and body reads (at most
    once per DRAIN_INTERVAL_S) keeps reads about a millisecond apart however long the iteration.
    """

    __slots__ = ("poller", "connections", "drained_s")

    def __init__(self) -> None:
        self.poller = select.epoll() if hasattr(select, "epoll") else None
        self.connections: dict[int, _Connection] = {}
        self.drained_s = 0.0

    def add(self, connection: _Connection) -> None:
        if self.poller is not None:
            fd = connection.sock.fileno()
            self.poller.register(fd, select.EPOLLIN)
            self.connections[fd] = connection

    def remove(self, fd: int) -> None:
        if self.connections.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):  # ValueError: poller already closed
                self.poller.unregister(fd)  # type: ignore[union-attr]

    def drain(self) -> None:
        """Read every socket that has bytes waiting now (one epoll_wait, no blocking), at most
        once per DRAIN_INTERVAL_S: unthrottled, the polls cost ~20% of the CPU per request."""
        now = time.monotonic()
        if self.connections and now - self.drained_s >= DRAIN_INTERVAL_S:
            self.drained_s = now
            for fd, _ in self.poller.poll(0):  # type: ignore[union-attr]
                connection = self.connections.get(fd)
                if connection is not None:
                    connection._on_readable()

    def close(self) -> None:
        self.connections.clear()
        if self.poller is not None:
            self.poller.close()


class _Connection:
    """One keep-alive connection on a non-blocking socket; parses one response at a time.

    A plain socket watched with loop.add_reader instead of an asyncio Protocol: recvmsg() hands
    over the kernel's receive timestamp with the bytes, which a transport's data_received
    cannot.
    """

    __slots__ = ("sock", "loop", "parser", "status", "headers", "parts", "reads", "waiter",
                 "headers_done", "complete", "lost", "keep_alive", "origin", "received_any",
                 "used", "read_s", "head_s", "framed", "closed", "ancillary_bytes", "buffers",
                 "ready")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 origin: tuple[str, int], buffer: memoryview, ready: _ReadyReads) -> None:
        self.sock = sock
        self.ready = ready
        # The transport's one read buffer, shared by its connections: a read is copied out
        # before the callback returns, and recvmsg() would allocate READ_BYTES anew per read
        # (~16 µs for 256 KiB, four times the cost of the read itself).
        self.buffers = [buffer]
        self.loop = loop
        self.origin = origin
        self.lost: Exception | None = None
        self.closed = False
        self.used = False  # served a response before: the server may have closed it meanwhile
        self.read_s = 0.0  # arrival time of the latest socket read
        self.ancillary_bytes = _TIMESPEC_SPACE if _enable_kernel_stamps(sock) else 0
        self._reset()
        loop.add_reader(sock.fileno(), self._on_readable)
        ready.add(self)

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []  # body pieces of the read being parsed
        self.reads: list[tuple[float, bytes]] = []  # (arrival time, body bytes) per socket read
        self.waiter: asyncio.Future[None] | None = None
        self.headers_done = False
        self.complete = False
        self.keep_alive = True
        self.received_any = False
        self.head_s = 0.0  # arrival time of the read that completed the response head
        self.framed = False  # Content-Length or Transfer-Encoding: the body does not end at EOF

    def _on_readable(self) -> None:
        try:
            size, ancillary, _, _ = self.sock.recvmsg_into(self.buffers, self.ancillary_bytes)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            self._lose(httpx.ReadError(str(error)))
            return
        self.read_s = arrival_s = _kernel_arrival_s(ancillary) if ancillary else time.monotonic()
        data = self.buffers[0][:size].tobytes()
        if not size:
            if self.headers_done and not self.framed and not self.complete:
                self.complete = True  # a body delimited by the server closing the connection
                self.keep_alive = False
            self._lose(httpx.RemoteProtocolError("server closed the connection"))
            return
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._lose(httpx.RemoteProtocolError(f"malformed HTTP response: {error}"))
        parts = self.parts
        if parts:
            self.reads.append((arrival_s, parts[0] if len(parts) == 1 else b"".join(parts)))
            self.parts = []
        self._wake()

    def _lose(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or lowered == b"transfer-encoding":
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self.head_s = self.read_s

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    async def wait(self) -> None:
        """Until the next read or the connection's loss."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def send(self, message: bytes) -> None:
        try:
            sent = self.sock.send(message)  # a request fits the send buffer: no await at all
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as error:
            raise httpx.WriteError(str(error)) from error
        if sent < len(message):
            try:
                await self.loop.sock_sendall(self.sock, memoryview(message)[sent:])
            except OSError as error:
                raise httpx.WriteError(str(error)) from error

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.sock.fileno()
        self.ready.remove(fd)
        if not self.loop.is_closed():
            self.loop.remove_reader(fd)
        self.sock.close()

    @property
    def reusable(self) -> bool:
        return self.lost is None and not self.closed


class _BodyStream(httpx.AsyncByteStream):
    """The response body, one socket read per item; `arrival_s` is the last item's read stamp."""

    def __init__(self, connection: _Connection, pool: FastTransport, head_arrival_s: float) -> None:
        self.connection = connection
        self.pool = pool
        self.closed = False
        self.arrival_s = head_arrival_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self.connection
        drain = self.pool._ready.drain
        back_to_back = 0
        while True:
            drain()
            reads = connection.reads
            if reads:
                # Reads that piled up while this task waited for its turn are handed over one by
                # one, each with its own stamp, so no token is stamped with a later read's time.
                if len(reads) == 1:
                    connection.reads = []
                    self.arrival_s, body = reads[0]
                else:
                    self.arrival_s, body = reads.pop(0)
                yield body
                back_to_back += 1
                if back_to_back >= READS_BEFORE_YIELD:
                    back_to_back = 0
                    await asyncio.sleep(0)
                continue
            if connection.complete:
                return
            if connection.lost is not None:
                raise connection.lost
            back_to_back = 0
            await connection.wait()

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.release(self.connection)


def arrival_s(response: httpx.Response) -> float:
    """When the bytes a reader was last handed reached this host (FastTransport), else now."""
    stream = response.extensions.get(ARRIVAL_EXTENSION)
    return stream.arrival_s if stream is not None else time.monotonic()


async def _open_socket(loop: asyncio.AbstractEventLoop, addresses: list[Any]) -> socket.socket:
    """A connected non-blocking socket to the first address that accepts (as create_connection)."""
    last_error: OSError = OSError("no address to connect to")
    for family, kind, protocol, _, address in addresses:
        sock = socket.socket(family, kind, protocol)
        try:
            sock.setblocking(False)
            if family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
        except OSError as error:
            sock.close()
            last_error = error
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last_error


class FastTransport(httpx.AsyncBaseTransport):
    """httpx transport: LIFO keep-alive pool, httptools parsing, one body chunk per socket read."""

    def __init__(self, max_connections: int) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        # Resolved once per origin for the client's life: a benchmark targets one fixed server.
        self._addresses: dict[tuple[str, int], list[Any]] = {}
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._read_buffer = memoryview(bytearray(READ_BYTES))
        self._ready = _ReadyReads()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"FastTransport speaks plain http, not {url.scheme}")
        self._ready.drain()  # other streams' bytes first: this request's work may take a while
        origin = (url.host, url.port or 80)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as error:
            raise httpx.PoolTimeout("no free connection slot in time") from error
        try:
            body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
            head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
            for name, value in request.headers.raw:
                head += [name, b": ", value, b"\r\n"]
            head.append(b"\r\n")
            message = b"".join(head) + body
            connection = await self._connect(origin, timeouts.get("connect"))
            try:
                await self._exchange_head(connection, message, timeouts.get("read"))
            except (httpx.RemoteProtocolError, httpx.WriteError, httpx.ReadError):
                if not (connection.used and not connection.received_any):
                    raise
                # A reused connection the server closed while it sat idle (keep-alive expiry
                # racing our request) never saw the request: retry once on a new connection.
                connection = await self._connect(origin, timeouts.get("connect"), reuse=False)
                await self._exchange_head(connection, message, timeouts.get("read"))
        except BaseException:
            self._slots.release()
            raise
        stream = _BodyStream(connection, self, connection.head_s)
        return httpx.Response(connection.status, headers=connection.headers, stream=stream,
                              extensions={"http_version": b"HTTP/1.1", ARRIVAL_EXTENSION: stream})

    async def _exchange_head(self, connection: _Connection, message: bytes,
                             read_timeout_s: float | None) -> None:
        """Send the request and wait for the response head; the connection is closed on failure."""
        try:
            await connection.send(message)
            async with asyncio.timeout(read_timeout_s):
                while not connection.headers_done:
                    if connection.lost is not None:
                        raise connection.lost
                    await connection.wait()
        except TimeoutError as error:
            connection.close()
            raise httpx.ReadTimeout("no response head in time") from error
        except BaseException:
            connection.close()  # cancelled or failed mid-exchange: its state is unknown
            raise

    async def _connect(self, origin: tuple[str, int], timeout_s: float | None,
                       reuse: bool = True) -> _Connection:
        idle = self._idle.get(origin)
        while reuse and idle:
            connection = idle.pop()
            if connection.reusable:
                connection._reset()
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                addresses = self._addresses.get(origin)
                if addresses is None:
                    addresses = await loop.getaddrinfo(*origin, type=socket.SOCK_STREAM)
                    self._addresses[origin] = addresses
                sock = await _open_socket(loop, addresses)
        except TimeoutError as error:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from error
        except OSError as error:
            raise httpx.ConnectError(str(error)) from error
        return _Connection(sock, loop, origin, self._read_buffer, self._ready)

    def release(self, connection: _Connection) -> None:
        """Back to the idle list when the response was read whole and the server keeps it open."""
        self._slots.release()
        if connection.complete and connection.keep_alive and connection.reusable:
            connection.used = True
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._ready.close()
