"""Protocol details of Ollama v0.33 a load test can see; each test names the source it follows."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from bench.sim import context
from bench.sim.testing import simulator_for

MODEL = "qwen2.5:0.5b"


def test_version_reports_v033(sim) -> None:
    """routes.go 1879-1880: {"version": version.Version}."""
    assert httpx.get(f"{sim(speed=50)}/api/version").json() == {"version": "0.33.0"}


def test_keep_alive_string_without_unit_is_400(sim) -> None:
    """api.Duration.UnmarshalJSON: a JSON string must be a Go duration ("300" has no unit)."""
    base_url = sim(speed=50)
    response = httpx.post(f"{base_url}/api/generate", json={"model": MODEL, "prompt": "x", "keep_alive": "300"})
    assert response.status_code == 400 and response.json() == {"error": 'time: missing unit in duration "300"'}
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=base_url).generate(model=MODEL, prompt="x", keep_alive="300")
    assert raised.value.status_code == 400
    ok = httpx.post(f"{base_url}/api/generate", json={"model": MODEL, "prompt": "x", "keep_alive": 300, "stream": False,
                                                       "options": {"num_predict": 1}})
    assert ok.status_code == 200


def test_invalid_option_type_is_500(sim) -> None:
    """Options.FromMap error → scheduleRunner → handleScheduleError default branch: 500."""
    base_url = sim(speed=50)
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=base_url).generate(model=MODEL, prompt="x", options={"num_ctx": "big"})
    assert raised.value.status_code == 500 and raised.value.error == 'option "num_ctx" must be of type integer'
    response = httpx.post(f"{base_url}/api/chat", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}],
                                                        "options": {"temperature": "hot"}})
    assert response.status_code == 500 and response.json() == {"error": 'option "temperature" must be of type float32'}


def test_num_predict_minus_one_is_bounded_to_ten_contexts() -> None:
    """boundedNumPredict (llama_server.go 106-118)."""
    assert context.bounded_num_predict(-1, 4096) == 40960
    assert context.bounded_num_predict(10**9, 4096) == 40960
    assert context.bounded_num_predict(128, 4096) == 128
    assert context.bounded_num_predict(-1, 4096, bounded=False) == -1  # v0.12.6


def test_over_long_prompt_is_truncated_with_shift_and_refused_without(sim) -> None:
    """completionPromptForRequest: shift on keeps num_keep + tail (~num_ctx/2); shift off → 400."""
    base_url = sim(speed=50)
    long_prompt = "word " * 2000  # 2500 tokens
    shifted = httpx.post(f"{base_url}/api/generate", json={
        "model": MODEL, "prompt": long_prompt, "stream": False, "options": {"num_ctx": 1024, "num_predict": 2}}).json()
    assert shifted["prompt_eval_count"] == 1024 - (1024 - 4) // 2
    refused = httpx.post(f"{base_url}/api/generate", json={
        "model": MODEL, "prompt": long_prompt, "shift": False, "options": {"num_ctx": 1024, "num_predict": 2}})
    assert refused.status_code == 400 and refused.json()["error"].startswith("the prompt is longer than the context length")


def test_openai_text_completion_stream_carries_zero_usage_then_usage_chunk(sim) -> None:
    """CompleteWriter.writeResponse: include_usage puts an all-zero usage on every chunk, then a usage chunk."""
    client = openai.OpenAI(base_url=f"{sim(speed=50)}/v1", api_key="x")
    chunks = list(client.completions.create(model=MODEL, prompt="hi", max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}))
    assert all(c.usage.total_tokens == 0 for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_runtime_out_of_memory_expires_every_loaded_model(sim) -> None:
    """expireRunnersForRuntimeOOM: a request failing with OOM sets every runner's keep_alive to 0."""
    from bench.sim.config import FaultConfig

    base_url = sim(speed=50, faults=FaultConfig(oom_rate=1.0))
    response = httpx.post(f"{base_url}/api/generate", json={"model": MODEL, "prompt": "x", "stream": False})
    assert response.status_code == 500 and "out of memory" in response.json()["error"]
    scheduler = simulator_for(base_url).scheduler
    deadline_ok = False
    import time

    end = time.monotonic() + 20
    while time.monotonic() < end:
        if not scheduler.loaded:
            deadline_ok = True
            break
        time.sleep(0.01)
    assert deadline_ok


def test_legacy_version_keeps_v0126_behaviour(sim) -> None:
    """--ollama-version 0.12.6: fixed 4096 context, old OpenAI stream shape, version string."""
    base_url = sim(speed=50, gpu="h100", ollama_version="0.12.6")
    assert httpx.get(f"{base_url}/api/version").json() == {"version": "0.12.6"}
    httpx.post(f"{base_url}/api/generate", json={"model": "llama3.1:8b", "prompt": "x", "stream": False,
                                                  "options": {"num_predict": 1}}).raise_for_status()
    assert [m["context_length"] for m in httpx.get(f"{base_url}/api/ps").json()["models"]] == [4096]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="x")
    chunks = [c for c in client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                         max_tokens=3, stream=True)]
    assert all(c.choices[0].delta.role == "assistant" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length" and chunks[-1].choices[0].delta.content
