"""Run directories for the report tests, built the way `bench run` writes them: RequestRecords
appended with RecordWriter, a manifest, and optional telemetry / analysis files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from run_wide import once_per_run, run_wide

from bench.records import (GPU_PARQUET, KV_JSON, MANIFEST_FILE, PS_PARQUET, RECOMMENDATION_JSON, RecordWriter,
                           RequestRecord, write_json)

SCRIPT = "<script>window.__pwned=1</script>"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
GIB = 2**30


@dataclass
class RunSpec:
    """What the hand-made run contains."""

    run_id: str = "run-a"
    model: str = "llama3.2:1b"
    surfaces: tuple[str, ...] = ("native", "openai")
    concurrencies: tuple[int, ...] = (1, 2, 4)
    requests_per_cell: int = 8
    rejected_at: int | None = 4  # concurrency whose native cell gets 503s
    cold_measured: bool = True  # first measured native request at concurrency 1 pays a load
    only_errors: bool = False  # every request fails with a 404
    error_message: str | None = None  # overrides the 404 text
    scenario_name: str = "report-test"
    status: str = "complete"
    saturated: bool = False
    gpu: bool = False
    ps: bool = False
    spill: bool = False  # /api/ps shows size_vram < size
    kv: bool = False
    recommendation: bool = False
    speed_factor: float = 1.0  # scales every duration (a "faster server" for comparisons)
    sweep: bool = False  # OLLAMA_NUM_PARALLEL = concurrency in each cell (a NUM_PARALLEL sweep)
    slos: dict[str, str] = field(default_factory=dict)  # the scenario's slos:
    extra_settings: dict[str, Any] = field(default_factory=dict)


def _cell_id(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def _settings(spec: RunSpec, surface: str, concurrency: int) -> dict[str, Any]:
    return {
        "surface": surface, "endpoint": "chat", "model": spec.model, "arrival": "closed",
        "concurrency": concurrency, "rate_rps": None, "prompt_tokens": 512, "max_tokens": 32,
        "num_ctx": None, "keep_alive": None, "temperature": 0.0, "format": "none", "requests": spec.requests_per_cell,
        "duration_s": None, "warmup_requests": 1, "repeat": 1,
        "OLLAMA_NUM_PARALLEL": str(concurrency) if spec.sweep else "2",
        **spec.extra_settings,
    }


def _records(spec: RunSpec, cell_id: str, surface: str, concurrency: int, start_s: float) -> tuple[list[RequestRecord], float]:
    """One warmup and `requests_per_cell` measured requests, `concurrency` at a time."""
    records: list[RequestRecord] = []
    ttft_s = (0.12 + 0.03 * concurrency) * spec.speed_factor
    tpot_s = (0.008 + 0.002 * concurrency) * spec.speed_factor
    clock = start_s
    for index in range(spec.requests_per_cell + 1):
        phase = "warmup" if index == 0 else "measure"
        sent = clock + (index % concurrency) * 0.002
        base = dict(cell_id=cell_id, request_index=index, surface=surface, endpoint="chat", model=spec.model,
                    phase=phase, scheduled_s=sent, sent_s=sent, prompt_chars=2048)
        if spec.only_errors:
            message = spec.error_message or f'model "{spec.model}" not found, try pulling it first'
            records.append(RequestRecord(**base, headers_s=sent + 0.003, end_s=sent + 0.004, status=404,
                                         error_class="client_error", error_message=message))
            clock += 0.01
            continue
        if spec.rejected_at == concurrency and surface == "native" and index in (3, 4):
            records.append(RequestRecord(**base, headers_s=sent + 0.002, end_s=sent + 0.002, status=503,
                                         error_class="rejected", error_message=spec.error_message or BUSY))
            continue
        load_s = 0.0
        if surface == "native" and (index == 0 and cell_id and concurrency == spec.concurrencies[0]):
            load_s = 1.8  # the warmup of the first cell loads the model
        if spec.cold_measured and surface == "native" and concurrency == spec.concurrencies[0] and index == 1:
            load_s = 1.5
        prefill_s = 0.09 * spec.speed_factor
        first = sent + ttft_s + load_s + 0.001 * (index % 3)
        chunks = [first + i * tpot_s for i in range(32)]
        native = surface == "native"
        records.append(RequestRecord(
            **base, headers_s=sent + 0.004, first_token_s=first, first_content_s=first, end_s=chunks[-1] + 0.001,
            chunk_times_s=chunks, status=200, done_reason="length", prompt_tokens=512, output_tokens=32,
            load_duration_ns=int(load_s * 1e9) + 200_000 if native else None,
            prompt_eval_duration_ns=int(prefill_s * 1e9) if native else None,
            eval_duration_ns=int(31 * tpot_s * 1e9) if native else None,
            total_duration_ns=int((chunks[-1] - sent) * 1e9) if native else None, output_chars=130))
        if index % concurrency == concurrency - 1 or index == 0:
            clock = chunks[-1] + 0.002
    return records, clock + 0.05


def build_run(root: Path, spec: RunSpec) -> Path:
    run_dir = root / spec.run_id
    run_dir.mkdir(parents=True)
    cells: list[dict[str, Any]] = []
    clock = 0.5
    windows: list[tuple[float, float]] = []
    with RecordWriter(run_dir) as writer:
        for surface in spec.surfaces:
            for concurrency in spec.concurrencies:
                settings = _settings(spec, surface, concurrency)
                cell_id = _cell_id(settings)
                cells.append({"cell_id": cell_id, "cell_index": len(cells), "settings": settings,
                              "status": "complete", "server_id": 0})
                start = clock
                records, clock = _records(spec, cell_id, surface, concurrency, clock)
                windows.append((start, clock))
                for record in records:
                    writer.append(record)
    if spec.status != "complete":
        cells[-1]["status"] = "partial"
    manifest = {
        "run_id": spec.run_id, "bench_version": "0.1.0", "status": spec.status,
        "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:01:00+00:00",
        "t0_epoch_s": 1767225600.0,
        "host": {"hostname": "bench-host", "platform": "Linux", "python": "3.11.7", "cpu_count": 8},
        "target": {"base_url": "http://127.0.0.1:11434", "kind": "sim", "version": "0.12.6"},
        "models": {spec.model: {"details": {"format": "gguf", "family": "llama", "parameter_size": "1.2B",
                                            "quantization_level": "Q8_0"},
                                "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
                                "capabilities": ["completion"]}},
        "scenario": {"name": spec.scenario_name, "description": f"hand-made run for {spec.scenario_name}",
                     "workload": {"model": [spec.model], "endpoint": ["native/chat", "openai/chat"]},
                     "load": {"concurrency": list(spec.concurrencies)}, "slos": spec.slos},
        "scenario_path": "scenarios/report-test.yaml", "cells": cells,
        "servers": [{"server_id": 0, "env": {"OLLAMA_NUM_PARALLEL": "2"}, "command": ["bench", "sim"],
                     "log": "server-0.log"}],
        "workers": 1,
        "client": {"cpu_s": 1.2, "dispatch_lag_p99_s": 0.25 if spec.saturated else 0.001,
                   "saturated": spec.saturated},
        "gpu": {"devices": [{"name": "NVIDIA L4", "mem_total_bytes": 24 * GIB}]} if spec.gpu else None,
    }
    write_json(run_dir / MANIFEST_FILE, manifest)
    end = clock
    if spec.gpu:
        times = [i * 0.25 for i in range(int(end / 0.25) + 1)]
        pd.DataFrame({"t_s": times, "device": 0, "name": "NVIDIA L4", "mem_total_bytes": 24 * GIB,
                      "mem_used_bytes": [(0.5 + (3.0 if t > 0.6 else 0.0)) * GIB for t in times],
                      "mem_free_bytes": 0, "util_gpu_pct": [60.0 if t > 0.6 else 0.0 for t in times],
                      "power_w": 70.0, "server_proc_mem_bytes": [(3.0 if t > 0.6 else 0.0) * GIB for t in times]}
                     ).to_parquet(run_dir / GPU_PARQUET, index=False)
    if spec.ps or spec.spill:
        times = [i * 0.25 for i in range(int(end / 0.25) + 1)]
        loaded = [t > 0.6 for t in times]
        vram = 2.0 if spec.spill else 3.4
        pd.DataFrame({"t_s": times, "name": [spec.model if on else None for on in loaded],
                      "size_bytes": [3.4 * GIB if on else None for on in loaded],
                      "size_vram_bytes": [vram * GIB if on else None for on in loaded],
                      "context_length": [8192.0 if on else None for on in loaded],
                      "expires_at": [None] * len(times)}).to_parquet(run_dir / PS_PARQUET, index=False)
    if spec.kv:
        write_json(run_dir / KV_JSON, _kv_payload(spec, cells))
    if spec.recommendation:
        write_json(run_dir / RECOMMENDATION_JSON, _recommendation(cells))
    return run_dir


def _kv_payload(spec: RunSpec, cells: list[dict[str, Any]]) -> dict[str, Any]:
    points = [{"cell_id": c["cell_id"], "model": spec.model, "cache_type": "f16", "num_ctx": ctx, "num_parallel": 1,
               "ctx_total": ctx, "ollama_ps_bytes": 1.5 * GIB + ctx * 32768, "nvml_bytes": 1.7 * GIB + ctx * 33000,
               "nvml_source": "server_process"} for c, ctx in zip(cells, (2048, 4096, 8192))]
    fit = {"fixed_bytes": 1.5 * GIB, "bytes_per_token": 32768.0, "bytes_per_token_ci95": None, "r_squared": 1.0,
           "points": 3}
    return {"schema_version": 1, "run_id": spec.run_id, "notes": ["KV note for the test"], "groups": [{
        "model": spec.model, "cache_type": "f16", "arch": None, "points": points,
        "fits": {"ollama_ps": fit, "nvml": {**fit, "fixed_bytes": 1.7 * GIB, "bytes_per_token": 33000.0}},
        "nvml_source": "server_process",
        "bytes_per_token": {"rule_of_thumb": 65536.0, "exact": 32768.0, "exact_stored": 32768.0,
                            "ollama_ps": 32768.0, "nvml": 33000.0},
        "measured_source": "nvml",
        "ratio_to_measured": {"rule_of_thumb": 1.99, "exact": 0.99, "exact_stored": 0.99, "ollama_ps": 0.99}}]}


def _recommendation(cells: list[dict[str, Any]]) -> dict[str, Any]:
    candidate = {"num_parallel": 2, "cell_id": cells[1]["cell_id"], "concurrency": 2, "output_tps": 321.5,
                 "ttft_p95_s": 0.2, "tpot_p95_s": 0.012, "user_tps_p50": 80.0, "fits_in_gpu": True,
                 "size_bytes": None, "size_vram_bytes": None, "outcome": "chosen",
                 "reason": "most output tok/s meeting the SLOs"}
    loser = {**candidate, "num_parallel": 4, "output_tps": 300.0, "outcome": "runner-up",
             "reason": "lower throughput: 300.0 vs 321.5 tok/s"}
    return {"setting": "OLLAMA_NUM_PARALLEL", "num_parallel": 2, "cell_id": cells[1]["cell_id"], "concurrency": 2,
            "output_tps": 321.5, "runner_up": None, "slos": {"ttft_p95": 0.5}, "min_user_tps": None,
            "memory_checked": True, "candidates": [candidate, loser],
            "verdict": "recommended OLLAMA_NUM_PARALLEL=2: 321.5 output tok/s at concurrency 2"}


# Hand-made runs whose page several files check (the page, the browser, the fit at two widths):
# each is rendered once per session (a full page is ~15 figures, 30-60 s on a busy 2-core box).
SHARED_RUNS: dict[str, dict[str, Any]] = {
    "full": dict(gpu=True, ps=True, kv=True, recommendation=True),
    "sizing": dict(sweep=True, ps=True, surfaces=("native",), concurrencies=(1, 2, 4, 8), rejected_at=None,
                   slos={"ttft_p95": "1s"}),
}


@pytest.fixture(scope="session")
@run_wide
def shared_report(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`shared_report("full")` → the report.html of SHARED_RUNS["full"], rendered on first use, once
    per test run over every xdist worker (tests/run_wide.py); read it, never change it."""
    from bench.report import write_report

    def render(kind: str, folder: Path) -> Path:
        run = build_run(folder, RunSpec(**SHARED_RUNS[kind]))
        return write_report([run], run / "report.html")

    def page(kind: str) -> Path:
        return once_per_run(tmp_path_factory, f"report-{kind}", lambda folder: render(kind, folder))

    return page


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """`make_run(gpu=True, ...)` → a run directory under tmp_path (fields of RunSpec)."""

    def make(**overrides: Any) -> Path:
        return build_run(tmp_path / "runs", RunSpec(**overrides))

    return make
