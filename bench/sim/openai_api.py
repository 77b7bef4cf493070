"""Ollama's OpenAI-compatible surface (/v1/*), as openai/openai.go translates it.

keep_alive and num_ctx in the body are ignored here, like Ollama: keep_alive stays nil (a loaded
model keeps its last explicit value) and num_ctx is the server's default.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bench.sim import front, tokens
from bench.sim.catalog import ModelSpec
from bench.sim.front import FrontError, Prompt
from bench.sim.generation import FaultPlan, RuntimeOutOfMemory, Timings, run_completion
from bench.sim.native import MALFORMED_LINE, Lease, LeasedStream, acquire, embed_vectors, sim_of
from bench.sim.state import Simulator

CREATED_EPOCH_S = 1735689600
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}
NativeError = FrontError


def openai_error(status: int, message: str) -> JSONResponse:
    error_type = _ERROR_TYPES.get(status, "api_error")
    return JSONResponse({"error": {"message": message, "type": error_type, "param": None, "code": None}}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as error:
        raise FrontError(400, f"invalid request body: {error}") from None
    if not isinstance(body, dict):
        raise FrontError(400, "missing request body")
    return body


def _model(sim: Simulator, body: dict[str, Any], kind: str) -> ModelSpec:
    name = body.get("model")
    if not name or not isinstance(name, str):
        raise FrontError(400, "model is required")
    spec = sim.config.catalog.resolve(name)
    if spec is None:
        # The middleware forwards to the native handler, whose not-found text it wraps.
        if kind == "embed":
            raise FrontError(404, f'model "{name}" not found, try pulling it first')
        raise FrontError(404, f"model '{name}' not found")
    return spec


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """FromChatRequest / FromCompleteRequest: temperature and top_p default to 1.0."""
    options: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0}
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    for key in ("temperature", "seed", "top_p"):
        if body.get(key) is not None:
            options[key] = body[key]
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = stop
    return options


def _format(body: dict[str, Any]) -> Any:
    response_format = body.get("response_format") or {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or "json"
    return None


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def _prompt(body: dict[str, Any], kind: str, chat_template: str = "") -> Prompt:
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise FrontError(400, "[] is too short - 'messages'")
        return Prompt(tokens.render_chat(messages, chat_template), orjson.dumps(messages).decode())
    prompt = body.get("prompt")
    prompt = "".join(prompt) if isinstance(prompt, list) else str(prompt or "")
    return Prompt(tokens.render_generate(prompt), f"\x1f{prompt}")


async def completions(request: Request, kind: str) -> Response:
    """/v1/chat/completions (kind "chat") and /v1/completions (kind "text").

    keep_alive, options and num_ctx in the body are ignored (openai.go has no such fields): the
    request leaves keep_alive nil, so a loaded model keeps its last explicit keep_alive.
    """
    sim = sim_of(request)
    arrival_s = time.monotonic()
    try:
        body = await _body(request)
        spec = _model(sim, body, kind)
        if spec.embedding_only:
            raise FrontError(400, f'"{spec.name}" does not support {"chat" if kind == "chat" else "generate"}')
        prompt = _prompt(body, kind, spec.chat_template)
        options = _options(body)
        try:
            typed = front.decode_options(options)
        except front.OptionTypeError as error:
            raise FrontError(500, str(error)) from None
        schedule = front.schedule_request(sim, spec, {}, {}, None)
        faults = sim.faults_for(front.fault_token_budget(sim, prompt, typed))
        if faults.error:
            raise FrontError(500, "simulated fault: internal server error")
        loaded = await acquire(sim, schedule)
        # Ollama stamps load_duration's end right after scheduleRunner (server/routes.go checkpointLoaded),
        # before templating and tokenizing: those wait on the runner and must not read as a load.
        timings = Timings.after_acquire(arrival_s, loaded)
        try:
            if kind == "chat" and front.native_chat(sim):
                # The middleware turns this into an /api/chat request (truncate unset: on).
                job = await front.native_chat_request(sim, loaded, body["messages"], prompt, typed, _format(body), True)
            else:
                if kind == "chat":
                    messages = await front.trim_chat(loaded, body["messages"], loaded.options.num_ctx)
                    prompt = Prompt(tokens.render_chat(messages, spec.chat_template), prompt.sample_key)
                job = await front.completion_request(sim, loaded, prompt, typed, _format(body))
        except FrontError:
            sim.scheduler.release(loaded)
            raise
    except FrontError as error:
        return openai_error(error.status, error.message)
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    completion_id = f"{prefix}-{sim.request_id(None)}"
    request_id = request.headers.get("x-request-id") or completion_id
    lease = Lease(sim, loaded)
    if body.get("stream") is True:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _sse(sim, lease, job, timings, faults, kind, completion_id, request_id, include_usage)
        return LeasedStream(events, lease, "text/event-stream")
    pieces: list[str] = []
    try:
        async for token in run_completion(sim.scheduler, loaded, job, timings, faults):
            pieces.append(token)
    except Exception as error:  # a simulated cut or runtime OOM on a non-streamed answer becomes a 500
        message = str(error) if isinstance(error, RuntimeOutOfMemory) else f"simulated fault: {type(error).__name__}"
        return openai_error(500, message)
    finally:
        lease.release()
    text = "".join(pieces)
    # The token repeat limit: ToChatCompletion of a response without done: finish_reason null.
    finish = None if timings.repeat_limited else timings.done_reason
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        obj = "chat.completion"
    else:
        choice = {"text": text, "index": 0, "finish_reason": finish}
        obj = "text_completion"
    return JSONResponse(
        {
            "id": completion_id,
            "object": obj,
            "created": int(time.time()),
            "model": spec.name,
            "system_fingerprint": "fp_ollama",
            "choices": [choice],
            "usage": _usage(timings.prompt_eval_count, timings.eval_count),
        }
    )


def _envelope(kind: str, completion_id: str, model: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": choices,
    }


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class _ChunkShaper:
    """The SSE chunks of one stream, per version (v0.33 middleware/openai.go ChatWriter/CompleteWriter).

    v0.33 chat: role only on the first delta, `created` pinned to the first chunk, a separate
    finish chunk with an empty delta, then (include_usage) a usage chunk with `choices: []`.
    v0.33 text: every chunk carries an all-zero usage when include_usage is on.
    v0.12.6: role on every delta and finish_reason on the last content chunk.
    """

    def __init__(self, kind: str, completion_id: str, model: str, include_usage: bool, split_finish: bool) -> None:
        self.kind, self.completion_id, self.model = kind, completion_id, model
        self.include_usage, self.split_finish = include_usage, split_finish
        self.created = int(time.time())
        self.first = True

    def content(self, text: str, finish: str | None = None) -> dict[str, Any]:
        if self.kind == "chat":
            delta: dict[str, Any] = {"content": text}
            if self.first or not self.split_finish:
                delta = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"text": text, "index": 0, "finish_reason": finish}
        self.first = False
        created = self.created if self.split_finish else int(time.time())
        chunk = _envelope(self.kind, self.completion_id, self.model, created, [choice])
        if self.kind == "text" and self.include_usage and self.split_finish:
            chunk["usage"] = _usage(0, 0)
        return chunk

    def finish(self, reason: str) -> dict[str, Any]:
        if self.kind == "chat":
            choice: dict[str, Any] = {"index": 0, "delta": {}, "finish_reason": reason}
        else:
            choice = {"text": "", "index": 0, "finish_reason": reason}
        chunk = _envelope(self.kind, self.completion_id, self.model, self.created, [choice])
        if self.kind == "text" and self.include_usage:
            chunk["usage"] = _usage(0, 0)
        return chunk

    def usage(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        chunk = _envelope(self.kind, self.completion_id, self.model, self.created, [])
        chunk["usage"] = _usage(prompt_tokens, completion_tokens)
        return chunk


async def _sse(
    sim: Simulator, lease: Lease, job: Any, timings: Timings, faults: FaultPlan, kind: str,
    completion_id: str, request_id: str, include_usage: bool,
) -> AsyncIterator[bytes]:
    split = sim.config.rules.openai_split_finish_chunk
    shaper = _ChunkShaper(kind, completion_id, lease.loaded.model.name, include_usage, split)
    index = 0
    held: str | None = None  # v0.12.6: the last piece waits so the finish reason can ride on it
    try:
        try:
            async for token in run_completion(sim.scheduler, lease.loaded, job, timings, faults):
                if faults.malformed_at == index:
                    yield sim.emit(request_id, index, b"data: " + MALFORMED_LINE + b"\n")
                if split:
                    yield sim.emit(request_id, index, _data(shaper.content(token)))
                else:
                    if held is not None:
                        yield sim.emit(request_id, index, _data(shaper.content(held)))
                    held = token
                index += 1
        except RuntimeOutOfMemory:
            # An error after streaming began becomes an empty delta chunk; no finish, no [DONE].
            yield sim.emit(request_id, index, _data(shaper.content("")))
            return
        if timings.repeat_limited and held is not None:
            yield sim.emit(request_id, index, _data(shaper.content(held)))
        if faults.no_done or timings.repeat_limited:
            return  # the repeat limit: no finish chunk, no usage, no [DONE] (ChatWriter writes them on done)
        finish = timings.done_reason
        if split:
            if shaper.first:  # a wholly empty completion still opens with a role chunk
                yield sim.emit(request_id, index, _data(shaper.content("")))
            yield sim.emit(request_id, index, _data(shaper.finish(finish)))
        else:
            yield sim.emit(request_id, index, _data(shaper.content(held or "", finish)))
        if include_usage:
            yield sim.emit(request_id, index + 1, _data(shaper.usage(timings.prompt_eval_count, timings.eval_count)))
        yield sim.emit(request_id, index + 2, b"data: [DONE]\n\n")
    finally:
        lease.release()


async def chat_completions(request: Request) -> Response:
    return await completions(request, "chat")


async def text_completions(request: Request) -> Response:
    return await completions(request, "text")


def _float32_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


async def embeddings(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await _body(request)
        spec = _model(sim, body, "embed")
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            # Token-id inputs are turned back into text-like keys (one "token" ≈ 4 characters).
            texts = [item if isinstance(item, str) else "abcd" * len(item) if isinstance(item, list) else str(item) for item in raw_input]
            if all(isinstance(item, int) for item in raw_input):
                texts = ["abcd" * len(raw_input)]
        else:
            raise NativeError(400, "invalid input")
        if sim.faults_for(1).error:
            raise NativeError(500, "simulated fault: internal server error")
        vectors, _, prompt_count = await embed_vectors(sim, spec, texts, {}, None, True)
    except NativeError as error:
        return openai_error(error.status, error.message)
    as_base64 = body.get("encoding_format") == "base64"
    data = [
        {"object": "embedding", "embedding": _float32_base64(vector) if as_base64 else vector, "index": index}
        for index, vector in enumerate(vectors)
    ]
    return JSONResponse(
        {"object": "list", "data": data, "model": spec.name, "usage": {"prompt_tokens": prompt_count, "total_tokens": prompt_count}}
    )


def _model_entry(spec: ModelSpec) -> dict[str, Any]:
    return {"id": spec.name, "object": "model", "created": CREATED_EPOCH_S, "owned_by": "library"}


async def list_models(request: Request) -> Response:
    sim = sim_of(request)
    return JSONResponse({"object": "list", "data": [_model_entry(spec) for spec in sim.config.catalog.models.values()]})


async def retrieve_model(request: Request) -> Response:
    sim = sim_of(request)
    name = request.path_params["name"]
    spec = sim.config.catalog.resolve(name)
    if spec is None:
        return openai_error(404, f'model "{name}" not found')
    return JSONResponse(_model_entry(spec))
