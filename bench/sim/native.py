"""Ollama's native API (/api/*): NDJSON streams, exact error bodies (server/routes.go)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from bench.sim import textgen
from bench.sim.catalog import ModelSpec
from bench.sim.durations import keep_alive_s
from bench.sim.generation import FaultPlan, Job, SimulatedCut, Timings, plan_job, run_job
from bench.sim.scheduler import Lease, QueueFullError, Runner
from bench.sim.state import MODIFIED_AT, OLLAMA_VERSION, Simulator, created_at

NDJSON = "application/x-ndjson"
MALFORMED_LINE = b'{"model": "garbage", "created_at": \x00\xff not json\n'


class LeasedStream(StreamingResponse):
    """A streaming response that gives its runner back even if the client left before the first chunk
    (Starlette then never starts the body generator, so the generator's finally cannot do it)."""

    def __init__(self, content: AsyncIterator[bytes], lease: Lease, media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.lease = lease

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()


class NativeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def sim_of(request: Request) -> Simulator:
    return request.app.state.sim  # type: ignore[no-any-return]


async def read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise NativeError(400, "missing request body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise NativeError(400, f"invalid character in request body: {error}") from None
    if not isinstance(body, dict):
        raise NativeError(400, "json: cannot unmarshal request body into a request object")
    return body


def resolve_model(sim: Simulator, body: dict[str, Any]) -> ModelSpec:
    name = body.get("model") or body.get("name")
    if not name or not isinstance(name, str):
        raise NativeError(400, "model is required")
    spec = sim.config.catalog.resolve(name)
    if spec is None:
        raise NativeError(404, f'model "{name}" not found, try pulling it first')
    return spec


def request_keep_alive_s(sim: Simulator, body: dict[str, Any]) -> float:
    if body.get("keep_alive") is None:
        return sim.config.keep_alive_s
    try:
        return keep_alive_s(body["keep_alive"])
    except ValueError as error:
        raise NativeError(400, str(error)) from None


def request_options(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise NativeError(400, "json: cannot unmarshal options into map[string]interface {}")
    return options


def model_details(spec: ModelSpec) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization,
    }


async def acquire(sim: Simulator, spec: ModelSpec, num_ctx: int | None, keep_alive: float) -> Runner:
    scheduler = sim.scheduler
    try:
        return await scheduler.acquire(spec, scheduler.effective_num_ctx(spec, num_ctx), keep_alive)
    except QueueFullError as error:
        raise NativeError(503, str(error)) from None


def _num_ctx(options: dict[str, Any]) -> int | None:
    value = options.get("num_ctx")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


async def completion(request: Request, kind: str) -> Response:
    """/api/chat (kind "chat") and /api/generate (kind "generate")."""
    sim = sim_of(request)
    arrival_s = time.monotonic()
    try:
        body = await read_body(request)
        spec = resolve_model(sim, body)
        if spec.embedding_only:
            raise NativeError(400, f'"{spec.name}" does not support {kind}')
        keep_alive = request_keep_alive_s(sim, body)
        options = request_options(body)
        if kind == "chat":
            messages = body.get("messages") or []
            if not isinstance(messages, list):
                raise NativeError(400, "json: cannot unmarshal messages into []api.Message")
            prompt_key = orjson.dumps(messages).decode()
            prompt_tokens = textgen.chat_prompt_tokens(messages) if messages else 0
        else:
            prompt = body.get("prompt") or ""
            system = body.get("system") or ""
            prompt_key = f"{system}\x1f{prompt}"
            prompt_tokens = textgen.text_tokens(system + prompt) if prompt else 0
        if prompt_tokens == 0:
            return await load_only(sim, spec, kind, keep_alive, _num_ctx(options))
        num_ctx = sim.scheduler.effective_num_ctx(spec, _num_ctx(options))
        # Ollama truncates a prompt longer than the context to its last num_ctx tokens.
        job = plan_job(sim.config, spec, prompt_key, min(prompt_tokens, num_ctx), options, body.get("format"))
        faults = sim.faults_for(len(job.output_tokens))
        if faults.error:
            raise NativeError(500, "simulated fault: internal server error")
        runner = await acquire(sim, spec, num_ctx, keep_alive)
    except NativeError as error:
        return error_response(error.status, error.message)
    timings = Timings.after_acquire(arrival_s, runner)
    request_id = sim.request_id(request.headers.get("x-request-id"))
    if body.get("stream", True) is False:
        return await _collect(sim, runner, job, timings, faults, kind, spec)
    lease = Lease(sim.scheduler, runner)
    lines = _native_lines(sim, lease, job, timings, faults, kind, spec, request_id)
    return LeasedStream(lines, lease, NDJSON)


def _chunk(kind: str, spec: ModelSpec, text: str, done: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"model": spec.name, "created_at": created_at()}
    if kind == "chat":
        line["message"] = {"role": "assistant", "content": text}
    else:
        line["response"] = text
    line["done"] = done
    return line


def _final(kind: str, spec: ModelSpec, job: Job, timings: Timings, text: str = "") -> dict[str, Any]:
    line = _chunk(kind, spec, text, True)
    line["done_reason"] = timings.done_reason
    if kind == "generate":
        line["context"] = list(range(1, job.prompt_tokens + timings.eval_count + 1))[:4096]
    line.update(timings.metrics(job.prompt_tokens))
    return line


async def _native_lines(
    sim: Simulator, lease: Lease, job: Job, timings: Timings, faults: FaultPlan, kind: str, spec: ModelSpec, request_id: str
) -> AsyncIterator[bytes]:
    index = 0
    try:
        async for token in run_job(sim.scheduler, lease.runner, job, timings, faults):
            if faults.malformed_at == index:
                yield sim.emit(request_id, index, MALFORMED_LINE)
            yield sim.emit(request_id, index, orjson.dumps(_chunk(kind, spec, token, False)) + b"\n")
            index += 1
        if not faults.no_done:
            yield sim.emit(request_id, index, orjson.dumps(_final(kind, spec, job, timings)) + b"\n")
    finally:
        lease.release()


async def _collect(
    sim: Simulator, runner: Runner, job: Job, timings: Timings, faults: FaultPlan, kind: str, spec: ModelSpec
) -> Response:
    pieces: list[str] = []
    try:
        async for token in run_job(sim.scheduler, runner, job, timings, faults):
            pieces.append(token)
    except SimulatedCut:
        return error_response(500, "simulated fault: connection lost")
    finally:
        sim.scheduler.release(runner)
    return Response(orjson.dumps(_final(kind, spec, job, timings, "".join(pieces))), media_type="application/json")


async def load_only(sim: Simulator, spec: ModelSpec, kind: str, keep_alive: float, num_ctx: int | None) -> Response:
    """An empty prompt (or no messages) loads the model, or with keep_alive 0 unloads it."""
    line = _chunk(kind, spec, "", True)
    if keep_alive == 0:
        sim.scheduler.expire(spec)
        line["done_reason"] = "unload"
        return JSONResponse(line)
    runner = await acquire(sim, spec, num_ctx, keep_alive)
    sim.scheduler.release(runner)
    line["done_reason"] = "load"
    return JSONResponse(line)


async def chat(request: Request) -> Response:
    return await completion(request, "chat")


async def generate(request: Request) -> Response:
    return await completion(request, "generate")


async def embed_vectors(
    sim: Simulator, spec: ModelSpec, texts: list[str], options: dict[str, Any], keep_alive: float, truncate: bool
) -> tuple[list[list[float]], Timings, int]:
    """Schedule, prefill every input, return unit vectors; shared by /api/embed and /api/embeddings."""
    arrival_s = time.monotonic()
    num_ctx = sim.scheduler.effective_num_ctx(spec, _num_ctx(options))
    counts = [textgen.text_tokens(text) for text in texts]
    if not truncate and any(count > num_ctx for count in counts):
        raise NativeError(400, "the input length exceeds the context length")
    counts = [min(count, num_ctx) for count in counts]
    runner = await acquire(sim, spec, num_ctx, keep_alive)
    timings = Timings.after_acquire(arrival_s, runner)
    try:
        job = Job(spec, sum(counts), [], "stop")
        async for _ in run_job(sim.scheduler, runner, job, timings, FaultPlan()):
            pass
    finally:
        sim.scheduler.release(runner)
    vectors = [textgen.embedding_vector(text, spec.embedding_length, sim.config.seed) for text in texts]
    return vectors, timings, sum(counts)


async def embed(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        spec = resolve_model(sim, body)
        keep_alive = request_keep_alive_s(sim, body)
        options = request_options(body)
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else list(raw_input or [])
        if not all(isinstance(text, str) for text in texts):
            raise NativeError(400, "invalid input type")
        if sim.faults_for(1).error:
            raise NativeError(500, "simulated fault: internal server error")
        if not texts:
            runner = await acquire(sim, spec, _num_ctx(options), keep_alive)
            sim.scheduler.release(runner)
            return JSONResponse({"model": spec.name, "embeddings": []})
        vectors, timings, prompt_count = await embed_vectors(
            sim, spec, texts, options, keep_alive, body.get("truncate", True) is not False
        )
    except NativeError as error:
        return error_response(error.status, error.message)
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and 0 < dimensions < spec.embedding_length:
        vectors = [_renormalise(vector[:dimensions]) for vector in vectors]
    metrics = timings.metrics(prompt_count)
    return JSONResponse(
        {
            "model": spec.name,
            "embeddings": vectors,
            "total_duration": metrics["total_duration"],
            "load_duration": metrics["load_duration"],
            "prompt_eval_count": prompt_count,
        }
    )


def _renormalise(vector: list[float]) -> list[float]:
    norm = sum(v * v for v in vector) ** 0.5 or 1.0
    return [v / norm for v in vector]


async def embeddings_legacy(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        spec = resolve_model(sim, body)
        keep_alive = request_keep_alive_s(sim, body)
        prompt = body.get("prompt") or ""
        if not prompt:
            return JSONResponse({"embedding": []})
        vectors, _, _ = await embed_vectors(sim, spec, [prompt], request_options(body), keep_alive, True)
    except NativeError as error:
        return error_response(error.status, error.message)
    return JSONResponse({"embedding": vectors[0]})


async def root(request: Request) -> Response:
    return Response("Ollama is running", media_type="text/plain; charset=utf-8")


async def version(request: Request) -> Response:
    return JSONResponse({"version": OLLAMA_VERSION})


async def tags(request: Request) -> Response:
    sim = sim_of(request)
    models = [
        {
            "name": spec.name,
            "model": spec.name,
            "modified_at": MODIFIED_AT,
            "size": spec.size_bytes,
            "digest": spec.digest,
            "details": model_details(spec),
        }
        for spec in sim.config.catalog.models.values()
    ]
    return JSONResponse({"models": models})


def model_info(spec: ModelSpec) -> dict[str, Any]:
    arch = spec.architecture
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": spec.parameter_count,
        "general.quantization_version": 2,
        f"{arch}.block_count": spec.block_count,
        f"{arch}.context_length": spec.context_length,
        f"{arch}.embedding_length": spec.embedding_length,
        f"{arch}.feed_forward_length": spec.feed_forward_length,
        f"{arch}.attention.head_count": spec.head_count,
        f"{arch}.attention.head_count_kv": spec.head_count_kv,
        f"{arch}.vocab_size": spec.vocab_size,
    }
    if spec.key_length:
        info[f"{arch}.attention.key_length"] = spec.key_length
    if spec.value_length:
        info[f"{arch}.attention.value_length"] = spec.value_length
    return info


async def show(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        name = body.get("model") or body.get("name")
        if not name:
            raise NativeError(400, "model is required")
        spec = sim.config.catalog.resolve(str(name))
        if spec is None:
            raise NativeError(404, f"model '{name}' not found")
    except NativeError as error:
        return error_response(error.status, error.message)
    capabilities = ["embedding"] if spec.embedding_only else ["completion", "tools"]
    return JSONResponse(
        {
            "license": "",
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {spec.name}\n",
            "parameters": "",
            "template": "" if spec.embedding_only else "{{ .Prompt }}",
            "details": model_details(spec),
            "model_info": model_info(spec),
            "capabilities": capabilities,
            "modified_at": MODIFIED_AT,
        }
    )


def _expires_at(runner: Runner, speed: float) -> str:
    if runner.expires_at_epoch_s is not None:
        epoch_s = runner.expires_at_epoch_s
    elif runner.keep_alive_s == float("inf"):
        epoch_s = time.time() + 100 * 365 * 86400  # "never": far future, as Ollama shows
    else:  # in use: the countdown starts when the last request finishes
        epoch_s = time.time() + runner.keep_alive_s / speed
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def ps(request: Request) -> Response:
    sim = sim_of(request)
    models = []
    for runner in list(sim.scheduler.loaded.values()):
        spec = runner.model
        models.append(
            {
                "name": spec.name,
                "model": spec.name,
                "size": runner.layout.size_bytes,
                "digest": spec.digest,
                "details": model_details(spec),
                "expires_at": _expires_at(runner, sim.config.speed),
                "size_vram": runner.layout.size_vram_bytes,
                # Per-slot num_ctx: Ollama's PsHandler reports llama.ContextLength() = options.NumCtx,
                # while the runner's KV is sized NumCtx × NumParallel (llm/server.go KvSize).
                "context_length": runner.num_ctx,
            }
        )
    return JSONResponse({"models": models})
