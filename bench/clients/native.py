"""Ollama's native API: /api/chat, /api/generate (NDJSON streams) and /api/embed."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import orjson

from bench.clients._exchange import (
    IdleWatchdog,
    StreamFailure,
    error_text,
    exchange,
    int_or_none,
    read_whole_body,
    MAX_LINE_BYTES,
)
from bench.clients.stamps import TextStamps
from bench.clients.base import RequestSpec, chat_messages
from bench.clients.transport import arrival_s
from bench.endpoints import NATIVE_PATHS
from bench.records.record import RequestRecord

PATHS = NATIVE_PATHS


def build_body(spec: RequestSpec) -> tuple[str, dict[str, Any]]:
    """The (path, JSON body) Ollama's native API expects for this spec (api/types.go)."""
    if spec.endpoint not in PATHS:
        raise ValueError(f"native surface has no {spec.endpoint!r} endpoint")
    options: dict[str, Any] = {}
    if spec.max_tokens is not None and spec.endpoint != "embed":
        options["num_predict"] = spec.max_tokens
    if spec.num_ctx is not None:
        options["num_ctx"] = spec.num_ctx
    if spec.temperature is not None:
        options["temperature"] = spec.temperature
    if spec.seed is not None:
        options["seed"] = spec.seed
    options.update(spec.extra_options)

    body: dict[str, Any] = {"model": spec.model}
    if spec.endpoint == "chat":
        body["messages"] = chat_messages(spec)
    elif spec.endpoint == "generate":
        body["prompt"] = spec.prompt
        if spec.system:
            body["system"] = spec.system
    else:
        body["input"] = spec.prompt
    if spec.endpoint != "embed":
        # Ollama streams by default; send the field anyway so the body says what was measured.
        body["stream"] = spec.stream
        if spec.format is not None:
            body["format"] = spec.format
    if options:
        body["options"] = options
    if spec.keep_alive is not None:
        body["keep_alive"] = spec.keep_alive
    return PATHS[spec.endpoint], body


async def send(http: httpx.AsyncClient, spec: RequestSpec, t0: float) -> RequestRecord:
    """Send one native request and return its record; never raises for server/network failures."""
    path, body = build_body(spec)
    if spec.endpoint == "embed":
        reader = _read_embed
    elif spec.stream:
        reader = functools.partial(_read_stream, chat=spec.endpoint == "chat")
    else:
        reader = _read_whole_chat if spec.endpoint == "chat" else _read_whole_generate
    return await exchange(http, spec, t0, path, body, reader)


