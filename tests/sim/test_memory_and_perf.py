"""/api/ps memory accounting follows Ollama's KV formula; the roofline model has the right shape."""

from __future__ import annotations

import httpx
import pytest

from bench.sim import perf
from bench.sim.catalog import load_catalog

MODEL = "llama3.1:8b"


def _ps_after_load(base_url: str, model: str, num_ctx: int) -> dict:
    body = {"model": model, "prompt": "x", "stream": False, "options": {"num_ctx": num_ctx, "num_predict": 1}}
    httpx.post(f"{base_url}/api/generate", json=body, timeout=60).raise_for_status()
    (entry,) = httpx.get(f"{base_url}/api/ps").json()["models"]
    return entry


def _exact_kv_bytes(base_url: str, model: str, runner_ctx: int, bytes_per_element: float) -> float:
    info = httpx.post(f"{base_url}/api/show", json={"model": model}).json()["model_info"]
    arch = info["general.architecture"]
    head_dim = info[f"{arch}.embedding_length"] // info[f"{arch}.attention.head_count"]
    layers, kv_heads = info[f"{arch}.block_count"], info[f"{arch}.attention.head_count_kv"]
    return 2 * layers * runner_ctx * kv_heads * head_dim * bytes_per_element


@pytest.mark.parametrize(
    ("env", "bytes_per_element"),
    [
        ({"OLLAMA_NUM_PARALLEL": "1"}, 2),
        ({"OLLAMA_NUM_PARALLEL": "2"}, 2),
        ({"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KV_CACHE_TYPE": "q8_0", "OLLAMA_FLASH_ATTENTION": "1"}, 1),
        ({"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KV_CACHE_TYPE": "q4_0", "OLLAMA_FLASH_ATTENTION": "1"}, 0.5),
        ({"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KV_CACHE_TYPE": "q8_0"}, 2),  # no flash attention: f16
    ],
)
def test_ps_size_grows_by_exact_kv_formula(sim, env: dict[str, str], bytes_per_element: float) -> None:
    base_url = sim(speed=200, env=env, gpu="h100")
    parallel = int(env["OLLAMA_NUM_PARALLEL"])
    sizes = {ctx: _ps_after_load(base_url, MODEL, ctx)["size"] for ctx in (2048, 4096, 8192)}
    for low, high in ((2048, 4096), (4096, 8192)):
        expected = _exact_kv_bytes(base_url, MODEL, (high - low) * parallel, bytes_per_element)
        assert sizes[high] - sizes[low] == expected
    # The worked example of the protocol doc: 8192 ctx, f16, one slot → 1 GiB of KV.
    assert _exact_kv_bytes(base_url, MODEL, 8192, 2) == 2**30


def test_spill_shows_size_vram_below_size(sim) -> None:
    base_url = sim(speed=500, gpu_memory="4GiB")
    spilled = _ps_after_load(base_url, MODEL, 4096)
    assert 0 < spilled["size_vram"] < spilled["size"]
    fits = _ps_after_load(sim(speed=500, gpu_memory="24GiB"), MODEL, 4096)
    assert fits["size_vram"] == fits["size"]


def test_seventy_b_spills_on_a_24_gib_gpu_but_fits_an_h100() -> None:
    catalog = load_catalog()
    model = catalog.models["llama3.3:70b"]
    on_4090 = perf.memory_layout(model, 4096, 2, catalog.gpus["rtx4090"].memory_bytes)
    on_h100 = perf.memory_layout(model, 4096, 2, catalog.gpus["h100"].memory_bytes)
    assert on_4090.size_vram_bytes < on_4090.size_bytes
    assert on_h100.size_vram_bytes == on_h100.size_bytes


def test_spilling_an_eighth_of_the_layers_makes_decode_several_times_slower() -> None:
    catalog = load_catalog()
    model, gpu = catalog.models[MODEL], catalog.gpus["rtx4090"]
    full = perf.memory_layout(model, 4096, 2, gpu.memory_bytes)
    partial = perf.memory_layout(model, 4096, 2, int(full.size_bytes * 0.9))
    assert partial.gpu_layers == 28 and partial.total_layers == 32
    assert perf.decode_step_s(model, gpu, partial, 1, 100, 2) > 3 * perf.decode_step_s(model, gpu, full, 1, 100, 2)


def test_aggregate_decode_throughput_grows_sublinearly_with_slots() -> None:
    catalog = load_catalog()
    model, gpu = catalog.models[MODEL], catalog.gpus["rtx4090"]
    layout = perf.memory_layout(model, 4096 * 8, 2, gpu.memory_bytes)
    rates = [b / perf.decode_step_s(model, gpu, layout, b, b * 1000, 2) for b in (1, 2, 4, 8)]
    assert rates == sorted(rates)
    assert rates[3] < 8 * rates[0]
    single_tps = rates[0]
    assert 80 < single_tps < 200  # ≈140 tok/s for an 8B Q4_K_M on a 1 TB/s GPU (perf model doc)


def test_jitter_mean_does_not_depend_on_seed() -> None:
    means = []
    for seed in (1, 2, 3):
        jitter = perf.Jitter(seed)
        means.append(sum(jitter.factor() for _ in range(20000)) / 20000)
    assert all(abs(mean - 1.0) < 0.002 for mean in means)
    assert perf.Jitter(7).factor() == perf.Jitter(7).factor()
