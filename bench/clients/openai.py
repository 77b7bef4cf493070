"""Ollama's OpenAI-compatible API: /v1/chat/completions, /v1/completions (SSE), /v1/embeddings."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import orjson

from bench.clients._exchange import (
    IdleWatchdog,
    StreamFailure,
    error_text,
    error_text_from_body,
    exchange,
    int_or_none,
    read_error_body,
    read_whole_body,
    truncate,
)
from bench.clients.stamps import TextStamps
from bench.clients.base import RequestSpec, chat_messages
from bench.clients.sse import SSEDataDecoder
from bench.clients.transport import arrival_s
from bench.endpoints import OPENAI_PATHS
from bench.records.record import RequestRecord

PATHS = OPENAI_PATHS

# Sampling options the OpenAI surface has as top-level fields (openai/openai.go); any other
# extra option goes into `options`, where Ollama's OpenAI surface ignores it.
_TOP_LEVEL_OPTIONS = ("top_p", "stop", "frequency_penalty", "presence_penalty")


def build_body(spec: RequestSpec) -> tuple[str, dict[str, Any]]:
    """The (path, JSON body) for this spec on the OpenAI surface.

    keep_alive and num_ctx are sent only when the spec has them, where guides put them
    (`keep_alive` top-level, `options: {num_ctx}`). Ollama's OpenAI surface ignores both
    (ollama-protocol.md); bench sends them so a run shows whether they took effect.
    """
    if spec.endpoint not in PATHS:
        raise ValueError(f"openai surface has no {spec.endpoint!r} endpoint")
    body: dict[str, Any] = {"model": spec.model}
    ignored_options: dict[str, Any] = {}
    if spec.endpoint == "embed":
        body["input"] = spec.prompt
    else:
        if spec.endpoint == "chat":
            body["messages"] = chat_messages(spec)
        else:
            body["prompt"] = spec.prompt
        body["stream"] = spec.stream
        if spec.stream:
            body["stream_options"] = {"include_usage": True}
        if spec.max_tokens is not None:
            body["max_tokens"] = spec.max_tokens
        if spec.temperature is not None:
            body["temperature"] = spec.temperature
        if spec.seed is not None:
            body["seed"] = spec.seed
        if spec.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(spec.format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "bench", "schema": spec.format},
            }
        for name, value in spec.extra_options.items():
            if name in _TOP_LEVEL_OPTIONS:
                body[name] = value
            else:
                ignored_options[name] = value
    if spec.num_ctx is not None:
        ignored_options["num_ctx"] = spec.num_ctx
    if ignored_options:
        body["options"] = ignored_options
    if spec.keep_alive is not None:
        body["keep_alive"] = spec.keep_alive
    return PATHS[spec.endpoint], body


async def send(http: httpx.AsyncClient, spec: RequestSpec, t0: float) -> RequestRecord:
    """Send one OpenAI-style request and return its record; never raises for server/network
    failures."""
    path, body = build_body(spec)
    if spec.endpoint == "embed":
        reader = _read_embed
    elif spec.stream:
        reader = functools.partial(_read_sse, chat=spec.endpoint == "chat")
    else:
        reader = _read_whole_chat if spec.endpoint == "chat" else _read_whole_completions
    return await exchange(http, spec, t0, path, body, reader)


def _parse_json(data: str | bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise StreamFailure("bad_stream", f"data is not JSON: {data[:200]!r}") from None
    if type(parsed) is not dict:
        raise StreamFailure("bad_stream", f"data is not a JSON object: {data[:200]!r}")
    if "error" in parsed:
        raise StreamFailure("server_error", error_text(parsed["error"]))
    return parsed


def _take_usage(record: RequestRecord, usage: Any) -> None:
    if type(usage) is dict:
        record.prompt_tokens = int_or_none(usage.get("prompt_tokens"))
        record.output_tokens = int_or_none(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details")
        if type(details) is dict:
            record.cached_prompt_tokens = int_or_none(details.get("cached_tokens"))


async def _not_an_event_stream(response: httpx.Response) -> StreamFailure:
    content_type = response.headers.get("content-type", "")
    body = await read_error_body(response)
    message = error_text_from_body(body)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if type(parsed) is dict and "error" in parsed:
        return StreamFailure("server_error", message)
    return StreamFailure(
        "bad_stream", truncate(f"expected text/event-stream, got {content_type!r}: {message}")
    )


def _take_event(record: RequestRecord, stamps: TextStamps, now: float, data: str, chat: bool) -> None:
    """One event's JSON into the record: its text stamped, its finish reason and usage taken."""
    parsed = _parse_json(data)
    choices = parsed.get("choices")
    if type(choices) is not list or not choices:
        # The include_usage chunk: `"choices": []` and the server's token counts.
        _take_usage(record, parsed.get("usage"))
        return
    choice = choices[0]
    if type(choice) is not dict:
        raise StreamFailure("bad_stream", f"choice is not an object: {data[:200]!r}")
    if chat:
        delta = choice.get("delta")
        if type(delta) is dict:
            content = delta.get("content")
            thinking = delta.get("reasoning")
        else:
            content = thinking = None
    else:
        content = choice.get("text")
        thinking = None
    stamps.add(now, content, thinking)
    finish_reason = choice.get("finish_reason")
    if type(finish_reason) is str:
        record.done_reason = finish_reason
    usage = parsed.get("usage")
    if type(usage) is dict and usage.get("completion_tokens"):
        # Ollama's /v1/completions puts zeroed usage on every chunk; only a real
        # count (or the choices-less usage chunk above) is taken.
        _take_usage(record, usage)


