"""Recorded-shape Ollama transcripts and a scripted MockTransport for the client tests.

The byte shapes follow /work/shared/ollama-protocol.md (server/routes.go, middleware/openai.go):
NDJSON lines for the native API, `data: {json}\\n\\n` events ending in `data: [DONE]` for OpenAI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench.clients.base import RequestSpec

BASE_URL = "http://ollama.test"

# A part of a scripted body: bytes are sent, a float is a pause (seconds), an exception is raised
# (the connection failing), STALL never sends anything again.
STALL = object()
Part = bytes | float | BaseException | object


def line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def event(obj: dict[str, Any] | str) -> bytes:
    data = obj if isinstance(obj, str) else orjson.dumps(obj).decode()
    return f"data: {data}\n\n".encode()


FINAL_METRICS = {
    "total_duration": 512_000_000,
    "load_duration": 2_100_000,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 130_000_000,
    "eval_count": 3,
    "eval_duration": 60_000_000,
}


def native_chat_line(content: str, thinking: str | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    return line(
        {"model": "llama3.2", "created_at": "2026-01-01T00:00:00.1Z", "message": message,
         "done": False}
    )


def native_chat_done(done_reason: str = "stop", **metrics: int) -> bytes:
    return line(
        {"model": "llama3.2", "created_at": "2026-01-01T00:00:00.9Z",
         "message": {"role": "assistant", "content": ""}, "done": True,
         "done_reason": done_reason, **{**FINAL_METRICS, **metrics}}
    )


def native_generate_line(text: str) -> bytes:
    return line({"model": "llama3.2", "created_at": "2026-01-01T00:00:00.1Z", "response": text,
                 "done": False})


def native_generate_done() -> bytes:
    return line({"model": "llama3.2", "created_at": "2026-01-01T00:00:00.9Z", "response": "",
                 "done": True, "done_reason": "length", "context": [1, 2, 3], **FINAL_METRICS})


def openai_chunk(content: str | None = None, reasoning: str | None = None,
                 finish_reason: str | None = None) -> bytes:
    delta: dict[str, Any] = {"role": "assistant", "content": content or ""}
    if reasoning is not None:
        delta["reasoning"] = reasoning
    return event({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1700000000,
                  "model": "llama3.2", "system_fingerprint": "fp_ollama",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})


def openai_usage_chunk(prompt_tokens: int = 26, completion_tokens: int = 3) -> bytes:
    return event({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1700000000,
                  "model": "llama3.2", "system_fingerprint": "fp_ollama", "choices": [],
                  "usage": {"prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}})


OPENAI_DONE = b"data: [DONE]\n\n"
QUEUE_FULL_BODY = b'{"error":"server busy, please try again.  maximum pending requests exceeded"}'
NDJSON = {"content-type": "application/x-ndjson"}
SSE = {"content-type": "text/event-stream"}
JSON = {"content-type": "application/json; charset=utf-8"}


class ScriptedStream(httpx.AsyncByteStream):
    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            if part is STALL:
                await asyncio.Event().wait()
            elif isinstance(part, float):
                await asyncio.sleep(part)
            elif isinstance(part, BaseException):
                raise part
            else:
                assert isinstance(part, bytes)
                yield part

    async def aclose(self) -> None:
        return None


@dataclass
class Script:
    """One scripted response; `requests` collects what the client sent."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: dict(NDJSON))
    parts: list[Part] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            await request.aread()
            self.requests.append(request)
            return httpx.Response(self.status, headers=self.headers,
                                  stream=ScriptedStream(self.parts))

        return httpx.MockTransport(handler)

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=BASE_URL, transport=self.transport(), **kwargs)

    def sent_body(self) -> dict[str, Any]:
        return orjson.loads(self.requests[-1].content)


def spec(surface: str = "native", endpoint: str = "chat", **overrides: Any) -> RequestSpec:
    values: dict[str, Any] = {
        "cell_id": "c0", "request_index": 7, "surface": surface, "endpoint": endpoint,
        "model": "llama3.2", "prompt": "Say hello", "timeout_s": 30.0,
    }
    values.update(overrides)
    return RequestSpec(**values)


def run_send(send: Callable[..., Any], script: Script, request_spec: RequestSpec,
             t0: float | None = None) -> Any:
    async def go() -> Any:
        async with script.client() as http:
            import time

            return await send(http, request_spec, time.monotonic() if t0 is None else t0)

    return asyncio.run(go())
