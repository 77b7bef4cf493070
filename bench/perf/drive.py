"""Driving bench's real client path against the emitter: closed-loop steps and held streams.

The path measured is the one `bench run` takes per request: bench.load.cell.run_cell_load (closed
loop) → bench.clients.send → httpx over make_http_client, and every record appended to a
requests.jsonl through RecordWriter. Nothing here is a shortcut around it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import clients
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client
from bench.load.cell import CellLoad, run_cell_load
from bench.load.clock import Clock
from bench.load.control import StopControl
from bench.records import RecordWriter
from bench.records.record import Phase, RequestRecord, Surface

MODEL = "emitter:latest"
HOLD_DEADLINE_S = 120.0  # opening thousands of connections on a busy shared machine is slow
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def http_client(base_url: str, max_connections: int, timeout_s: float, transport: str) -> httpx.AsyncClient:
    """bench's own client, exactly as `bench run --transport <transport>` builds it."""
    return make_http_client(base_url, None, max_connections, timeout_s=timeout_s,
                            transport=transport)


def rss_bytes() -> int:
    """Resident set size of this process, from /proc (no psutil needed)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def request_nonce(cell_id: str, repeat: int, request_index: int) -> str:
    """The id the emitter logs for a request (it takes the prompt's leading `[nonce]`)."""
    return f"{cell_id}.{repeat}.{request_index}"


def make_spec_factory(cell_id: str, surface: Surface, tokens: int, options: dict[str, Any],
                      timeout_s: float = 60.0, worker: int = 0,
                      ) -> Callable[[int, int, Phase, float], RequestSpec]:
    def make_spec(repeat: int, request_index: int, phase: Phase, scheduled_s: float) -> RequestSpec:
        nonce = request_nonce(cell_id, repeat, request_index)
        return RequestSpec(cell_id=cell_id, request_index=request_index, surface=surface,
                           endpoint="chat", model=MODEL, prompt=f"[{nonce}] Say something.",
                           repeat=repeat, phase=phase, max_tokens=tokens,
                           extra_options=options, timeout_s=timeout_s, scheduled_s=scheduled_s,
                           worker=worker)
    return make_spec


@dataclass(frozen=True)
class StepResult:
    """One closed-loop measurement at a fixed concurrency."""

    surface: str
    concurrency: int
    requests: int
    ok: int
    errors: int
    wall_s: float
    cpu_s: float
    tokens: int  # chunks with generated text the client stamped

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"surface": self.surface, "concurrency": self.concurrency,
                "requests": self.requests, "ok": self.ok, "errors": self.errors,
                "wall_s": round(self.wall_s, 4), "cpu_s": round(self.cpu_s, 4),
                "rps": round(self.rps, 1), "tokens_per_s": round(self.tokens_per_s, 1),
                "cpu_fraction": round(self.cpu_fraction, 3),
                "cpu_us_per_request": round(1e6 * self.cpu_s / self.ok, 1) if self.ok else None,
                "cpu_us_per_token": round(1e6 * self.cpu_s / self.tokens, 2) if self.tokens else None}


async def closed_loop(base_url: str, surface: Surface, concurrency: int, *, tokens: int = 32,
                      duration_s: float | None = None, requests: int | None = None,
                      options: dict[str, Any] | None = None, cell_id: str = "perf",
                      clock: Clock | None = None, warmup: bool = True, transport: str = "httpx",
                      worker: int = 0, ready: Callable[[], Awaitable[None]] | None = None,
                      ) -> tuple[StepResult, list[RequestRecord], Clock]:
    """Run the real closed loop for duration_s (or a request count); records kept and written.

    `ready` is awaited after the warmup, right before the measured loop (bench.perf.workers
    lines up several processes' measured windows with it); `worker` goes into every record.
    """
    clock = clock or Clock()
    records: list[RequestRecord] = []
    make_spec = make_spec_factory(cell_id, surface, tokens, options or {}, worker=worker)
    http = http_client(base_url, concurrency, 60.0, transport)
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as run_dir:
        writer = RecordWriter(Path(run_dir))

        def on_record(record: RequestRecord) -> None:
            # What bench run does per record (minus the progress counter): append to the JSONL.
            writer.append(record)
            if record.phase == "measure":
                records.append(record)

        async def send(spec: RequestSpec) -> RequestRecord:
            return await clients.send(http, spec, clock.t0)

        try:
            if warmup:  # opens the pool's connections and warms every code path
                await run_cell_load(CellLoad(concurrency=concurrency, requests=concurrency,
                                             warmup_requests=0), make_spec_factory(
                                        cell_id + "w", surface, tokens, options or {}),
                                    send, lambda record: None, clock, StopControl())
            gc.collect()
            if ready is not None:
                await ready()
            load = CellLoad(arrival="closed", concurrency=concurrency, requests=requests,
                            duration_s=duration_s, warmup_requests=0, schedule_key=cell_id)
            outcome = await run_cell_load(load, make_spec, send, on_record, clock, StopControl())
        finally:
            await http.aclose()
            writer.close()
    ok = sum(1 for record in records if record.error_class is None)
    chunk_count = sum(len(record.chunk_times_s) for record in records)
    step = StepResult(surface=surface, concurrency=concurrency, requests=len(records), ok=ok,
                      errors=len(records) - ok, wall_s=outcome.wall_s, cpu_s=outcome.cpu_s,
                      tokens=chunk_count)
    return step, records, clock


