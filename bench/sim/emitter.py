"""A lean Ollama look-alike for `bench perf`: pre-rendered token streams, no scheduler, no model.

It speaks the same wire formats as Ollama for `POST /api/chat`, `POST /api/generate` (NDJSON) and
`POST /v1/chat/completions` (SSE, with the include_usage chunk and `data: [DONE]`), plus `GET /`,
and does as little as possible per request, so that the client is what a benchmark measures.

    python -m bench.sim.emitter --port 8080 --tokens 32 --itl-ms 0 --ttft-ms 0 [--emit-log FILE]

Per request: wait `ttft_ms`, write N token chunks `itl_ms` apart (0: back to back, one write
each), then the final line / usage chunk + [DONE]. N is the request's `num_predict` /
`max_tokens` when it sends one (done_reason `length`), else `--tokens` (done_reason `stop`).
A request may override the delays in `options` (both surfaces carry it; Ollama ignores unknown
options): `emit_ttft_ms`, `emit_itl_ms`, `emit_ttft_jitter_ms` (adds uniform 0..J ms to the TTFT), and `emit_hold: true` (after the first token, wait until
`POST /emitter/release`; `GET /emitter/stats` counts streams open and held) — how `bench perf`
holds thousands of streams open at once and knows when they all are.

Emit log (`--emit-log FILE`, JSONL, one line per finished request, written when it ends):
`{"id", "path", "received_s", "token_emit_s": [...], "end_s"}`, every time a `time.monotonic()`
taken right after the chunk was handed to the socket. CLOCK_MONOTONIC is system-wide on Linux,
so a client on the same host can compare its own stamps with these. `id` is the request's
`X-Request-Id` header when sent; else the prompt's leading `[nonce]` (bench's prompts start with
one, bench/workload/prompts.py); else the first 16 hex digits of the prompt's SHA-1.

Imports nothing from bench outside bench/sim (the simulator shares no code with the client).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import random
import resource
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import uvicorn
from starlette.routing import Route, Router

from bench.sim.server import bind_socket

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CREATED_AT = "2026-01-01T00:00:00.000000000Z"
NDJSON_HEADERS = [(b"content-type", b"application/x-ndjson")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
# Fixed server-side durations for the final line: the emitter does no work worth reporting.
_EVAL_NS_PER_TOKEN = 1_000_000


@dataclass
class EmitterConfig:
    tokens: int = 32
    itl_ms: float = 0.0
    ttft_ms: float = 0.0
    emit_log: str | None = None


@dataclass
class EmitterState:
    """Counters for /emitter/stats, the hold gate, and the emit log."""

    config: EmitterConfig
    open_streams: int = 0
    held_streams: int = 0
    requests_total: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    log_file: IO[bytes] | None = None
    # Pre-rendered token chunks per (surface kind, model): built once, written many times.
    rendered: dict[tuple[str, str], bytes] = field(default_factory=dict)


def _token_text(index: int) -> str:
    return f" tok{index % 100}"


def _chunk(kind: str, model: str, index: int) -> bytes:
    text = _token_text(index)
    if kind == "chat":
        line = {"model": model, "created_at": CREATED_AT,
                "message": {"role": "assistant", "content": text}, "done": False}
        return orjson.dumps(line) + b"\n"
    if kind == "generate":
        line = {"model": model, "created_at": CREATED_AT, "response": text, "done": False}
        return orjson.dumps(line) + b"\n"
    event = {"id": "chatcmpl-emit", "object": "chat.completion.chunk", "created": 1767225600,
             "model": model, "system_fingerprint": "fp_ollama",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                          "finish_reason": None}]}
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _final(kind: str, model: str, tokens: int, prompt_tokens: int, capped: bool) -> bytes:
    reason = "length" if capped else "stop"
    if kind in ("chat", "generate"):
        eval_ns = tokens * _EVAL_NS_PER_TOKEN
        line: dict[str, Any] = {"model": model, "created_at": CREATED_AT, "done": True,
                                "done_reason": reason, "total_duration": eval_ns + 1_000_000,
                                "load_duration": 0, "prompt_eval_count": prompt_tokens,
                                "prompt_eval_duration": 1_000_000, "eval_count": tokens,
                                "eval_duration": eval_ns}
        if kind == "chat":
            line["message"] = {"role": "assistant", "content": ""}
        else:
            line["response"] = ""
        return orjson.dumps(line) + b"\n"
    base = {"id": "chatcmpl-emit", "object": "chat.completion.chunk", "created": 1767225600,
            "model": model, "system_fingerprint": "fp_ollama"}
    last = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": reason}]}
    usage = {**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                              "completion_tokens": tokens,
                                              "total_tokens": prompt_tokens + tokens}}
    return (b"data: " + orjson.dumps(last) + b"\n\ndata: " + orjson.dumps(usage)
            + b"\n\ndata: [DONE]\n\n")


def _prompt_of(kind: str, body: dict[str, Any]) -> str:
    if kind == "generate":
        prompt = body.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return message["content"]
    return ""


def request_id(header_value: str | None, prompt: str) -> str:
    """X-Request-Id if sent, else the prompt's leading `[nonce]`, else a hash of the prompt."""
    if header_value:
        return header_value
    if prompt.startswith("["):
        end = prompt.find("]", 1, 80)
        if end > 1:
            return prompt[1:end]
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _send_plain(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def _number(options: dict[str, Any], name: str, default: float) -> float:
    value = options.get(name)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


class StreamEndpoint:
    """One streaming route (chat / generate / openai): a raw ASGI app.

    Raw ASGI instead of StreamingResponse: Starlette's streaming response runs a task group per
    request to watch for disconnects, which costs the emitter more CPU than the stream itself.
    """

    def __init__(self, state: EmitterState, kind: str) -> None:
        self.state = state
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        raw = await _read_body(receive)
        received_s = time.monotonic()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            error = {"error": "invalid request body"} if self.kind != "openai" else {
                "error": {"message": "invalid request body", "type": "invalid_request_error",
                          "param": None, "code": None}}
            await _send_plain(send, 400, orjson.dumps(error), b"application/json")
            return
        model: str = body["model"]
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        cap = options.get("num_predict") if self.kind != "openai" else body.get("max_tokens")
        capped = isinstance(cap, int) and not isinstance(cap, bool) and cap > 0
        tokens = int(cap) if capped else state.config.tokens
        ttft_s = _number(options, "emit_ttft_ms", state.config.ttft_ms) / 1000.0
        # Spreads request ends over time, so a closed loop's streams do not run in lock-step.
        ttft_s += random.uniform(0.0, _number(options, "emit_ttft_jitter_ms", 0.0)) / 1000.0
        itl_s = _number(options, "emit_itl_ms", state.config.itl_ms) / 1000.0
        hold = options.get("emit_hold") is True
        prompt = _prompt_of(self.kind, body)

        chunks = self._rendered(model)
        state.requests_total += 1
        state.open_streams += 1
        emit_s: list[float] | None = [] if state.log_file is not None else None
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": SSE_HEADERS if self.kind == "openai" else NDJSON_HEADERS})
            if ttft_s > 0:
                await asyncio.sleep(ttft_s)
            for index in range(tokens):
                if index and itl_s > 0:
                    await asyncio.sleep(itl_s)
                await send({"type": "http.response.body",
                            "body": chunks[index % len(chunks)], "more_body": True})
                if emit_s is not None:
                    emit_s.append(time.monotonic())
                if hold and index == 0:
                    await self._hold()
            final = _final(self.kind, model, tokens, max(1, len(prompt) // 4), capped)
            await send({"type": "http.response.body", "body": final, "more_body": False})
        finally:
            state.open_streams -= 1
        if emit_s is not None and state.log_file is not None:
            state.log_file.write(orjson.dumps({
                "id": request_id(_header(scope, b"x-request-id"), prompt),
                "path": scope["path"], "received_s": received_s, "token_emit_s": emit_s,
                "end_s": time.monotonic()}) + b"\n")

    async def _hold(self) -> None:
        self.state.held_streams += 1
        try:
            await self.state.release.wait()
        finally:
            self.state.held_streams -= 1

    def _rendered(self, model: str) -> list[bytes]:
        key = (self.kind, model)
        chunks = self.state.rendered.get(key)
        if chunks is None:
            # 100 distinct chunks cover any length (index % 100), rendered once per model.
            chunks = [_chunk(self.kind, model, index) for index in range(100)]
            self.state.rendered[key] = chunks  # type: ignore[assignment]
        return chunks  # type: ignore[return-value]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class _Raw:
    """Marks a plain coroutine function as a raw ASGI app (Starlette wraps functions as
    request handlers)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def create_emitter_app(config: EmitterConfig) -> tuple[Router, EmitterState]:
    """The ASGI app and its state (tests read the counters directly)."""
    state = EmitterState(config=config)
    if config.emit_log:
        state.log_file = open(config.emit_log, "ab")  # noqa: SIM115 - closed at shutdown

    async def root(scope: Scope, receive: Receive, send: Send) -> None:
        await _send_plain(send, 200, b"Ollama is running", b"text/plain; charset=utf-8")

    async def stats(scope: Scope, receive: Receive, send: Send) -> None:
        payload = {"open_streams": state.open_streams, "held_streams": state.held_streams,
                   "requests_total": state.requests_total}
        await _send_plain(send, 200, orjson.dumps(payload), b"application/json")

    async def release(scope: Scope, receive: Receive, send: Send) -> None:
        await _read_body(receive)
        # Wake every held stream, and arm a fresh gate for the next batch.
        state.release.set()
        state.release = asyncio.Event()
        if state.log_file is not None:
            state.log_file.flush()
        await _send_plain(send, 200, b"{}", b"application/json")

    async def flush(scope: Scope, receive: Receive, send: Send) -> None:
        await _read_body(receive)
        if state.log_file is not None:
            state.log_file.flush()
        await _send_plain(send, 200, b"{}", b"application/json")

    routes = [
        Route("/", _Raw(root), methods=["GET", "HEAD"]),
        Route("/api/chat", StreamEndpoint(state, "chat"), methods=["POST"]),
        Route("/api/generate", StreamEndpoint(state, "generate"), methods=["POST"]),
        Route("/v1/chat/completions", StreamEndpoint(state, "openai"), methods=["POST"]),
        Route("/emitter/stats", _Raw(stats), methods=["GET"]),
        Route("/emitter/release", _Raw(release), methods=["POST"]),
        Route("/emitter/flush", _Raw(flush), methods=["POST"]),
    ]
    return Router(routes=routes), state


def _raise_nofile_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def fast_loop_names() -> tuple[str, str]:
    """uvicorn's (loop, http) names: uvloop/httptools when installed, else asyncio/h11."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sim.emitter", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--tokens", type=int, default=32, help="tokens per request without num_predict/max_tokens")
    parser.add_argument("--itl-ms", type=float, default=0.0, help="delay between tokens (0: back to back)")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="delay before the first token")
    parser.add_argument("--emit-log", default=None, help="JSONL file of per-chunk emit times")
    parser.add_argument("--backlog", type=int, default=4096)
    args = parser.parse_args(argv)
    _raise_nofile_limit()
    config = EmitterConfig(tokens=args.tokens, itl_ms=args.itl_ms, ttft_ms=args.ttft_ms,
                           emit_log=args.emit_log)
    app, state = create_emitter_app(config)
    loop, http = fast_loop_names()
    server = _Server(uvicorn.Config(app, host=args.host, port=args.port, loop=loop, http=http,
                                    log_level="warning", access_log=False, backlog=args.backlog,
                                    lifespan="off", timeout_keep_alive=60))
    try:
        # Nagle off on every accepted socket (bind_socket): else a token written while the
        # previous one is unacknowledged waits for the client's delayed ACK (~40 ms), after the
        # emitter has logged it as emitted.
        listener = bind_socket(args.host, args.port)
        listener.listen(args.backlog)
        server.run(sockets=[listener])
    finally:
        if state.log_file is not None:
            state.log_file.close()


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        # uvicorn re-raises a captured SIGTERM after shutdown, which would kill the process
        # before the emit log is closed; a requested stop is a clean exit.
        self._captured_signals.clear()


if __name__ == "__main__":
    main()
