"""Ollama's native API (/api/*): NDJSON streams, exact error bodies (server/routes.go)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from bench.sim import front, tokens
from bench.sim.backend import LoadFailed, RunnerRequestError
from bench.sim.catalog import ModelSpec
from bench.sim.front import FrontError, Prompt
from bench.sim.generation import FaultPlan, RuntimeOutOfMemory, SimulatedCut, Timings, run_completion
from bench.sim.scheduler import LoadedModel, QueueFullError, ScheduleError, ScheduleRequest
from bench.sim.state import MODIFIED_AT, Simulator, created_at

NDJSON = "application/x-ndjson"
MALFORMED_LINE = b'{"model": "garbage", "created_at": \x00\xff not json\n'
NativeError = FrontError  # one error type for both surfaces


class Lease:
    """A request's hold on a loaded runner, released exactly once (stream end or response end)."""

    def __init__(self, sim: Simulator, loaded: LoadedModel) -> None:
        self.sim = sim
        self.loaded = loaded
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.sim.scheduler.release(self.loaded)


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


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def sim_of(request: Request) -> Simulator:
    return request.app.state.sim  # type: ignore[no-any-return]


async def read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        raise FrontError(400, "missing request body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        # Go's encoding/json: a body cut short is "unexpected EOF" (gin passes err.Error() through,
        # routes.go GenerateHandler); other syntax errors keep Python's wording (a known deviation).
        if error.pos >= len(raw.rstrip()):
            raise FrontError(400, "unexpected EOF") from None
        raise FrontError(400, f"invalid character in request body: {error}") from None
    if not isinstance(body, dict):
        raise FrontError(400, "json: cannot unmarshal request body into a request object")
    return body


def resolve_model(sim: Simulator, body: dict[str, Any], kind: str) -> ModelSpec:
    """The model or Ollama's not-found error for this endpoint (routes.go; texts differ per route)."""
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name:
        if kind == "generate":
            raise FrontError(404, "model '' not found")
        raise FrontError(400, "model is required")
    spec = sim.config.catalog.resolve(name)
    if spec is None:
        if kind == "embed":
            raise FrontError(404, f'model "{name}" not found, try pulling it first')
        raise FrontError(404, f"model '{name}' not found")
    return spec


def model_details(spec: ModelSpec) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": spec.family,
        "families": [spec.family],
        "parameter_size": spec.parameter_size,
        "quantization_level": spec.quantization,
    }


async def acquire(sim: Simulator, request: ScheduleRequest) -> LoadedModel:
    try:
        return await sim.scheduler.acquire(request)
    except QueueFullError as error:
        raise FrontError(503, str(error)) from None
    except ScheduleError as error:
        raise FrontError(500, str(error)) from None


def _prompt_of(body: dict[str, Any], kind: str, chat_template: str = "") -> Prompt | None:
    if kind == "chat":
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise FrontError(400, "json: cannot unmarshal messages into Go struct field ChatRequest.messages of type []api.Message")
        if not messages:
            return None
        return Prompt(tokens.render_chat(messages, chat_template), orjson.dumps(messages).decode())
    prompt = body.get("prompt") or ""
    system = body.get("system") or ""
    if not isinstance(prompt, str) or not isinstance(system, str):
        raise FrontError(400, "json: cannot unmarshal prompt into Go struct field GenerateRequest.prompt of type string")
    if not prompt:
        return None
    return Prompt(tokens.render_generate(prompt, system), f"{system}\x1f{prompt}")


async def completion(request: Request, kind: str) -> Response:
    """/api/chat (kind "chat") and /api/generate (kind "generate")."""
    sim = sim_of(request)
    arrival_s = time.monotonic()
    try:
        body = await read_body(request)
        keep_alive = front.parse_keep_alive(body.get("keep_alive"))
        spec = resolve_model(sim, body, kind)
        if spec.embedding_only:
            raise FrontError(400, f'"{spec.name}" does not support {kind}')
        prompt = _prompt_of(body, kind, spec.chat_template)
        raw_options, options = front.decoded_options(body)
        shift = body.get("shift") if isinstance(body.get("shift"), bool) else None
        if prompt is None:
            return await load_only(sim, spec, kind, keep_alive, raw_options, options)
        schedule = front.schedule_request(sim, spec, raw_options, options, keep_alive, shift)
        faults = sim.faults_for(front.fault_token_budget(sim, prompt, options))
        if faults.error:
            raise FrontError(500, "simulated fault: internal server error")
        loaded = await acquire(sim, schedule)
        # Ollama stamps load_duration's end right after scheduleRunner (server/routes.go checkpointLoaded),
        # before templating and tokenizing: those wait on the runner and must not read as a load.
        timings = Timings.after_acquire(arrival_s, loaded)
        truncate = body.get("truncate", True) is not False
        try:
            if kind == "chat" and front.native_chat(sim):
                job = await front.native_chat_request(sim, loaded, body["messages"], prompt, options,
                                                      body.get("format"), truncate)
            else:
                if kind == "chat" and truncate:
                    messages = await front.trim_chat(loaded, body["messages"], loaded.options.num_ctx)
                    prompt = Prompt(tokens.render_chat(messages, spec.chat_template), prompt.sample_key)
                elif kind == "generate" and front.native_chat(sim):
                    rendered = await front.native_generate_prompt(loaded, body.get("prompt") or "",
                                                                  body.get("system") or "", truncate)
                    prompt = Prompt(rendered, prompt.sample_key)
                job = await front.completion_request(sim, loaded, prompt, options, body.get("format"))
        except FrontError:
            sim.scheduler.release(loaded)
            raise
    except FrontError as error:
        return error_response(error.status, error.message)
    request_id = sim.request_id(request.headers.get("x-request-id"))
    lease = Lease(sim, loaded)
    if body.get("stream", True) is False:
        return await _collect(sim, lease, job, timings, faults, kind, spec)
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