async def _read_sse(
    response: httpx.Response,
    record: RequestRecord,
    watchdog: IdleWatchdog,
    t0: float,
    store_text: bool,
    chat: bool,
) -> None:
    """SSE (bench.clients.sse, bounded per line and event): every event with generated text is
    stamped with its read's arrival."""
    if "text/event-stream" not in response.headers.get("content-type", ""):
        raise await _not_an_event_stream(response)
    stamps = TextStamps(record, t0, store_text, watchdog.max_chunks)
    decoder = SSEDataDecoder()
    finished = False
    async for raw in response.aiter_bytes():
        now = arrival_s(response)  # the read's arrival, not this task's turn (transport.py)
        watchdog.last_byte = now
        if finished:
            continue  # draining the end of the HTTP body
        for data in decoder.feed(raw):
            if data == "[DONE]":
                record.end_s = now - t0
                stamps.finish()
                finished = True
                watchdog.finish()
                break
            if data:  # an event with no data (e.g. only `event:` or `id:`) carries nothing
                _take_event(record, stamps, now, data, chat)
    if not finished:
        stamps.finish()
        # The HTTP body ended cleanly (a dropped connection raises instead): a protocol break.
        raise stamps.ended_without("data: [DONE]")




async def _read_whole(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float
) -> dict[str, Any]:
    body = await read_whole_body(response, record, watchdog, t0)
    return _parse_json(body)


def _first_choice(parsed: dict[str, Any]) -> dict[str, Any]:
    choices = parsed.get("choices")
    if type(choices) is not list or not choices or type(choices[0]) is not dict:
        raise StreamFailure("bad_stream", "response has no choices")
    return choices[0]


def _take_whole(
    record: RequestRecord, choice: dict[str, Any], content: Any, thinking: Any, store: bool
) -> None:
    """stream: false — all text arrives at once, so first token = end (one chunk time).

    A whole answer always names why it finished; `finish_reason: null` is a completion that
    never did (Ollama answers 200 so when its token repeat limit ends the generation:
    openai.ToChatCompletion of a response without done)."""
    finish_reason = choice.get("finish_reason")
    if type(finish_reason) is not str:
        raise StreamFailure("bad_stream", "response has no finish_reason: the completion did not finish "
                                          "(Ollama's token repeat limit answers so: docs/ollama-behaviour.md)")
    has_content = type(content) is str and content != ""
    if has_content or (type(thinking) is str and thinking != ""):
        record.first_token_s = record.end_s
        record.chunk_times_s.append(record.end_s)  # type: ignore[arg-type]
    if has_content:
        record.first_content_s = record.end_s
        record.output_chars = len(content)
        if store:
            record.output_text = content
    record.done_reason = finish_reason


async def _read_whole_chat(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    choice = _first_choice(parsed)
    message = choice.get("message")
    if type(message) is not dict:
        raise StreamFailure("bad_stream", "response choice has no message")
    _take_whole(record, choice, message.get("content"), message.get("reasoning"), store)
    _take_usage(record, parsed.get("usage"))


async def _read_whole_completions(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    choice = _first_choice(parsed)
    _take_whole(record, choice, choice.get("text"), None, store)
    _take_usage(record, parsed.get("usage"))


async def _read_embed(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    if type(parsed.get("data")) is not list:
        raise StreamFailure("bad_stream", "embeddings response has no data list")
    _take_usage(record, parsed.get("usage"))