@dataclass(frozen=True)
class HoldResult:
    """N streams opened at once and held mid-stream by the emitter."""

    surface: str
    streams: int
    held: int  # streams the emitter saw held at the same time (max observed)
    ok: int
    error_classes: dict[str, int]
    open_s: float  # time until all were held (or the deadline)
    rss_before_bytes: int
    rss_held_bytes: int

    @property
    def bytes_per_stream(self) -> float:
        return (self.rss_held_bytes - self.rss_before_bytes) / self.held if self.held else 0.0

    @property
    def clean(self) -> bool:
        return self.held == self.streams and self.ok == self.streams

    def as_dict(self) -> dict[str, Any]:
        return {"surface": self.surface, "streams": self.streams, "held": self.held,
                "ok": self.ok, "error_classes": self.error_classes, "clean": self.clean,
                "open_s": round(self.open_s, 3), "rss_before_bytes": self.rss_before_bytes,
                "rss_held_bytes": self.rss_held_bytes,
                "kib_per_stream": round(self.bytes_per_stream / 1024, 1)}


async def hold_streams(base_url: str, surface: Surface, streams: int,
                       deadline_s: float = HOLD_DEADLINE_S, transport: str = "httpx") -> HoldResult:
    """Open `streams` requests at once, wait until the emitter holds them all after their first
    token, sample this process's RSS, then release them and collect the records."""
    clock = Clock()
    make_spec = make_spec_factory(f"hold{streams}", surface, 2, {"emit_hold": True},
                                  timeout_s=deadline_s + 30.0)
    http = http_client(base_url, streams, deadline_s + 30.0, transport)
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False) as control:
        try:
            # Warm the code paths with a few plain streams, so the baseline holds no one-off
            # allocations (imports, first JSON parse) that would be blamed on the held streams.
            warm = [clients.send(http, make_spec_factory("holdwarm", surface, 2, {})(0, i, "warmup", 0.0),
                                 clock.t0) for i in range(4)]
            await asyncio.gather(*warm)
            gc.collect()
            rss_before = rss_bytes()
            started = time.monotonic()
            tasks = [asyncio.ensure_future(clients.send(http, make_spec(0, index, "measure", 0.0),
                                                        clock.t0))
                     for index in range(streams)]
            held = 0
            while time.monotonic() - started < deadline_s:
                stats = (await control.get("/emitter/stats")).json()
                held = max(held, int(stats["held_streams"]))
                if held >= streams or all(task.done() for task in tasks):
                    break
                await asyncio.sleep(0.05)
            open_s = time.monotonic() - started
            rss_held = rss_bytes()
            await control.post("/emitter/release")
            records = await asyncio.gather(*tasks)
        finally:
            await http.aclose()
    error_classes: dict[str, int] = {}
    for record in records:
        if record.error_class is not None:
            error_classes[record.error_class] = error_classes.get(record.error_class, 0) + 1
    ok = sum(1 for record in records if record.error_class is None)
    return HoldResult(surface=surface, streams=streams, held=held, ok=ok,
                      error_classes=error_classes, open_s=open_s,
                      rss_before_bytes=rss_before, rss_held_bytes=rss_held)
