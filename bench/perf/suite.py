"""The whole `bench perf` benchmark: machine info, throughput ramp, held streams, accuracy.

Writes nothing but the returned dict (the CLI writes perf.json); reports progress through a
callback so the CLI decides how it looks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import __version__
from bench.load.clock import run_async
from bench.perf.accuracy import read_emit_log, timing_errors
from bench.perf.drive import HoldResult, StepResult, closed_loop, hold_streams, request_nonce
from bench.perf.emitter_proc import EmitterProcess, cpu_plan, process_cpu_s, running_emitter
from bench.perf.workers import run_workers
from bench.records.record import RequestRecord, Surface

Progress = Callable[[str], None]

# Throughput keeps ramping while a level beats the best so far by this much.
GROWTH_FACTOR = 1.05
# Levels without growth before the ramp stops (one noisy level on a shared machine is forgiven).
STALL_LEVELS = 2


@dataclass(frozen=True)
class PerfOptions:
    surfaces: tuple[Surface, ...] = ("native", "openai")
    quick: bool = False
    tokens: int = 32
    accuracy_itl_ms: float = 20.0
    accuracy_ttft_ms: float = 20.0
    # make_http_client's transports, measured side by side: "httpx" (httpcore) and "fast"
    # (bench.clients.transport.FastTransport).
    transports: tuple[str, ...] = ("httpx", "fast")
    # Client processes for the throughput ramp (bench.perf.workers); 1: this process alone.
    workers: int = 1

    @property
    def step_s(self) -> float:
        return 1.0 if self.quick else 4.0

    @property
    def ramp_levels(self) -> tuple[int, ...]:
        return (8, 32) if self.quick else (1, 4, 16, 32, 64, 128, 256, 512)

    def hold_levels(self, transport: str) -> tuple[int, ...]:
        # httpx's pool is O(connections²) per request start/end: releasing 1024 held streams
        # through it alone takes minutes, so --quick holds fewer there.
        if self.quick:
            return (256,) if transport == "httpx" else (1024,)
        return (256, 1024) if transport == "httpx" else (1024, 2048, 4096)

    @property
    def accuracy_levels(self) -> tuple[tuple[int, int], ...]:
        """(concurrent streams, requests) per accuracy level."""
        if self.quick:
            return ((1, 5), (64, 64))
        return ((1, 40), (64, 512), (256, 1024))


def machine_info(client_cpu: int | None, emitter_cpu: int | None) -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model, "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)), "client_cpu": client_cpu,
        "emitter_cpu": emitter_cpu, "pinned": client_cpu is not None,
        "platform": platform.platform(), "python": platform.python_version(),
        "uvloop": importlib.util.find_spec("uvloop") is not None,
        "emitter_httptools": importlib.util.find_spec("httptools") is not None,
        "httpx": httpx.__version__, "bench_version": __version__,
        "load_average": list(os.getloadavg()),
    }


def raise_nofile_limit() -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard one (each held stream is one socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


@contextlib.contextmanager
def pinned_to(cpu: int | None) -> Iterator[None]:
    """Pin this process to `cpu` for the block (the client's core), then restore."""
    if cpu is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def ramp_should_stop(rps_history: list[float]) -> bool:
    """Stop once STALL_LEVELS levels in a row failed to beat the best earlier level by GROWTH_FACTOR."""
    if len(rps_history) <= STALL_LEVELS:
        return False
    best_before = max(rps_history[:-STALL_LEVELS])
    return all(rps < best_before * GROWTH_FACTOR for rps in rps_history[-STALL_LEVELS:])


def throughput_ramp(emitter: EmitterProcess, surface: Surface, transport: str,
                    options: PerfOptions, progress: Progress,
                    client_cpus: list[int | None]) -> dict[str, Any]:
    base_url = emitter.base_url
    steps: list[StepResult] = []
    emitter_shares: list[float] = []
    for concurrency in options.ramp_levels:
        # The emitter's share of its core over the step (warmup included): near 100%, the
        # emitter, not bench, is what stops the ramp.
        emitter_cpu_before, started = process_cpu_s(emitter.pid), time.monotonic()
        if options.workers > 1:
            step, _, _ = run_workers(base_url, surface, concurrency, options.workers,
                                     duration_s=options.step_s, cpus=client_cpus,
                                     tokens=options.tokens, transport=transport,
                                     cell_id=f"tp{concurrency}")
        else:
            step, _, _ = run_async(closed_loop(base_url, surface, concurrency,
                                               tokens=options.tokens, duration_s=options.step_s,
                                               cell_id=f"tp{concurrency}", transport=transport))
        steps.append(step)
        emitter_shares.append((process_cpu_s(emitter.pid) - emitter_cpu_before)
                              / (time.monotonic() - started))
        progress(f"throughput {transport:5} {surface:6} c={concurrency:<4} {step.rps:8.0f} req/s "
                 f"{step.tokens_per_s:9.0f} tok/s  cpu {step.cpu_fraction:4.0%}  "
                 f"emitter cpu {emitter_shares[-1]:4.0%}  "
                 f"{1e6 * step.cpu_s / max(step.ok, 1):6.0f} µs/req  errors {step.errors}")
        if ramp_should_stop([s.rps for s in steps]):
            break
    step_dicts = [{**step.as_dict(), "emitter_cpu_fraction": round(share, 3)}
                  for step, share in zip(steps, emitter_shares)]
    best_index = max(range(len(steps)), key=lambda index: steps[index].rps)
    return {"steps": step_dicts, "best": step_dicts[best_index]}


def held_streams(base_url: str, surface: Surface, transport: str, options: PerfOptions,
                 progress: Progress) -> dict[str, Any]:
    results = []
    for streams in options.hold_levels(transport):
        # In a fresh interpreter (same CPU pin and limits, inherited): in this one the heap still
        # holds what earlier steps freed, and new streams reuse it without growing the RSS.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            result = fresh.submit(_hold_streams_now, base_url, surface, streams, transport).result()
        results.append(result.as_dict())
        progress(f"held       {transport:5} {surface:6} n={streams:<5} held {result.held:5}  ok {result.ok:5}  "
                 f"{result.bytes_per_stream / 1024:6.1f} KiB/stream  open in {result.open_s:.1f} s"
                 f"  errors {result.error_classes or 0}")
        if not result.clean:
            break
    clean = [r for r in results if r["clean"]]
    return {"levels": results, "max_clean_streams": max((r["streams"] for r in clean), default=0),
            "kib_per_stream": results[0]["kib_per_stream"] if results else None}


def _hold_streams_now(base_url: str, surface: Surface, streams: int, transport: str) -> HoldResult:
    return run_async(hold_streams(base_url, surface, streams, transport=transport))


def accuracy(base_url: str, emit_log: Path, surface: Surface, transport: str,
             options: PerfOptions, progress: Progress) -> dict[str, Any]:
    levels: dict[str, Any] = {}
    lockstep = {"emit_itl_ms": options.accuracy_itl_ms, "emit_ttft_ms": options.accuracy_ttft_ms}
    # Same streams with start times spread over one request's length: in lock-step (above) every
    # stream ends, and the next one starts, in the same millisecond, the client's worst case.
    staggered = {**lockstep, "emit_ttft_jitter_ms": options.accuracy_itl_ms * options.tokens}
    runs = [(str(c), n, lockstep) for c, n in options.accuracy_levels]
    runs += [(f"{c}-staggered", n, staggered) for c, n in options.accuracy_levels if c > 1]
    for level, requests, emit_options in runs:
        concurrency = int(level.split("-")[0])
        cell_id = f"acc-{transport}-{surface}-{level}"
        step, records, clock = run_async(closed_loop(
            base_url, surface, concurrency, tokens=options.tokens, requests=requests,
            # Warmed up: the pool's connections are open, so request_lag is the steady state's
            # (no TCP connects), as in a run's measured phase after its warmup.
            options=emit_options, cell_id=cell_id, warmup=True,
            transport=transport))
        httpx.post(base_url + "/emitter/flush", timeout=10.0)
        errors = timing_errors(records, clock.t0, read_emit_log(emit_log), _record_nonce)
        errors.update(requests=step.requests, errors=step.errors,
                      client_cpu_fraction=round(step.cpu_fraction, 3))
        levels[level] = errors
        progress(f"accuracy   {transport:5} {surface:6} c={level:<13} TTFT error p50 "
                 f"{errors['ttft_error']['p50_ms']} ms p99 {errors['ttft_error']['p99_ms']} ms "
                 f"max {errors['ttft_error']['max_ms']} ms; ITL |error| p99 "
                 f"{errors['itl_abs_error']['p99_ms']} ms; cpu {step.cpu_fraction:.0%}")
    return {"itl_ms": options.accuracy_itl_ms, "ttft_ms": options.accuracy_ttft_ms,
            "tokens": options.tokens, "levels": levels}


def _record_nonce(record: RequestRecord) -> str:
    return request_nonce(record.cell_id, record.repeat, record.request_index)


def run_perf(options: PerfOptions, progress: Progress, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every section; returns what perf.json holds.

    `result` (a dict the caller keeps) fills in as sections finish, so an interrupted run can
    still store what it measured."""
    result = {} if result is None else result
    emitter_cpu, client_cpu = cpu_plan()
    # Worker processes get the CPUs the emitter does not use (all of them share the client's one
    # on a 2-core machine, where more workers cannot add throughput).
    client_cpus: list[int | None] = [cpu for cpu in sorted(os.sched_getaffinity(0))
                                     if cpu != emitter_cpu] if emitter_cpu is not None else [None]
    nofile = raise_nofile_limit()
    result.update({"machine": machine_info(client_cpu, emitter_cpu),
                              "command": " ".join(sys.argv), "quick": options.quick,
                              "tokens_per_request": options.tokens,
                              "rlimit_nofile": list(nofile), "workers": options.workers,
                              "worker_cpus": [client_cpus[i % len(client_cpus)]
                                              for i in range(options.workers)],
                              "throughput": {}, "held_streams": {}, "accuracy": {}})
    progress(f"client on CPU {client_cpu}, emitter on CPU {emitter_cpu}; "
             f"uvloop {'on' if result['machine']['uvloop'] else 'off'}")
    with pinned_to(client_cpu):
        pairs = [(transport, surface) for transport in options.transports
                 for surface in options.surfaces]
        for section in ("throughput", "held_streams", "accuracy"):
            for transport in options.transports:
                result[section][transport] = {}
        with running_emitter(tokens=options.tokens, cpu=emitter_cpu) as emitter:
            for transport, surface in pairs:
                result["throughput"][transport][surface] = throughput_ramp(
                    emitter, surface, transport, options, progress, client_cpus)
            for transport, surface in pairs:
                result["held_streams"][transport][surface] = held_streams(
                    emitter.base_url, surface, transport, options, progress)
        with tempfile.TemporaryDirectory(prefix="bench-perf-emit-") as log_dir:
            emit_log = Path(log_dir) / "emit.jsonl"
            with running_emitter(tokens=options.tokens, cpu=emitter_cpu, emit_log=emit_log) as emitter:
                for transport, surface in pairs:
                    result["accuracy"][transport][surface] = accuracy(
                        emitter.base_url, emit_log, surface, transport, options, progress)
    # Other processes on these cores skew every figure: a load average well above the two
    # pinned processes' share says the machine was not quiet.
    result["load_average_end"] = list(os.getloadavg())
    result["summary"] = summarize(result)
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """The headline figures per transport, against issue 8's targets."""
    return {transport: _summarize_transport(result, transport) for transport in result["throughput"]}


def _summarize_transport(result: dict[str, Any], transport: str) -> dict[str, Any]:
    best_rps = {surface: section["best"]["rps"]
                for surface, section in result.get("throughput", {}).get(transport, {}).items()}
    max_streams = {surface: section["max_clean_streams"]
                   for surface, section in result.get("held_streams", {}).get(transport, {}).items()}
    ttft_p99_256 = {surface: section["levels"].get("256", {}).get("ttft_error", {}).get("p99_ms")
                    for surface, section in result.get("accuracy", {}).get(transport, {}).items()}
    measured_256 = [v for v in ttft_p99_256.values() if v is not None]
    return {
        "best_rps": best_rps, "max_clean_streams": max_streams,
        "ttft_error_p99_ms_at_256": ttft_p99_256,
        # None: not measured (--quick holds no 256-stream accuracy level; an interrupted run).
        "targets": {"rps_1000": all(v >= 1000 for v in best_rps.values()) if best_rps else None,
                    "streams_1024": all(v >= 1024 for v in max_streams.values()) if max_streams else None,
                    "ttft_p99_1ms_at_256": (all(v <= 1.0 for v in measured_256)
                                            if measured_256 and len(measured_256) == len(ttft_p99_256)
                                            else None)},
    }
