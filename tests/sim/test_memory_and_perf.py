"""Memory as Ollama v0.33 reports it (llama-server's buffers, --fit partial offload, tiered context)
and the roofline model's shape. Each test names the v0.33 function it follows."""

from __future__ import annotations

import httpx
import pytest

from bench.sim import memory, roofline
from bench.sim.backend import LoadRequest
from bench.sim.catalog import ModelSpec, load_catalog
from bench.sim.testing import simulator_for

MODEL = "llama3.1:8b"


def _load(base_url: str, model: str, options: dict | None = None) -> dict:
    # keep_alive -1: at speed 500 the default 5m lasts 0.6 s of wall time, so on a busy machine a
    # model could expire between two loads and the eviction checks would measure expiry instead.
    body = {"model": model, "prompt": "x", "stream": False, "keep_alive": -1,
            "options": {"num_predict": 1, **(options or {})}}
    response = httpx.post(f"{base_url}/api/generate", json=body, timeout=60)
    response.raise_for_status()
    return next(m for m in httpx.get(f"{base_url}/api/ps").json()["models"] if m["name"] == model)


def _runner_memory(base_url: str, model: str):
    return simulator_for(base_url).scheduler.loaded[model].runner.memory


@pytest.mark.parametrize(
    ("gpu", "expected_ctx", "expected_batch"),
    [("h100", 131072, 2048), ("rtx4090", 32768, 1024), ("rtx4080", 4096, 512)],
)
def test_default_context_follows_vram_tier_clamped_to_training(sim, gpu: str, expected_ctx: int, expected_batch: int) -> None:
    """Server.Serve VRAM tiers (262144/32768/4096), effectiveContext clamp, automaticGenerationBatch."""
    base_url = sim(speed=200, gpu=gpu)
    entry = _load(base_url, MODEL)
    assert entry["context_length"] == expected_ctx  # per slot, clamped (h100: 262144 → 131072)
    assert _runner_memory(base_url, MODEL).num_batch == expected_batch


def test_gpu_overhead_lowers_the_context_tier(sim) -> None:
    """Server.Serve: totalVRAM = Σ (TotalMemory − OLLAMA_GPU_OVERHEAD)."""
    base_url = sim(speed=200, gpu="rtx4090", env={"OLLAMA_GPU_OVERHEAD": "2GiB"})
    assert _load(base_url, MODEL)["context_length"] == 4096


@pytest.mark.parametrize(
    ("env", "bytes_per_element"),
    [
        ({"OLLAMA_NUM_PARALLEL": "1"}, 2),
        ({"OLLAMA_NUM_PARALLEL": "2"}, 2),
        ({"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_KV_CACHE_TYPE": "q8_0"}, 34 / 32),
        ({"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KV_CACHE_TYPE": "q4_0", "OLLAMA_FLASH_ATTENTION": "0"}, 18 / 32),
    ],
)
def test_kv_buffer_is_stored_for_the_cache_type(sim, env: dict[str, str], bytes_per_element: float) -> None:
    """startLlamaServer passes --cache-type-k/v whenever OLLAMA_KV_CACHE_TYPE is set (no FA gate)."""
    base_url = sim(speed=200, env=env, gpu="h100")
    parallel = int(env["OLLAMA_NUM_PARALLEL"])
    for num_ctx in (2048, 8192):
        entry = _load(base_url, MODEL, {"num_ctx": num_ctx})
        report = _runner_memory(base_url, MODEL)
        # 32 layers × 8 KV heads × (128 + 128) × bpe per cell, num_ctx × NUM_PARALLEL cells.
        assert report.bytes_of("KV") == int(32 * num_ctx * parallel * 8 * 256 * bytes_per_element)
        assert entry["size"] == entry["size_vram"] == report.size_vram_bytes  # full offload: size = vram
        assert entry["context_length"] == num_ctx


def test_compute_buffer_grows_with_batch_and_without_flash_attention_with_context() -> None:
    """llama-server's CUDA0 compute buffer: logits of one ubatch (FA on), attention scores (FA off)."""
    model = load_catalog().models[MODEL]
    device_512, host_512 = memory.compute_buffers(model, 512, 8192, flash_attention=True)
    assert round(device_512 / 2**20, 2) == 258.5 and round(host_512 / 2**20, 2) == 24.0  # llama.cpp's log
    assert memory.compute_buffers(model, 2048, 8192, True)[0] == 4 * device_512
    # llama-server's own log for a 16-layer, 1024-wide, 8-head, ffn 2816, vocab 4096 GGUF (bench gguf make)
    # at -c 16384 -ub 512: 42.52 MiB with flash attention, 304.01 MiB without.
    probe = ModelSpec(name="probe:latest", architecture="llama", family="llama", quantization="F16",
                      size_bytes=428094144, parameter_count=200_000_000, block_count=16, embedding_length=1024,
                      head_count=8, head_count_kv=8, context_length=16384, feed_forward_length=2816,
                      key_length=128, value_length=128, vocab_size=4096)
    assert round(memory.compute_buffers(probe, 512, 16384, True)[0] / 2**20, 2) == pytest.approx(42.52, abs=0.06)
    assert round(memory.compute_buffers(probe, 512, 16384, False)[0] / 2**20, 2) == pytest.approx(304.01, abs=0.06)
    no_fa_small = memory.compute_buffers(model, 512, 8192, flash_attention=False)[0]
    no_fa_large = memory.compute_buffers(model, 512, 32768, flash_attention=False)[0]
    assert no_fa_large > no_fa_small > device_512


