"""Running the app under uvicorn: in the foreground (`bench sim`) or on a background thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable

import uvicorn

from bench.sim.app import create_app
from bench.sim.config import SimConfig
from bench.sim.generation import SimulatedCut
from bench.sim.state import Simulator


class _DropSimulatedCuts(logging.Filter):
    """A deliberately cut stream is not a server error worth a traceback in the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, SimulatedCut):
                return False
            nested = getattr(exc, "exceptions", None)
            if nested:
                if any(isinstance(e, SimulatedCut) for e in nested):
                    return False
            exc = exc.__cause__ or exc.__context__
        return True


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        # uvicorn re-raises the captured signal after shutting down (exit -15, or a
        # KeyboardInterrupt traceback for SIGINT); a clean shutdown should simply exit 0.
        self._captured_signals.clear()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket whose accepted connections have Nagle's algorithm off.

    Without TCP_NODELAY a stream's first chunk, written while the response headers are still
    unacknowledged, waits for the client's delayed ACK: a ~40 ms TTFT floor on every reused
    keep-alive connection. asyncio only sets TCP_NODELAY itself when the socket's proto is
    IPPROTO_TCP (base_events._set_nodelay), which `socket(family, SOCK_STREAM)` leaves at 0; so
    ask for IPPROTO_TCP and also set the option on the listener, which accepted sockets inherit.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(config: SimConfig, log_level: str = "warning") -> tuple[uvicorn.Server, Simulator]:
    app = create_app(config)
    uv_config = uvicorn.Config(
        app, log_level=log_level, access_log=log_level in ("debug", "trace"), lifespan="off", timeout_keep_alive=30
    )
    logging.getLogger("uvicorn.error").addFilter(_DropSimulatedCuts())
    return _Server(uv_config), app.state.sim


def base_url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def serve(config: SimConfig, log_level: str = "warning", on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn installs the handlers and shuts down cleanly)."""
    sock = bind_socket(config.host, config.port)
    server, sim = make_server(config, log_level)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started and on_ready is not None:
            on_ready(base_url_of(sock))
        try:
            await task
        finally:
            await sim.scheduler.close_runners()

    try:
        asyncio.run(main())
    finally:
        sim.close()
        sock.close()
    sys.stderr.flush()
