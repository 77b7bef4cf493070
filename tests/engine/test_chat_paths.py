"""Ollama v0.33's two chat paths on the real engine: Go-rendered prompts to llama-server /completion
(the default) and, with OLLAMA_GO_TEMPLATE=false, the messages to llama-server's own Jinja
/v1/chat/completions. The same requests give the same complete streams on both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from bench.sim.testing import running_sim, simulator_for

pytestmark = pytest.mark.engine

MAX_TOKENS = 12
CONVERSATION = [
    {"role": "system", "content": "You answer briefly."},
    {"role": "user", "content": "What is a benchmark?"},
    {"role": "assistant", "content": "A measurement."},
    {"role": "user", "content": "Of what?"},
]
# llama-server logs one "chat format: …" line per /v1/chat/completions request (its chat-message
# parser) and none for /completion, /tokenize or /apply-template: the endpoint each chat went to.
CHAT_FORMAT_LINE = "chat format:"


@pytest.fixture(params=["true", "false"], ids=["go-template", "jinja"])
def engine_sim(request: pytest.FixtureRequest, llama_server_binary: Path, tiny_gguf: Path) -> Iterator[tuple[str, str]]:
    env = {"OLLAMA_GO_TEMPLATE": request.param, "OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "1024",
           "LLAMA_ARG_THREADS": "1", "BENCH_SIM_LLAMA_SERVER": str(llama_server_binary)}
    with running_sim(env=env, engine="llama-server", model_files=(f"tiny={tiny_gguf}",)) as base_url:
        yield base_url, request.param


def _native_chat(base_url: str, messages: list[dict[str, str]]) -> list[dict]:
    response = httpx.post(f"{base_url}/api/chat", json={"model": "tiny", "messages": messages,
                                                        "options": {"num_predict": MAX_TOKENS, "seed": 3}}, timeout=120)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_both_chat_paths_stream_max_tokens_with_the_engines_timings(engine_sim: tuple[str, str]) -> None:
    base_url, go_template = engine_sim
    finals = []
    for messages in (CONVERSATION[1:2], CONVERSATION):
        lines = _native_chat(base_url, messages)
        chunks, final = lines[:-1], lines[-1]
        assert len(chunks) == MAX_TOKENS and all(c["message"]["content"] and not c["done"] for c in chunks)
        assert final["done"] and final["done_reason"] == "length" and final["eval_count"] == MAX_TOKENS
        assert final["prompt_eval_count"] > 0 and final["prompt_eval_duration"] > 0 and final["eval_duration"] > 0
        assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
        finals.append(final)
    # The whole conversation is a longer prompt than its one question, whichever side renders it.
    assert finals[1]["prompt_eval_count"] > finals[0]["prompt_eval_count"]

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    stream = client.chat.completions.create(model="tiny", messages=CONVERSATION, max_tokens=MAX_TOKENS, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(contents) == MAX_TOKENS
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == MAX_TOKENS
    # Both paths render the same ChatML conversation: the engine counts the same prompt tokens.
    assert chunks[-1].usage.prompt_tokens == finals[1]["prompt_eval_count"]

    runner = simulator_for(base_url).scheduler.loaded["tiny:latest"].runner
    log_text = runner.server.log_path.read_text(errors="replace")
    if go_template == "true":
        assert "--no-jinja" in runner.server.args  # Ollama renders: llama-server's Jinja is off
        assert log_text.count(CHAT_FORMAT_LINE) == 0  # every chat went to /completion
    else:
        assert "--no-jinja" not in runner.server.args
        assert log_text.count(CHAT_FORMAT_LINE) == 3  # every chat went to /v1/chat/completions


def test_native_path_truncates_history_with_the_engines_own_template(llama_server_binary: Path, tiny_gguf: Path) -> None:
    env = {"OLLAMA_GO_TEMPLATE": "false", "OLLAMA_CONTEXT_LENGTH": "64", "LLAMA_ARG_THREADS": "1",
           "BENCH_SIM_LLAMA_SERVER": str(llama_server_binary)}
    long_turn = "a long earlier turn about many things " * 12
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": long_turn},
                {"role": "assistant", "content": long_turn}, {"role": "user", "content": "Short question?"}]
    with running_sim(env=env, engine="llama-server", model_files=(f"tiny={tiny_gguf}",)) as base_url:
        final = _native_chat(base_url, messages)[-1]
        server_url = simulator_for(base_url).scheduler.loaded["tiny:latest"].runner.server.base_url
        # Only the system message and the last question fit into 64 tokens: the prompt the engine
        # evaluated is exactly what its own template makes of them.
        kept = [messages[0], messages[3]]
        rendered = httpx.post(f"{server_url}/apply-template", json={"messages": kept}, timeout=30).json()["prompt"]
        expected = len(httpx.post(f"{server_url}/tokenize", json={"content": rendered, "add_special": True},
                                  timeout=30).json()["tokens"])
    assert final["done"] and final["eval_count"] == MAX_TOKENS
    assert final["prompt_eval_count"] == expected < 64