def _final(kind: str, spec: ModelSpec, timings: Timings, text: str = "") -> dict[str, Any]:
    line = _chunk(kind, spec, text, True)
    line["done_reason"] = timings.done_reason
    if kind == "generate":
        line["context"] = list(range(1, timings.prompt_eval_count + timings.eval_count + 1))[:4096]
    line.update(timings.metrics())
    return line


async def _native_lines(
    sim: Simulator, lease: Lease, job: Any, timings: Timings, faults: FaultPlan, kind: str, spec: ModelSpec, request_id: str
) -> AsyncIterator[bytes]:
    index = 0
    try:
        async for token in run_completion(sim.scheduler, lease.loaded, job, timings, faults):
            if faults.malformed_at == index:
                yield sim.emit(request_id, index, MALFORMED_LINE)
            yield sim.emit(request_id, index, orjson.dumps(_chunk(kind, spec, token, False)) + b"\n")
            index += 1
        if not faults.no_done and not timings.repeat_limited:
            yield sim.emit(request_id, index, orjson.dumps(_final(kind, spec, timings)) + b"\n")
    except RuntimeOutOfMemory as error:
        # streamResponse: after the 200 went out, an error is one NDJSON line.
        yield sim.emit(request_id, index, orjson.dumps({"error": str(error)}) + b"\n")
    finally:
        lease.release()


async def _collect(
    sim: Simulator, lease: Lease, job: Any, timings: Timings, faults: FaultPlan, kind: str, spec: ModelSpec
) -> Response:
    pieces: list[str] = []
    try:
        async for token in run_completion(sim.scheduler, lease.loaded, job, timings, faults):
            pieces.append(token)
    except SimulatedCut:
        return error_response(500, "simulated fault: connection lost")
    except RuntimeOutOfMemory as error:
        return error_response(500, str(error))
    finally:
        lease.release()
    if timings.repeat_limited:
        # writeChatResponse / GenerateHandler: the last response, not done, with all the text so far.
        return Response(orjson.dumps(_chunk(kind, spec, "".join(pieces), False)), media_type="application/json")
    return Response(orjson.dumps(_final(kind, spec, timings, "".join(pieces))), media_type="application/json")


async def load_only(sim: Simulator, spec: ModelSpec, kind: str, keep_alive: float | None,
                    raw_options: dict[str, Any], options: dict[str, Any]) -> Response:
    """An empty prompt (or no messages) loads the model, or with keep_alive 0 unloads it (routes.go 403-486)."""
    line = _chunk(kind, spec, "", True)
    if keep_alive == 0:
        sim.scheduler.expire_model(spec)
        line["done_reason"] = "unload"
        return JSONResponse(line)
    loaded = await acquire(sim, front.schedule_request(sim, spec, raw_options, options, keep_alive))
    sim.scheduler.release(loaded)
    line["done_reason"] = "load"
    return JSONResponse(line)


async def chat(request: Request) -> Response:
    return await completion(request, "chat")


async def generate(request: Request) -> Response:
    return await completion(request, "generate")


async def embed_vectors(
    sim: Simulator, spec: ModelSpec, texts: list[str], body: dict[str, Any], keep_alive: float | None, truncate: bool
) -> tuple[list[list[float]], Timings, int]:
    """Schedule, embed every input, return unit vectors; shared by /api/embed, /api/embeddings, /v1/embeddings."""
    arrival_s = time.monotonic()
    raw_options, options = front.decoded_options(body)
    loaded = await acquire(sim, front.schedule_request(sim, spec, raw_options, options, keep_alive))
    timings = Timings.after_acquire(arrival_s, loaded)
    try:
        assert loaded.runner is not None
        async with loaded.slots:
            result = await loaded.runner.embed(texts, truncate)
        vectors = [unit_vector(vector) for vector in result.vectors]  # "TODO: … done by the model"
    except RunnerRequestError as error:
        raise FrontError(error.status, error.message.strip()) from None
    except (LoadFailed, ValueError) as error:
        # EmbedHandler: any failure that is not an api.StatusError is a 400 (routes.go 1010-1013).
        raise FrontError(400, str(error).strip()) from None
    finally:
        sim.scheduler.release(loaded)
    return vectors, timings, result.prompt_n


