"""analyze_run on hand-made runs: which samples count, NVML preferred as 'measured', ratios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.analysis.kv_fit import analyze_run
from bench.records import Run, cells_frame

from .test_kv_formulas import LLAMA31_8B_INFO

WEIGHTS = 4_920_753_328
GRAPH = 300_000_000
EXACT_PER_TOKEN = 131072
# A real runner allocates a little more than the estimate: ggml's padding, CUDA context.
MEASURED_PER_TOKEN = 135000
CUDA_CONTEXT = 500_000_000


def make_run(with_gpu: bool, cache_type: str | None = None) -> Run:
    cells: list[dict[str, Any]] = []
    requests: list[dict[str, Any]] = []
    ps_rows: list[dict[str, Any]] = []
    gpu_rows: list[dict[str, Any]] = []
    t_s = 0.0
    previous_size: int | None = None
    for num_parallel in (1, 2, 4):
        for num_ctx in (2048, 8192, 32768):
            cell_id = f"c{len(cells)}"
            settings = {"model": "llama3.1:8b", "num_ctx": num_ctx, "OLLAMA_NUM_PARALLEL": str(num_parallel)}
            if cache_type:
                settings["OLLAMA_KV_CACHE_TYPE"] = cache_type
            cells.append({"cell_id": cell_id, "cell_index": len(cells), **settings})
            ctx_total = num_ctx * num_parallel
            size = WEIGHTS + GRAPH + EXACT_PER_TOKEN * ctx_total
            measured = WEIGHTS + CUDA_CONTEXT + MEASURED_PER_TOKEN * ctx_total
            requests.append({"cell_id": cell_id, "sent_s": t_s, "end_s": t_s + 10.0})
            for step in range(40):
                sample_t = t_s + step * 0.25
                # The first two seconds still show the previous runner (reload in progress).
                reloading = step < 8 and previous_size is not None
                ps_rows.append({"t_s": sample_t, "name": "llama3.1:8b",
                                "size_bytes": previous_size if reloading else size,
                                "size_vram_bytes": previous_size if reloading else size,
                                "context_length": None, "expires_at": None})  # fmt: skip
                gpu_rows.append({"t_s": sample_t, "device": 0, "name": "GPU", "mem_total_bytes": 80 * 2**30,
                                 "mem_used_bytes": measured + 2**30, "mem_free_bytes": 0,
                                 "util_gpu_pct": 50.0, "power_w": 300.0,
                                 "server_proc_mem_bytes": 0 if reloading else measured})  # fmt: skip
            previous_size = size
            t_s += 12.0
    manifest = {"run_id": "synthetic", "models": {"llama3.1:8b": {"model_info": LLAMA31_8B_INFO}},
                "cells": [{"cell_id": cell["cell_id"], "cell_index": cell["cell_index"],
                           "settings": {k: v for k, v in cell.items() if k not in ("cell_id", "cell_index")}}
                          for cell in cells]}
    return Run(
        path=Path("."),
        manifest=manifest,
        requests=pd.DataFrame(requests),
        cells=pd.DataFrame(cells),
        gpu=pd.DataFrame(gpu_rows) if with_gpu else None,
        ps=pd.DataFrame(ps_rows),
    )


def test_nvml_server_memory_is_the_measured_figure() -> None:
    (group,) = analyze_run(make_run(with_gpu=True))["groups"]
    assert group["measured_source"] == "nvml" and group["nvml_source"] == "server_process"
    assert group["fits"]["nvml"]["bytes_per_token"] == pytest.approx(MEASURED_PER_TOKEN)
    assert group["fits"]["nvml"]["fixed_bytes"] == pytest.approx(WEIGHTS + CUDA_CONTEXT)
    assert group["fits"]["ollama_ps"]["bytes_per_token"] == pytest.approx(EXACT_PER_TOKEN)
    ratios = group["ratio_to_measured"]
    assert ratios["exact"] == pytest.approx(EXACT_PER_TOKEN / MEASURED_PER_TOKEN)
    assert ratios["rule_of_thumb"] == pytest.approx(2 * EXACT_PER_TOKEN / MEASURED_PER_TOKEN)
    assert ratios["ollama_ps"] == pytest.approx(EXACT_PER_TOKEN / MEASURED_PER_TOKEN)
    points = group["points"]
    assert [p["ctx_total"] for p in points] == [2048, 8192, 32768, 4096, 16384, 65536, 8192, 32768, 131072]


def test_without_gpu_ollama_estimate_is_measured() -> None:
    payload = analyze_run(make_run(with_gpu=False))
    (group,) = payload["groups"]
    assert group["measured_source"] == "ollama_ps" and group["fits"]["nvml"] is None
    assert group["ratio_to_measured"]["exact"] == pytest.approx(1.0)
    assert group["ratio_to_measured"]["rule_of_thumb"] == pytest.approx(2.0)
    assert payload["schema_version"] == 1 and payload["run_id"] == "synthetic"


def test_cache_type_comes_from_the_server_env() -> None:
    (group,) = analyze_run(make_run(with_gpu=False, cache_type="q8_0"))["groups"]
    assert group["cache_type"] == "q8_0"
    assert group["bytes_per_token"]["exact"] == 65536
    assert group["bytes_per_token"]["exact_stored"] == 65536 * 34 / 32


def test_cells_without_context_size_are_left_out_with_a_note() -> None:
    run = make_run(with_gpu=False)
    first = run.manifest.cells[0]
    run.manifest.cells[0] = first.model_copy(update={"settings": first.settings.model_copy(update={"num_ctx": None})})
    run.cells = cells_frame(run.manifest)
    payload = analyze_run(run)
    assert len(payload["groups"][0]["points"]) == 8
    assert payload["notes"] == ["cell c0: no num_ctx; left out of the fit"]


def test_a_run_with_one_context_size_gets_no_fit() -> None:
    run = make_run(with_gpu=False)
    run.manifest.cells = run.manifest.cells[:1]
    run.cells = cells_frame(run.manifest)
    payload = analyze_run(run)
    (group,) = payload["groups"]
    assert group["fits"] == {"ollama_ps": None, "nvml": None, "process_rss": None, "logged_kv": None}
    assert group["ratio_to_measured"]["exact"] is None
    assert payload["notes"] == ["llama3.1:8b f16: one context size only; no fit"]


def test_the_kv_buffers_llama_server_logged_fit_their_own_line() -> None:
    """A real Ollama's log gives each runner's KV buffer: fitted alone, no compute-buffer terms."""
    from bench.analysis.kv_fit import KvPoint, analyze_group

    points = [KvPoint(cell_id=f"c{ctx}", model="m", cache_type="f16", num_ctx=ctx, num_parallel=1,
                      ctx_total=ctx, ollama_ps_bytes=None, nvml_bytes=None, nvml_source=None,
                      logged_kv_bytes=16384 * ctx) for ctx in (2048, 4096, 8192)]
    group = analyze_group(points, None, "f16")
    assert group["bytes_per_token"]["logged_kv"] == pytest.approx(16384)
    assert group["fits"]["logged_kv"]["fixed_bytes"] == pytest.approx(0, abs=1e-3)


def test_the_simulated_engine_has_no_kv_measurement_and_no_ratio_of_api_ps_to_itself() -> None:
    run = make_run(with_gpu=False)
    # The simulated engine's server: a Python process whose RSS does not grow with the KV cache.
    times = [i * 0.25 for i in range(int(12.0 * 9 / 0.25))]
    run.proc = pd.DataFrame({"t_s": times, "rss_bytes": 180 * 2**20, "engine_rss_bytes": 0})
    (group,) = analyze_run(run)["groups"]
    assert group["fits"]["process_rss"] is None and group["bytes_per_token"]["process_rss"] is None
    assert all(p["process_rss_bytes"] is None for p in group["points"])
    assert group["measured_source"] == "ollama_ps"
    assert group["ratio_to_measured"]["ollama_ps"] is None  # 1.00 by construction: not shown
    assert group["measurement_note"].startswith("no KV measurement")
