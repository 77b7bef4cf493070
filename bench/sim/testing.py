"""Run the simulator in-process for tests: `with running_sim(speed=50) as base_url: ...`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import uvicorn

from bench.sim.config import FaultConfig, build_config
from bench.sim.server import base_url_of, bind_socket, make_server
from bench.sim.state import Simulator

_RUNNING: dict[str, tuple[Simulator, uvicorn.Server]] = {}


@contextmanager
def running_sim(
    speed: float = 1.0,
    env: Mapping[str, str] | None = None,
    gpu_memory: str | None = None,
    seed: int = 0,
    faults: FaultConfig | None = None,
    gpu: str | None = None,
    catalog_path: str | None = None,
    emit_log_path: str | None = None,
    ollama_version: str | None = None,
    host_memory: str | None = None,
    engine: str | None = None,
    model_files: tuple[str, ...] = (),
    ready_timeout_s: float = 30.0,
) -> Iterator[str]:
    """Serve on a free loopback port in a background thread; yield the base URL; always stop.

    `env` is read exactly like `bench sim` reads os.environ (OLLAMA_*, BENCH_SIM_FAULT_*).
    """
    config = build_config(
        dict(env or {}), host="127.0.0.1", port=0, gpu=gpu, gpu_memory=gpu_memory, seed=seed,
        catalog_path=catalog_path, speed=speed, faults=faults, emit_log_path=emit_log_path,
        ollama_version=ollama_version, host_memory=host_memory, engine=engine, model_files=model_files,
    )
    sock = bind_socket("127.0.0.1", 0)
    server, sim = make_server(config)
    server.config.install_signal_handlers = False  # not the main thread

    async def serve_then_close_runners() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await sim.scheduler.close_runners()

    thread = threading.Thread(target=lambda: asyncio.run(serve_then_close_runners()), name="bench-sim", daemon=True)
    base_url = base_url_of(sock)
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("bench sim did not start")
            time.sleep(0.005)
        _RUNNING[base_url] = (sim, server)
        yield base_url
    finally:
        _RUNNING.pop(base_url, None)
        server.should_exit = True
        thread.join(timeout=10)
        sim.close()
        sock.close()


def simulator_for(base_url: str) -> Simulator:
    """The in-process Simulator behind a running_sim URL (tests observe scheduler counters)."""
    return _RUNNING[base_url][0]


def accepted_sockets(base_url: str) -> list[socket.socket]:
    """The server side of every open client connection to a running_sim URL (tests read socket options).

    uvicorn keeps one protocol object per connection; its transport holds the accepted socket.
    """
    _, server = _RUNNING[base_url]
    connections = list(server.server_state.connections)
    return [conn.transport.get_extra_info("socket") for conn in connections if conn.transport is not None]