def unit_vector(vector: list[float]) -> list[float]:
    """Ollama's normalize: divide by the L2 norm; NaN or Inf is an error (ValueError)."""
    if any(math.isnan(v) or math.isinf(v) for v in vector):
        raise ValueError("embedding contains NaN or Inf values")
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else list(vector)


async def embed(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        keep_alive = front.parse_keep_alive(body.get("keep_alive"))
        spec = resolve_model(sim, body, "embed")
        raw_input = body.get("input", [])
        texts = [raw_input] if isinstance(raw_input, str) else list(raw_input or [])
        if not all(isinstance(text, str) for text in texts):
            raise FrontError(400, "invalid input type")
        if sim.faults_for(1).error:
            raise FrontError(500, "simulated fault: internal server error")
        if not texts:
            raw_options, options = front.decoded_options(body)
            loaded = await acquire(sim, front.schedule_request(sim, spec, raw_options, options, keep_alive))
            sim.scheduler.release(loaded)
            return JSONResponse({"model": spec.name, "embeddings": []})
        vectors, timings, prompt_count = await embed_vectors(
            sim, spec, texts, body, keep_alive, body.get("truncate", True) is not False
        )
    except FrontError as error:
        return error_response(error.status, error.message)
    dimensions = body.get("dimensions")
    if isinstance(dimensions, int) and 0 < dimensions < spec.embedding_length:
        vectors = [unit_vector(vector[:dimensions]) for vector in vectors]
    metrics = timings.metrics()
    return JSONResponse(
        {
            "model": spec.name,
            "embeddings": vectors,
            "total_duration": metrics["total_duration"],
            "load_duration": metrics["load_duration"],
            "prompt_eval_count": prompt_count,
        }
    )


async def embeddings_legacy(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        keep_alive = front.parse_keep_alive(body.get("keep_alive"))
        spec = resolve_model(sim, body, "embed")
        prompt = body.get("prompt") or ""
        if not prompt:
            return JSONResponse({"embedding": []})
        vectors, _, _ = await embed_vectors(sim, spec, [prompt], body, keep_alive, True)
    except FrontError as error:
        return error_response(error.status, error.message)
    return JSONResponse({"embedding": vectors[0]})


async def root(request: Request) -> Response:
    return Response("Ollama is running", media_type="text/plain; charset=utf-8")


async def version(request: Request) -> Response:
    # The header says what the simulated speed rests on (bench run stores it in the manifest, and
    # sizing answers quote it); clients of a real Ollama never see it.
    return JSONResponse({"version": sim_of(request).version},
                        headers={"x-bench-speed-basis": quote(sim_of(request).speed_basis)})


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
    return spec.model_info()


async def show(request: Request) -> Response:
    sim = sim_of(request)
    try:
        body = await read_body(request)
        name = body.get("model") or body.get("name")
        if not name or not isinstance(name, str):
            raise FrontError(400, "model is required")
        spec = sim.config.catalog.resolve(name)
        if spec is None:
            # ShowHandler normalises the name with its tag before looking it up (routes.go 1355-1367).
            tagged = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
            raise FrontError(404, f"model '{tagged}' not found")
    except FrontError as error:
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


# time.Now().Add(math.MaxInt64): keep-alive forever shows as ~292 years ahead.
_FOREVER_S = 2**63 / 1e9


def _expires_at(loaded: LoadedModel, speed: float) -> float:
    """loadedModels (sched.go 1745-1785): the last idle expiry, else now + keep_alive."""
    if loaded.expires_at_epoch_s is not None:
        return loaded.expires_at_epoch_s
    if loaded.keep_alive_s == float("inf"):
        return time.time() + _FOREVER_S
    return time.time() + loaded.keep_alive_s / speed


def _rfc3339(epoch_s: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, ValueError, OSError):
        return "2318-08-05T00:00:00.000000Z"


async def ps(request: Request) -> Response:
    """PsHandler (routes.go 2271-2303): loaded runners only, newest expiry first."""
    sim = sim_of(request)
    rules = sim.config.rules
    entries = []
    for loaded in list(sim.scheduler.loaded.values()):
        if loaded.state.value not in ("ready", "loading") or (loaded.runner is None and rules.llama_server_memory):
            continue
        spec = loaded.model
        report = loaded.runner.memory if loaded.runner is not None else None
        expires = _expires_at(loaded, sim.config.speed)
        entries.append((expires, {
            "name": spec.name,
            "model": spec.name,
            "size": report.size_bytes if report else spec.size_bytes,
            "digest": spec.digest,
            "details": model_details(spec),
            "expires_at": _rfc3339(expires),
            "size_vram": report.size_vram_bytes if report else 0,
            # v0.33: llama.ContextLength(), the clamped per-slot value; v0.12.6: the requested num_ctx.
            "context_length": loaded.options.num_ctx if rules.ps_reports_clamped_ctx else loaded.requested_num_ctx,
        }))
    entries.sort(key=lambda entry: entry[0], reverse=True)
    return JSONResponse({"models": [entry for _, entry in entries]})
