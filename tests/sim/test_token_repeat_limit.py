"""Ollama's token repeat limit, as the simulator reproduces it: a model that repeats one token
(whitespace trimmed) a 31st time in a row gets its answer ended with HTTP 200 and no final line,
no error (llm/llama_server.go Completion returns ctx.Err(), which is nil). Recorded against the
real Ollama 0.33.0 (docs/ollama-behaviour.md): "ource", then " sigma" 31 times, then the end.

The simulated engine never repeats a word 31 times, so these tests give its runner a stuck model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from bench.clients import send
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client
from bench.sim.backend import CompletionRequest, CompletionTimings
from bench.sim.simulated import SimulatedRunner
from bench.sim.testing import running_sim

MODEL = "llama3.2:1b"


def _stuck(repeats: int):  # noqa: ANN202 - a replacement for SimulatedRunner.completion
    async def completion(self: SimulatedRunner, request: CompletionRequest) -> AsyncIterator[str | CompletionTimings]:
        yield "ource"
        for _ in range(repeats):
            yield " sigma"
        yield CompletionTimings(cache_n=0, prompt_n=5, prompt_ms=1.0, predicted_n=repeats + 1, predicted_ms=1.0,
                                stop_type="limit")

    return completion


@pytest.fixture
def stuck_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(SimulatedRunner, "completion", _stuck(40))
    with running_sim(speed=100.0) as base_url:
        yield base_url


def _native_lines(base_url: str, stream: bool) -> list[dict]:
    response = httpx.post(f"{base_url}/api/chat", timeout=30.0, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    assert response.status_code == 200
    return [orjson.loads(line) for line in response.content.splitlines() if line.strip()]


def test_native_stream_ends_after_the_thirtieth_repeat_without_done(stuck_sim: str) -> None:
    lines = _native_lines(stuck_sim, stream=True)
    assert [line["message"]["content"] for line in lines] == ["ource"] + [" sigma"] * 31
    assert not any(line["done"] for line in lines) and not any("error" in line for line in lines)


def test_native_whole_answer_is_the_text_so_far_not_done(stuck_sim: str) -> None:
    (answer,) = _native_lines(stuck_sim, stream=False)
    assert answer["done"] is False and "done_reason" not in answer and "eval_count" not in answer
    assert answer["message"]["content"] == "ource" + " sigma" * 31


def test_openai_stream_has_no_finish_chunk_and_no_done(stuck_sim: str) -> None:
    response = httpx.post(f"{stuck_sim}/v1/chat/completions", timeout=30.0, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = [line[len(b"data: "):] for line in response.content.splitlines() if line.startswith(b"data: ")]
    assert b"[DONE]" not in events
    chunks = [orjson.loads(event) for event in events]
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks) == "ource" + " sigma" * 31
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks)


def test_openai_whole_answer_has_finish_reason_null(stuck_sim: str) -> None:
    answer = httpx.post(f"{stuck_sim}/v1/chat/completions", timeout=30.0, json={
        "model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).json()
    assert answer["choices"][0]["finish_reason"] is None
    assert answer["usage"]["completion_tokens"] == 0


@pytest.mark.parametrize("surface", ["native", "openai"])
def test_bench_records_the_cut_stream_as_bad_stream_naming_the_repeat(stuck_sim: str, surface: str) -> None:
    spec = RequestSpec(cell_id="c", request_index=0, surface=surface, endpoint="chat",  # type: ignore[arg-type]
                       model=MODEL, prompt="hi", timeout_s=30.0)

    async def go():  # noqa: ANN202 - a RequestRecord
        async with make_http_client(stuck_sim, None, 1, 30.0, "fast") as http:
            return await send(http, spec, time.monotonic())

    record = asyncio.run(go())
    assert record.status == 200 and record.error_class == "bad_stream"
    assert "the last 31 were all 'sigma'" in (record.error_message or "")


def test_thirty_repeats_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SimulatedRunner, "completion", _stuck(30))
    with running_sim(speed=100.0) as base_url:
        lines = _native_lines(base_url, stream=True)
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] == "length"
    assert len(lines) == 1 + 30 + 1