def test_a_model_too_big_for_the_gpu_is_partially_offloaded_not_refused(sim) -> None:
    """llamaServerRunner.Load ignores requireFull; llama-server --fit leaves layers on the CPU."""
    base_url = sim(speed=500, gpu="rtx4090")
    entry = _load(base_url, "llama3.3:70b", {"num_ctx": 4096})
    assert 0 < entry["size_vram"] < entry["size"]
    report = _runner_memory(base_url, "llama3.3:70b")
    assert 0 < report.gpu_layers < report.total_layers
    assert report.size_vram_bytes <= 24564 * 2**20 - memory.FIT_MARGIN_BYTES


def test_automatic_context_steps_down_once_after_an_out_of_memory_load(sim) -> None:
    """reduceAutoNumCtxForLoadOOM / nextLowerAutoNumCtx: 131072 → 32768, one retry, auto ctx only."""
    env = {"OLLAMA_NUM_PARALLEL": "4"}
    base_url = sim(speed=500, gpu="h100", env=env, host_memory="64GiB")
    entry = _load(base_url, "llama3.3:70b")
    assert entry["context_length"] == 32768
    outcomes = [(e["num_ctx"], e["outcome"]) for e in simulator_for(base_url).scheduler.load_log]
    assert outcomes == [(131072, "oom"), (32768, "loaded")]
    explicit = sim(speed=500, gpu="h100", env=env, host_memory="64GiB")
    body = {"model": "llama3.3:70b", "prompt": "x", "stream": False, "options": {"num_ctx": 131072, "num_predict": 1}}
    failed = httpx.post(f"{explicit}/api/generate", json=body, timeout=60)
    assert failed.status_code == 500 and "out of memory" in failed.json()["error"]


def test_preflight_evicts_only_when_another_model_is_loaded(sim) -> None:
    """Scheduler.load: predicted (file + f16 KV + batch surcharge) > 80 % of free → evict; first model never checked."""
    base_url = sim(speed=500, gpu="rtx4090")
    _load(base_url, "qwen2.5-coder:32b", {"num_ctx": 2048})
    _load(base_url, MODEL)  # 4.9 GB + 4 GiB KV at 32768 does not fit next to it → evicts it
    names = [m["name"] for m in httpx.get(f"{base_url}/api/ps").json()["models"]]
    assert names == [MODEL]
    _load(base_url, "qwen2.5:0.5b", {"num_ctx": 2048})  # small: fits alongside
    assert len(httpx.get(f"{base_url}/api/ps").json()["models"]) == 2


def test_spilling_an_eighth_of_the_layers_makes_decode_several_times_slower() -> None:
    catalog = load_catalog()
    model, gpu = catalog.models[MODEL], catalog.gpus["rtx4090"]
    assert roofline.decode_step_s(model, gpu, 28 / 32, 1, 100, 2) > 3 * roofline.decode_step_s(model, gpu, 1.0, 1, 100, 2)


def test_aggregate_decode_throughput_grows_sublinearly_with_slots() -> None:
    catalog = load_catalog()
    model, gpu = catalog.models[MODEL], catalog.gpus["rtx4090"]
    rates = [b / roofline.decode_step_s(model, gpu, 1.0, b, b * 1000, 2) for b in (1, 2, 4, 8)]
    assert rates == sorted(rates)
    assert rates[3] < 8 * rates[0]
    assert 80 < rates[0] < 200  # ≈140 tok/s for an 8B Q4_K_M on a 1 TB/s GPU (perf model doc)


def test_seventy_b_spills_on_a_24_gib_gpu_but_fits_an_h100() -> None:
    catalog = load_catalog()
    model = catalog.models["llama3.3:70b"]

    def report(gpu: str):
        free = catalog.gpus[gpu].memory_bytes
        return memory.llama_server_buffers(LoadRequest(model=model, num_ctx=4096, num_parallel=1, num_batch=512, gpu_free_bytes=free))

    assert report("rtx4090").size_vram_bytes < report("rtx4090").size_bytes
    assert report("h100").size_vram_bytes == report("h100").size_bytes


def test_jitter_mean_does_not_depend_on_seed() -> None:
    means = []
    for seed in (1, 2, 3):
        jitter = roofline.Jitter(seed)
        means.append(sum(jitter.factor() for _ in range(20000)) / 20000)
    assert all(abs(mean - 1.0) < 0.002 for mean in means)
    assert roofline.Jitter(7).factor() == roofline.Jitter(7).factor()