def _parse_line(line: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise StreamFailure("bad_stream", f"line is not JSON: {line[:200]!r}") from None
    if type(parsed) is not dict:
        raise StreamFailure("bad_stream", f"line is not a JSON object: {line[:200]!r}")
    if "error" in parsed:
        # An error after streaming began arrives inside the 200 stream (server/routes.go).
        raise StreamFailure("server_error", error_text(parsed["error"]))
    return parsed


def _take_final_metrics(record: RequestRecord, final: dict[str, Any]) -> None:
    done_reason = final.get("done_reason")
    record.done_reason = done_reason if type(done_reason) is str else None
    record.prompt_tokens = int_or_none(final.get("prompt_eval_count"))
    record.output_tokens = int_or_none(final.get("eval_count"))
    record.load_duration_ns = int_or_none(final.get("load_duration"))
    record.prompt_eval_duration_ns = int_or_none(final.get("prompt_eval_duration"))
    record.eval_duration_ns = int_or_none(final.get("eval_duration"))
    record.total_duration_ns = int_or_none(final.get("total_duration"))


async def _read_stream(
    response: httpx.Response,
    record: RequestRecord,
    watchdog: IdleWatchdog,
    t0: float,
    store_text: bool,
    chat: bool,
) -> None:
    """NDJSON: one object a line; every line with text is stamped with its read's arrival time."""
    stamps = TextStamps(record, t0, store_text, watchdog.max_chunks)
    pending = b""
    unended: list[bytes] = []  # reads with no newline yet: joined once the line ends, not per read
    unended_bytes = 0
    finished = False
    async for raw in response.aiter_bytes():
        now = arrival_s(response)  # the read's arrival, not this task's turn (transport.py)
        watchdog.last_byte = now
        if finished:
            continue  # draining the end of the HTTP body
        if b"\n" not in raw:
            unended.append(raw)
            unended_bytes += len(raw)
            if len(pending) + unended_bytes > MAX_LINE_BYTES:
                raise StreamFailure("bad_stream", f"an NDJSON line longer than {MAX_LINE_BYTES} bytes "
                                                  "(no newline): not an Ollama chunk")
            continue
        if unended:
            raw = b"".join([pending, *unended, raw])
            unended, unended_bytes = [], 0
        elif pending:
            raw = pending + raw
        lines = raw.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if not line or line.isspace():
                continue
            parsed = _parse_line(line)
            if chat:
                message = parsed.get("message")
                if type(message) is dict:
                    content = message.get("content")
                    thinking = message.get("thinking")
                else:
                    content = thinking = None
            else:
                content = parsed.get("response")
                thinking = parsed.get("thinking")
            stamps.add(now, content, thinking)
            if parsed.get("done") is True:
                # Everything is recorded now: a server that then holds the body open is cut
                # off by the watchdog's drain budget without losing the measurement.
                record.end_s = now - t0
                _take_final_metrics(record, parsed)
                stamps.finish()
                finished = True
                watchdog.finish()
                break
    if finished:
        return
    stamps.finish()
    if unended:
        pending = b"".join([pending, *unended])
    if pending.strip():
        # The last line lacked its newline; judge it like any other line.
        parsed = _parse_line(pending)
        if parsed.get("done") is True:
            record.end_s = arrival_s(response) - t0  # when those last bytes arrived
            _take_final_metrics(record, parsed)
            return
    # The HTTP body ended cleanly (a dropped connection raises instead): a protocol break.
    raise stamps.ended_without("a done line")




# A whole (stream: false) answer with `done: false` is Ollama's when its token repeat limit ended
# the generation (server/routes.go writeChatResponse: the last response, with the text so far).
_NOT_DONE_HINT = ": the completion did not finish (Ollama's token repeat limit answers so: docs/ollama-behaviour.md)"


async def _read_whole(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float
) -> dict[str, Any]:
    body = await read_whole_body(response, record, watchdog, t0)
    return _parse_line(body.strip())


def _take_whole_text(
    record: RequestRecord, content: Any, thinking: Any, store_text: bool
) -> None:
    """stream: false — all text arrives at once, so first token = end (one chunk time)."""
    has_content = type(content) is str and content != ""
    if has_content or (type(thinking) is str and thinking != ""):
        record.first_token_s = record.end_s
        record.chunk_times_s.append(record.end_s)  # type: ignore[arg-type]
    if has_content:
        record.first_content_s = record.end_s
        record.output_chars = len(content)
        if store_text:
            record.output_text = content


async def _read_whole_chat(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    message = parsed.get("message")
    if type(message) is not dict:
        raise StreamFailure("bad_stream", "response has no message")
    if parsed.get("done") is not True:
        raise StreamFailure("bad_stream", "response has no done: true" + _NOT_DONE_HINT)
    _take_whole_text(record, message.get("content"), message.get("thinking"), store)
    _take_final_metrics(record, parsed)


async def _read_whole_generate(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    if parsed.get("done") is not True:
        raise StreamFailure("bad_stream", "response has no done: true" + _NOT_DONE_HINT)
    _take_whole_text(record, parsed.get("response"), parsed.get("thinking"), store)
    _take_final_metrics(record, parsed)


async def _read_embed(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float, store: bool
) -> None:
    parsed = await _read_whole(response, record, watchdog, t0)
    if type(parsed.get("embeddings")) is not list:
        raise StreamFailure("bad_stream", "embed response has no embeddings list")
    record.prompt_tokens = int_or_none(parsed.get("prompt_eval_count"))
    record.load_duration_ns = int_or_none(parsed.get("load_duration"))
    record.total_duration_ns = int_or_none(parsed.get("total_duration"))
