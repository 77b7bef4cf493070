"""Ollama's OpenAI-compatible surface (/v1/*), as openai/openai.go translates it.

keep_alive and num_ctx in the body are ignored here (the server defaults apply), like Ollama.
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

from bench.sim import textgen
from bench.sim.catalog import ModelSpec
from bench.sim.generation import FaultPlan, Job, Timings, plan_job, run_job
from bench.sim.native import MALFORMED_LINE, LeasedStream, NativeError, acquire, embed_vectors, sim_of
from bench.sim.scheduler import Lease
from bench.sim.state import Simulator

CREATED_EPOCH_S = 1735689600
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error"}


def openai_error(status: int, message: str) -> JSONResponse:
    error_type = _ERROR_TYPES.get(status, "api_error")
    return JSONResponse({"error": {"message": message, "type": error_type, "param": None, "code": None}}, status_code=status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as error:
        raise NativeError(400, f"invalid request body: {error}") from None
    if not isinstance(body, dict):
        raise NativeError(400, "missing request body")
    return body


def _model(sim: Simulator, body: dict[str, Any]) -> ModelSpec:
    name = body.get("model")
    if not name or not isinstance(name, str):
        raise NativeError(400, "model is required")
    spec = sim.config.catalog.resolve(name)
    if spec is None:
        raise NativeError(404, f'model "{name}" not found, try pulling it first')
    return spec


def _options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if body.get("max_tokens") is not None:
        options["num_predict"] = body["max_tokens"]
    for key in ("temperature", "seed", "top_p", "stop"):
        if body.get(key) is not None:
            options[key] = body[key]
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


async def completions(request: Request, kind: str) -> Response:
    """/v1/chat/completions (kind "chat") and /v1/completions (kind "text")."""
    sim = sim_of(request)
    arrival_s = time.monotonic()
    try:
        body = await _body(request)
        spec = _model(sim, body)
        if spec.embedding_only:
            raise NativeError(400, f'"{spec.name}" does not support {"chat" if kind == "chat" else "generate"}')
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise NativeError(400, "[] is too short - 'messages'")
            prompt_key = orjson.dumps(messages).decode()
            prompt_tokens = textgen.chat_prompt_tokens(messages)
        else:
            prompt = body.get("prompt")
            prompt = "".join(prompt) if isinstance(prompt, list) else str(prompt or "")
            prompt_key = f"\x1f{prompt}"
            prompt_tokens = textgen.text_tokens(prompt)
        num_ctx = sim.scheduler.effective_num_ctx(spec, None)
        job = plan_job(sim.config, spec, prompt_key, min(prompt_tokens, num_ctx), _options(body), _format(body))
        faults = sim.faults_for(len(job.output_tokens))
        if faults.error:
            raise NativeError(500, "simulated fault: internal server error")
        runner = await acquire(sim, spec, None, sim.config.keep_alive_s)
    except NativeError as error:
        return openai_error(error.status, error.message)
    timings = Timings.after_acquire(arrival_s, runner)
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    completion_id = f"{prefix}-{sim.request_id(None)}"
    request_id = request.headers.get("x-request-id") or completion_id
    if body.get("stream") is True:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        lease = Lease(sim.scheduler, runner)
        events = _sse(sim, lease, job, timings, faults, kind, completion_id, request_id, include_usage)
        return LeasedStream(events, lease, "text/event-stream")
    pieces: list[str] = []
    try:
        async for token in run_job(sim.scheduler, runner, job, timings, faults):
            pieces.append(token)
    except Exception as error:  # a simulated cut on a non-streamed answer becomes a 500
        return openai_error(500, f"simulated fault: {type(error).__name__}")
    finally:
        sim.scheduler.release(runner)
    text = "".join(pieces)
    finish = "length" if timings.done_reason == "length" else "stop"
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
            "usage": _usage(job.prompt_tokens, timings.eval_count),
        }
    )


def _sse_chunk(kind: str, completion_id: str, model: str, text: str, finish: str | None) -> dict[str, Any]:
    if kind == "chat":
        choice: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"text": text, "index": 0, "finish_reason": finish}
        obj = "text_completion"
    return {
        "id": completion_id,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [choice],
    }


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _sse(
    sim: Simulator, lease: Lease, job: Job, timings: Timings, faults: FaultPlan, kind: str,
    completion_id: str, request_id: str, include_usage: bool,
) -> AsyncIterator[bytes]:
    index = 0
    model = job.model.name
    try:
        async for token in run_job(sim.scheduler, lease.runner, job, timings, faults):
            if faults.malformed_at == index:
                yield sim.emit(request_id, index, b"data: " + MALFORMED_LINE + b"\n")
            yield sim.emit(request_id, index, _data(_sse_chunk(kind, completion_id, model, token, None)))
            index += 1
        if faults.no_done:
            return
        finish = "length" if timings.done_reason == "length" else "stop"
        yield sim.emit(request_id, index, _data(_sse_chunk(kind, completion_id, model, "", finish)))
        if include_usage:
            usage_chunk = _sse_chunk(kind, completion_id, model, "", None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = _usage(job.prompt_tokens, timings.eval_count)
            yield sim.emit(request_id, index + 1, _data(usage_chunk))
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
        spec = _model(sim, body)
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
        vectors, _, prompt_count = await embed_vectors(sim, spec, texts, {}, sim.config.keep_alive_s, True)
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
