"""Wire details a client relies on: shapes, content types, error bodies, structured output, faults."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.sim import tokens
from bench.sim.config import FaultConfig

MODEL = "qwen2.5:0.5b"


@pytest.fixture
def base_url(sim) -> str:
    return sim(speed=200)


def test_root_answers_get_and_head(base_url: str) -> None:
    assert httpx.get(base_url).text == "Ollama is running"
    assert httpx.head(base_url).status_code == 200
    assert set(httpx.get(f"{base_url}/api/version").json()) == {"version"}


def test_native_stream_is_ndjson_with_metrics_on_the_final_line(base_url: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 4}}
    with httpx.stream("POST", f"{base_url}/api/chat", json=body) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    final = lines[-1]
    assert final["done"] and final["done_reason"] == "length" and final["message"]["content"] == ""
    for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"):
        assert isinstance(final[key], int) and final[key] > 0
    assert all(line["message"]["role"] == "assistant" and not line["done"] for line in lines[:-1])


def test_openai_sse_ends_with_usage_then_done(base_url: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 3
    finish = json.loads(events[-3])["choices"][0]
    assert finish == {"index": 0, "delta": {}, "finish_reason": "length"}  # openai.go FinishChunk


def test_error_bodies_match_ollama(base_url: str) -> None:
    # routes.go GenerateHandler 285-296 / ChatHandler 2481-2492 / EmbedHandler via handleScheduleError 3115-3116.
    missing = httpx.post(f"{base_url}/api/generate", json={"model": "ghost", "prompt": "x"})
    assert missing.status_code == 404 and missing.json() == {"error": "model 'ghost' not found"}
    missing_embed = httpx.post(f"{base_url}/api/embed", json={"model": "ghost", "input": "x"})
    assert missing_embed.status_code == 404 and missing_embed.json() == {"error": 'model "ghost" not found, try pulling it first'}
    no_model = httpx.post(f"{base_url}/api/chat", json={"messages": []})
    assert no_model.status_code == 400 and no_model.json() == {"error": "model is required"}
    bad_json = httpx.post(f"{base_url}/api/chat", content=b"{nope")
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    show_missing = httpx.post(f"{base_url}/api/show", json={"model": "ghost"})
    assert show_missing.status_code == 404 and show_missing.json() == {"error": "model 'ghost:latest' not found"}
    openai_missing = httpx.post(f"{base_url}/v1/chat/completions", json={"model": "ghost", "messages": [{"role": "user", "content": "x"}]})
    assert openai_missing.status_code == 404
    assert openai_missing.json() == {"error": {"message": "model 'ghost' not found",
                                              "type": "not_found_error", "param": None, "code": None}}
    embed_chat = httpx.post(f"{base_url}/api/chat", json={"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]})
    assert embed_chat.status_code == 400


def test_openai_503_uses_api_error_type(sim) -> None:
    import asyncio

    base_url = sim(speed=2, env={"OLLAMA_MAX_QUEUE": "0"})

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            body = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
            return await asyncio.gather(*(client.post(f"{base_url}/v1/chat/completions", json=body) for _ in range(4)))

    rejected = [r for r in asyncio.run(burst()) if r.status_code == 503]
    # sched.go getRunner: with MAX_QUEUE 0 only the request handed to the parked processPending gets in.
    assert len(rejected) == 3
    assert rejected[0].json()["error"]["type"] == "api_error"
    assert rejected[0].json()["error"]["message"] == "server busy, please try again.  maximum pending requests exceeded"


def test_native_format_json_and_schema_give_valid_json(base_url: str) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "temps": {"type": "array", "items": {"type": "number"}},
              "kind": {"enum": ["hot", "cold"]}}, "required": ["city", "temps", "kind"]}
    for format_spec in ("json", schema):
        body = {"model": MODEL, "prompt": "weather", "format": format_spec, "stream": False}
        value = json.loads(httpx.post(f"{base_url}/api/generate", json=body).json()["response"])
        assert isinstance(value, dict)
    assert set(value) == {"city", "temps", "kind"} and value["kind"] in ("hot", "cold")
    assert all(isinstance(t, float) for t in value["temps"])


def test_output_is_seeded_and_temperature_changes_words_not_length(base_url: str) -> None:
    def answer(options: dict) -> dict:
        body = {"model": MODEL, "prompt": "tell me a story", "stream": False, "options": options}
        return httpx.post(f"{base_url}/api/generate", json=body).json()

    first, again = answer({"seed": 1, "temperature": 0.8}), answer({"seed": 1, "temperature": 0.8})
    other = answer({"seed": 1, "temperature": 0.2})
    assert first["response"] == again["response"] != other["response"]
    assert first["eval_count"] == other["eval_count"] and first["done_reason"] == "stop"


@given(st.text(max_size=400), st.text(min_size=1, max_size=50))
def test_prompt_token_count_is_monotone_in_text(text: str, more: str) -> None:
    assert tokens.count(text + more) >= tokens.count(text) >= 0
    assert tokens.count("x" * 400) == 100 == len(tokens.tokenize("x" * 400))
    assert tokens.count(text) == len(tokens.tokenize(text))


def test_fault_injection_cuts_streams_and_fails_requests(sim) -> None:
    base_url = sim(speed=200, faults=FaultConfig(error_rate=0.5, cut_rate=1.0))
    statuses, cut = [], 0
    for index in range(10):
        body = {"model": MODEL, "prompt": f"p{index}", "options": {"num_predict": 8}}
        try:
            with httpx.stream("POST", f"{base_url}/api/generate", json=body) as response:
                statuses.append(response.status_code)
                if response.status_code == 200:
                    lines = list(response.iter_lines())
                    cut += not any('"done":true' in line for line in lines)
        except httpx.RemoteProtocolError:
            cut += 1
    assert 500 in statuses and 200 in statuses
    assert cut == statuses.count(200)


def test_malformed_fault_inserts_one_unparseable_line(sim) -> None:
    base_url = sim(speed=200, faults=FaultConfig(malformed_rate=1.0))
    body = {"model": MODEL, "prompt": "x", "options": {"num_predict": 6}}
    with httpx.stream("POST", f"{base_url}/api/generate", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    unparseable = 0
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            unparseable += 1
    assert unparseable == 1 and json.loads(lines[-1])["done"] is True


def test_faults_are_off_by_default(base_url: str) -> None:
    for index in range(5):
        body = {"model": MODEL, "prompt": f"p{index}", "options": {"num_predict": 3}}
        with httpx.stream("POST", f"{base_url}/api/generate", json=body) as response:
            assert json.loads(list(response.iter_lines())[-1])["done"] is True


def test_emit_log_records_every_chunk_with_request_id(sim, tmp_path) -> None:
    log = tmp_path / "emit.jsonl"
    base_url = sim(speed=200, emit_log_path=str(log))
    body = {"model": MODEL, "prompt": "hi", "options": {"num_predict": 3}}
    httpx.post(f"{base_url}/api/generate", json=body, headers={"X-Request-Id": "r-7"})
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["request_id"], e["chunk_index"]) for e in entries] == [("r-7", 0), ("r-7", 1), ("r-7", 2), ("r-7", 3)]
    assert [e["t_monotonic_s"] for e in entries] == sorted(e["t_monotonic_s"] for e in entries)
