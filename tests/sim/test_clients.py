"""The official `ollama` and `openai` Python clients work against bench sim unchanged."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

MODEL = "qwen2.5:0.5b"


@pytest.fixture
def base_url(sim) -> str:
    return sim(speed=100)


def test_ollama_client_chat_streams_tokens_then_metrics(base_url: str) -> None:
    client = ollama.Client(host=base_url)
    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True, options={"num_predict": 7}))
    assert [p.done for p in parts] == [False] * 7 + [True]
    final = parts[-1]
    assert final.done_reason == "length" and final.eval_count == 7
    assert final.total_duration >= final.load_duration + final.prompt_eval_duration + final.eval_duration
    assert final.prompt_eval_count > 0


def test_ollama_client_chat_and_generate_without_streaming(base_url: str) -> None:
    client = ollama.Client(host=base_url)
    chat = client.chat(model=MODEL, messages=[{"role": "user", "content": "hello"}], options={"num_predict": 5})
    assert chat.message.content and chat.done and chat.eval_count == 5
    generated = client.generate(model=MODEL, prompt="Why is the sky blue?", options={"num_predict": 4})
    assert generated.response and generated.done_reason == "length" and generated.eval_count == 4


def test_ollama_client_generate_streams(base_url: str) -> None:
    client = ollama.Client(host=base_url)
    parts = list(client.generate(model=MODEL, prompt="count", stream=True, options={"num_predict": 3}))
    assert "".join(p.response for p in parts) and parts[-1].done


def test_ollama_client_embed_list_show_ps(base_url: str) -> None:
    client = ollama.Client(host=base_url)
    embedded = client.embed(model="nomic-embed-text", input=["a", "b c"])
    assert len(embedded.embeddings) == 2 and len(embedded.embeddings[0]) == 768
    names = {m.model for m in client.list().models}
    assert {"llama3.1:8b", "qwen2.5:0.5b", "nomic-embed-text:latest"} <= names
    shown = client.show("llama3.1:8b")
    assert shown.modelinfo["llama.attention.head_count_kv"] == 8
    assert shown.details.quantization_level == "Q4_K_M"
    running = client.ps().models
    assert [m.model for m in running] == ["nomic-embed-text:latest"] and running[0].size_vram == running[0].size


def test_ollama_client_reports_missing_model(base_url: str) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=base_url).chat(model="nope:1b", messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 404
    assert raised.value.error == "model 'nope:1b' not found"  # routes.go ChatHandler 2481-2492


def test_openai_client_chat_streaming_with_usage(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="ollama")
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=6, stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content_chunks = [c for c in chunks if c.choices]
    # middleware/openai.go ChatWriter.writeResponse + FinishChunk: role only first, separate finish chunk.
    finish = content_chunks[-1].choices[0]
    assert finish.finish_reason == "length" and finish.delta.content is None and finish.delta.role is None
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in content_chunks[1:])
    assert len({c.created for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 6


def test_openai_client_chat_without_streaming(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="ollama")
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert answer.object == "chat.completion" and answer.choices[0].message.content
    assert answer.usage.completion_tokens == 3 and answer.choices[0].finish_reason == "length"


def test_openai_client_embeddings_and_models(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="ollama")
    embedded = client.embeddings.create(model="nomic-embed-text", input=["one", "two"])
    assert [d.index for d in embedded.data] == [0, 1] and len(embedded.data[0].embedding) == 768
    assert embedded.usage.prompt_tokens > 0
    ids = {m.id for m in client.models.list()}
    assert "llama3.3:70b" in ids
    assert client.models.retrieve("llama3.3:70b").id == "llama3.3:70b"


def test_openai_json_schema_response_is_conforming_json(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="ollama")
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "ok": {"type": "boolean"},
        },
        "required": ["name", "age", "tags", "ok"],
    }
    answer = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "person"}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    value = json.loads(answer.choices[0].message.content)
    assert set(value) == {"name", "age", "tags", "ok"}
    assert isinstance(value["age"], int) and 0 <= value["age"] <= 120
    assert isinstance(value["ok"], bool) and set(value["tags"]) <= {"a", "b"}
