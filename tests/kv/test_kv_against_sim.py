"""End to end against the simulator: /api/ps timelines, the fit in kv.json, and `bench kv`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.analysis.kv_fit import analyze_run
from bench.analysis.kv_formulas import exact_kv_bytes
from bench.analysis.kv_model import ModelArch
from bench.records import RecordWriter, RequestRecord, load_run, write_json
from bench.telemetry import start_telemetry
from polling import wait_for

NUM_CTX_VALUES = (2048, 4096, 8192, 16384)
NUM_PARALLEL_VALUES = (1, 2, 4)


def load_model(base_url: str, model: str, num_ctx: int, keep_alive: str | int = "10m") -> None:
    """An empty prompt only loads the model (Ollama's documented load request).

    num_batch is pinned: v0.33 sizes the batch (and so llama-server's compute buffer) by
    num_ctx × NUM_PARALLEL, which would put steps into a size-versus-context line.
    """
    response = httpx.post(
        f"{base_url}/api/generate",
        json={"model": model, "prompt": "", "stream": False, "keep_alive": keep_alive,
              "options": {"num_ctx": num_ctx, "num_batch": 512}},
        timeout=60,
    )  # fmt: skip
    response.raise_for_status()


def ps_size(base_url: str, model: str) -> int:
    (entry,) = [m for m in httpx.get(f"{base_url}/api/ps").json()["models"] if m["name"] == model]
    return int(entry["size"])


def test_ps_poller_sees_the_simulator_load_and_unload(sim: Callable[..., str], tmp_path: Path) -> None:
    base_url = sim(speed=100.0, gpu_memory="80GiB")
    session = start_telemetry(tmp_path, time.monotonic(), base_url, None, ps_interval_s=0.02)
    try:
        load_model(base_url, "llama3.2:1b", 4096)
        wait_for(lambda: any(r.name == "llama3.2:1b" for r in session.ps_poller.rows))
        load_model(base_url, "llama3.2:1b", 4096, keep_alive=0)
        wait_for(lambda: session.ps_poller.rows[-1].name is None)
    finally:
        session.stop()
    timeline = load_run_ps(tmp_path)
    loaded = timeline[timeline["name"] == "llama3.2:1b"]
    assert (loaded["context_length"] == 4096).all()
    assert (loaded["size_bytes"] > 1_321_098_329).all()  # weights + KV + graph
    assert loaded["size_vram_bytes"].equals(loaded["size_bytes"])  # fits in 80 GiB
    assert timeline["name"].isna().iloc[-1]


def load_run_ps(run_dir: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(run_dir / "ps.parquet")


@pytest.mark.parametrize(("cache_type", "env"), [("f16", {}), ("q8_0", {"OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": "1"})])
def test_fit_on_api_ps_recovers_simulator_bytes_per_token(sim: Callable[..., str], cache_type: str, env: dict[str, str]) -> None:
    from bench.analysis.kv_fit import fit_bytes_per_token

    ctx_totals: list[int] = []
    sizes: list[int] = []
    mask_cells: list[int] = []  # llama-server's attention mask: -ub (pinned 512) × per-slot num_ctx
    for num_parallel in NUM_PARALLEL_VALUES:
        base_url = sim(speed=100.0, gpu_memory="80GiB", env={"OLLAMA_NUM_PARALLEL": str(num_parallel), **env})
        for num_ctx in NUM_CTX_VALUES:
            load_model(base_url, "llama3.1:8b", num_ctx)
            ctx_totals.append(num_ctx * num_parallel)
            mask_cells.append(512 * num_ctx)
            sizes.append(ps_size(base_url, "llama3.1:8b"))
    fit = fit_bytes_per_token(ctx_totals, sizes, mask_cells=mask_cells)
    assert fit is not None
    shown = httpx.post(f"{base_url}/api/show", json={"model": "llama3.1:8b"}).json()
    arch = ModelArch.from_model_info(shown["model_info"])
    # llama-server stores q8_0 as 34-byte blocks of 32 values: the KV buffer is 34/32 of nominal.
    true_per_token = exact_kv_bytes(arch, 1, 1, cache_type, stored=True)
    assert true_per_token == {"f16": 131072, "q8_0": 69632}[cache_type]
    assert fit.bytes_per_token == pytest.approx(true_per_token, rel=0.01)
    # The fixed part is the GPU's model buffer plus the compute buffer: a full offload's size is
    # its VRAM, which leaves out the token embeddings llama.cpp keeps on the CPU (281 MiB).
    assert 0.9 * 4_920_753_328 < fit.fixed_bytes < 4_920_753_328 + 2**30


def record_cell(writer: RecordWriter, cell_id: str, t0: float, sent_s: float, model: str) -> None:
    writer.append(RequestRecord(cell_id=cell_id, request_index=0, surface="native", endpoint="generate",
                                model=model, sent_s=sent_s, end_s=time.monotonic() - t0,
                                status=200, done_reason="load"))  # fmt: skip


def test_kv_analyze_on_a_managed_sweep_writes_kv_json(sim: Callable[..., str], tmp_path: Path) -> None:
    """A run shaped like RUN's: one server per NUM_PARALLEL, telemetry re-pointed at each."""
    model = "qwen2.5:0.5b"
    t0 = time.monotonic()
    cells: list[dict[str, Any]] = []
    session = start_telemetry(tmp_path, t0, None, None, ps_interval_s=0.02)
    shown: dict[str, Any] = {}
    try:
        with RecordWriter(tmp_path) as writer:
            for num_parallel in NUM_PARALLEL_VALUES:
                base_url = sim(speed=100.0, gpu_memory="24GiB", env={"OLLAMA_NUM_PARALLEL": str(num_parallel)})
                session.set_target(base_url, None)
                shown = httpx.post(f"{base_url}/api/show", json={"model": model}).json()
                for num_ctx in (2048, 8192, 32768):
                    cell_id = f"p{num_parallel}-c{num_ctx}"
                    cells.append({"cell_id": cell_id, "cell_index": len(cells), "status": "complete",
                                  "settings": {"model": model, "num_ctx": num_ctx,
                                               "OLLAMA_NUM_PARALLEL": str(num_parallel)}})  # fmt: skip
                    sent_s = time.monotonic() - t0
                    load_model(base_url, model, num_ctx)
                    # Hold the cell open until the poller has seen this runner a few times.
                    seen = len(session.ps_poller.rows)
                    wait_for(lambda: sum(r.context_length == num_ctx for r in session.ps_poller.rows[seen:]) >= 3)
                    record_cell(writer, cell_id, t0, sent_s, model)
    finally:
        session.stop()
    write_json(tmp_path / "manifest.json", {"run_id": "kv-test", "cells": cells,
                                            "models": {model: {"model_info": shown["model_info"]}}})  # fmt: skip
    payload = analyze_run(load_run(tmp_path))
    (group,) = payload["groups"]
    assert group["model"] == model and group["cache_type"] == "f16"
    assert len(group["points"]) == 9
    # qwen2.5:0.5b: 24 layers x 2 KV heads x 64 x 2 (K, V) x 2 B = 12288 B per token.
    assert group["bytes_per_token"]["exact"] == 12288
    assert group["bytes_per_token"]["ollama_ps"] == pytest.approx(12288, rel=0.01)
    assert group["measured_source"] == "ollama_ps"
    # The rule of thumb (24 x 896 x 2 = 43008 B/token) is 3.5x the measured figure.
    assert group["ratio_to_measured"]["rule_of_thumb"] == pytest.approx(3.5, rel=0.01)
    low, high = group["fits"]["ollama_ps"]["bytes_per_token_ci95"]
    assert low <= 12288 * 1.01 and high >= 12288 * 0.99

    result = CliRunner().invoke(cli, ["kv-analyze", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "qwen2.5:0.5b (cache f16, 9 cells)" in result.output
    assert (tmp_path / "kv.json").exists()
    assert load_run(tmp_path).extras["kv.json"]["groups"][0]["model"] == model
