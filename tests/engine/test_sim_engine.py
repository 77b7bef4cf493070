"""`bench sim --engine llama-server`: the sim's Ollama front with a real llama-server per loaded model."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from bench.engine.memory_log import MIB
from bench.sim.testing import running_sim, simulator_for
from tests.engine.runs import run_scenario

pytestmark = pytest.mark.engine

MAX_TOKENS = 12


@pytest.fixture
def engine_sim(llama_server_binary: Path, tiny_gguf: Path):
    env = {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "1024", "LLAMA_ARG_THREADS": "1",
           "BENCH_SIM_LLAMA_SERVER": str(llama_server_binary)}
    with running_sim(env=env, engine="llama-server", model_files=(f"tiny={tiny_gguf}",)) as base_url:
        yield base_url


def test_official_ollama_client_streams_max_tokens_from_the_real_engine(engine_sim: str) -> None:
    client = ollama.Client(host=engine_sim)
    parts = list(client.generate(model="tiny", prompt="Once upon a time", stream=True,
                                 options={"num_predict": MAX_TOKENS, "seed": 1}))
    text_parts = [p for p in parts if not p.done]
    assert len(text_parts) == MAX_TOKENS and all(p.response for p in text_parts)
    final = parts[-1]
    assert final.done and final.done_reason == "length" and final.eval_count == MAX_TOKENS
    assert final.prompt_eval_count and final.prompt_eval_count > 0 and final.eval_duration > 0
    chat = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}],
                       options={"num_predict": MAX_TOKENS})
    assert chat.message.role == "assistant" and chat.message.content and chat.eval_count == MAX_TOKENS


def test_official_openai_client_streams_one_chunk_per_token(engine_sim: str) -> None:
    client = openai.OpenAI(base_url=f"{engine_sim}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say something"}], max_tokens=MAX_TOKENS,
        stream=True, stream_options={"include_usage": True},
    )
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == MAX_TOKENS
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == MAX_TOKENS
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["length"]


def test_api_ps_is_built_from_the_buffers_llama_server_logged(engine_sim: str) -> None:
    httpx.post(f"{engine_sim}/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                   "options": {"num_predict": 2}}, timeout=120)
    (shown,) = httpx.get(f"{engine_sim}/api/ps").json()["models"]
    runner = simulator_for(engine_sim).scheduler.loaded["tiny:latest"].runner
    logged = {(b.backend, b.kind): b.size_bytes for b in runner.memory.buffers}
    assert shown["size"] == sum(logged.values()) and shown["size_vram"] == 0  # CPU: nothing on a GPU
    assert shown["context_length"] == 1024  # per slot, as Ollama reports it
    # -c = num_ctx × NUM_PARALLEL: the KV buffer holds 2 × 1024 tokens of the GQA cache (f16).
    assert abs(logged[("CPU", "KV")] - 2 * 1024 * 4 * 2 * 2 * 32 * 2) <= 0.01 * MIB


def test_keep_alive_zero_stops_the_engine_process(engine_sim: str) -> None:
    httpx.post(f"{engine_sim}/api/generate", json={"model": "tiny", "prompt": "x", "stream": False,
                                                   "options": {"num_predict": 2}}, timeout=120)
    pid = simulator_for(engine_sim).scheduler.loaded["tiny:latest"].runner.pid
    httpx.post(f"{engine_sim}/api/generate", json={"model": "tiny", "keep_alive": 0}, timeout=120)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and httpx.get(f"{engine_sim}/api/ps").json()["models"]:
        time.sleep(0.05)
    assert httpx.get(f"{engine_sim}/api/ps").json()["models"] == []
    # /api/ps drops the model when the unload starts; the process is stopped (and reaped) by it
    # a moment later, longer on a busy box.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_unknown_model_names_the_ways_to_serve_one(llama_server_binary: Path) -> None:
    env = {"BENCH_SIM_LLAMA_SERVER": str(llama_server_binary)}
    with running_sim(env=env, engine="llama-server") as base_url:
        response = httpx.post(f"{base_url}/api/generate", json={"model": "llama3.2:1b", "prompt": "x"}, timeout=60)
    assert response.status_code == 500
    assert "--model-file" in response.json()["error"]


def test_client_times_agree_with_the_engines_own_timings(llama_server_binary: Path, tiny_gguf: Path,
                                                         tmp_path: Path) -> None:
    """TTFT is never below llama-server's prompt time; decode time agrees with predicted_ms.

    Tolerance for decode: |client (last chunk − first chunk) − eval_duration × (n−1)/n| ≤ 25% of
    eval_duration + 0.25 s. The client's interval spans n−1 tokens; the engine's predicted_ms spans
    n (from the end of prompt processing). The absolute term absorbs llama-server flushing several
    chunks at once when its HTTP thread is starved on a busy 2-core machine.
    """
    scenario = {
        "name": "engine-timing", "target": "sim",
        "sim": {"args": ["--engine", "llama-server", "--llama-server", str(llama_server_binary),
                         "--model-file", f"tiny={tiny_gguf}"],
                # One llama.cpp thread: two spin-wait for each other on a busy 2-core box (docs/engine.md).
                "env": {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "2048", "LLAMA_ARG_THREADS": "1"}},
        "workload": {"endpoint": ["native/generate", "native/chat"], "model": "tiny",
                     "prompt": {"tokens": 128}, "max_tokens": 32, "temperature": 0.7},
        "load": {"arrival": "closed", "concurrency": [1, 2], "requests": 6, "warmup_requests": 1},
    }
    run_dir = tmp_path / "run"
    records = run_scenario(scenario, run_dir)
    measured = [r for r in records if r["phase"] == "measure"]
    assert len(measured) == 24 and all(r["error_class"] is None for r in measured)
    for record in measured:
        assert record["output_tokens"] == 32 and len(record["chunk_times_s"]) == 32
        ttft_s = record["first_token_s"] - record["sent_s"]
        assert ttft_s >= record["prompt_eval_duration_ns"] / 1e9
        engine_decode_s = record["eval_duration_ns"] / 1e9 * (32 - 1) / 32
        client_decode_s = record["chunk_times_s"][-1] - record["chunk_times_s"][0]
        assert abs(client_decode_s - engine_decode_s) <= 0.25 * record["eval_duration_ns"] / 1e9 + 0.25, record
