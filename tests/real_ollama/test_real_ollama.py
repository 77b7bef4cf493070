"""The `ollama` tier: the real `ollama serve` that `bench ollama build` made, with made models.

Small on purpose (a few minutes on 2 cores): tiny presets, a handful of requests, one llama.cpp
thread. Skipped with one line where Go or the build is missing; under CI=true that fails instead.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama
import pytest

from bench.ollama.pins import OLLAMA_VERSION
from bench.ollama.testing import RunningOllama
from tests.engine.runs import run_scenario

pytestmark = pytest.mark.ollama

MAX_TOKENS = 12
# Tokens per request of the timing test: 30 keeps a made model that loops on one token under
# Ollama's token repeat limit (the 31st repeat ends the stream without done: ollama-behaviour.md).
TIMED_TOKENS = 30


def test_official_ollama_client_streams_from_the_real_server(real_ollama: RunningOllama) -> None:
    client = ollama.Client(host=real_ollama.base_url)
    parts = list(client.generate(model="tiny-llama3.2-1b", prompt="Once upon a time", stream=True,
                                 options={"num_predict": MAX_TOKENS, "seed": 1}))
    text_parts = [part for part in parts if not part.done]
    assert len(text_parts) == MAX_TOKENS and all(part.response for part in text_parts)
    final = parts[-1]
    assert final.done and final.done_reason == "length" and final.eval_count == MAX_TOKENS
    assert final.prompt_eval_count and final.prompt_eval_count > 0 and final.eval_duration > 0
    chat = client.chat(model="tiny-llama3.2-1b", messages=[{"role": "user", "content": "hi"}],
                       options={"num_predict": MAX_TOKENS})
    assert chat.message.role == "assistant" and chat.eval_count == MAX_TOKENS
    embedded = client.embed(model="tiny-embed", input=["one", "two words"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 192
    assert client.ps().models and httpx.get(f"{real_ollama.base_url}/api/version").json() == {
        "version": OLLAMA_VERSION}


def test_bench_records_agree_with_ollamas_own_timings(ollama_install: object, tmp_path: Path) -> None:
    """Per request: client TTFT ≥ Ollama's prompt_eval_duration; client decode time (last chunk −
    first chunk) within 25% + 0.25 s of eval_duration × (n−1)/n (tests/engine's tolerance: the
    client's interval spans n−1 tokens, llama-server's predicted_ms n)."""
    scenario = {
        "name": "ollama-timing", "target": "ollama",
        "sim": {"env": {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "2048", "LLAMA_ARG_THREADS": "1"}},
        "workload": {"endpoint": ["native/generate", "native/chat"], "model": "tiny-llama3.2-1b",
                     "prompt": {"tokens": 128}, "max_tokens": TIMED_TOKENS, "temperature": 0.7},
        "load": {"arrival": "closed", "concurrency": [1, 2], "requests": 4, "warmup_requests": 1},
    }
    records = run_scenario(scenario, tmp_path / "run")
    measured = [record for record in records if record["phase"] == "measure"]
    assert len(measured) == 16 and all(record["error_class"] is None for record in measured)
    for record in measured:
        assert record["output_tokens"] == TIMED_TOKENS and len(record["chunk_times_s"]) == TIMED_TOKENS
        ttft_s = record["first_token_s"] - record["sent_s"]
        assert ttft_s >= record["prompt_eval_duration_ns"] / 1e9
        server_decode_s = record["eval_duration_ns"] / 1e9 * (TIMED_TOKENS - 1) / TIMED_TOKENS
        client_decode_s = record["chunk_times_s"][-1] - record["chunk_times_s"][0]
        assert abs(client_decode_s - server_decode_s) <= 0.25 * record["eval_duration_ns"] / 1e9 + 0.25, record
