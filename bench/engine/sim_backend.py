"""`bench sim --engine llama-server`: the sim's Ollama front with each loaded model served by a real
llama-server (bench/sim/backend.py's Backend/Runner contract).

The front keeps Ollama's registry, scheduler, keep_alive, queue, prompt rendering and response
shaping; this backend starts one llama-server per loaded model with the arguments Ollama v0.33
passes, streams `/completion` the way Ollama does, and reports the buffers llama-server logged
(from which the front builds /api/ps size and size_vram with Ollama's rules).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.engine.binary import EngineError, find_llama_server
from bench.engine.chat import chat_body, stream_chat
from bench.engine.completion import CompletionChunk, SamplingOptions, completion_body, stream_completion
from bench.engine.embedding import EmbeddingMetadata, embed_one, read_embedding_metadata
from bench.engine.launch import LaunchSettings
from bench.engine.models import preset_for, preset_path
from bench.engine.process import EngineHTTPError, LlamaServer
from bench.sim.config import SimConfig
from bench.sim.backend import (
    CompletionRequest,
    CompletionTimings,
    EmbedResult,
    LoadFailed,
    LoadOutOfMemory,
    LoadReport,
    LoadRequest,
    MemoryBuffer,
    RunnerRequestError,
)

# llama.cpp's allocation failures, as Ollama's IsOutOfMemoryMessage looks for them.
_OOM_MARKERS = ("out of memory", "failed to allocate", "unable to allocate", "cudamalloc failed")

# `format: "json"` as llama-server's JSON-schema field: any JSON object.
_ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object"}


class LlamaServerBackend:
    """Starts a LlamaServerRunner per load; model names map to GGUF files."""

    name = "llama-server"

    def __init__(self, binary: Path, model_files: Mapping[str, Path], log_dir: Path | None = None) -> None:
        self.binary = binary
        self.model_files = dict(model_files)
        self.log_dir = log_dir
        self._load_numbers = itertools.count(1)

    async def model_path(self, name: str) -> Path:
        """The GGUF for a model name: a --model-file, else a preset (made into the cache on first use)."""
        if name in self.model_files:
            return self.model_files[name]
        preset = preset_for(name)
        if preset is None:
            raise LoadFailed(
                f"model {name!r} has no GGUF file for the llama-server engine: give one with "
                "--model-file NAME=PATH or use a preset (bench gguf presets)"
            )
        return await asyncio.to_thread(preset_path, preset)

    async def load(self, request: LoadRequest) -> LlamaServerRunner:
        path = await self.model_path(request.model.name)
        settings = LaunchSettings(
            model_path=path,
            num_ctx=request.num_ctx,
            num_parallel=request.num_parallel,
            kv_cache_type=(request.kv_cache_type or "").lower(),
            flash_attention=request.flash_attention,
            num_batch=request.num_batch,
            embedding=request.embedding,
            disable_jinja=request.disable_jinja,
            num_gpu=None if request.num_gpu < 0 else request.num_gpu,
            num_thread=request.num_thread or None,
            context_shift=request.context_shift,
            num_keep=request.num_keep,
        )
        log_path = None
        if self.log_dir is not None:
            safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.model.name)
            log_path = self.log_dir / f"llama-server-{next(self._load_numbers)}-{safe_name}.log"
        server = LlamaServer(self.binary, settings, log_path=log_path)
        try:
            await server.start()  # stops the child itself on failure or cancellation
        except EngineError as error:
            text = str(error)
            if any(marker in text.lower() for marker in _OOM_MARKERS):
                raise LoadOutOfMemory(text) from None
            raise LoadFailed(text) from None
        return LlamaServerRunner(server, request)


def load_report(server: LlamaServer, request: LoadRequest) -> LoadReport:
    """The logged buffers and layer placement, in the front's terms."""
    memory = server.memory()
    gpu_layers, total_layers, overflow = server.memory_log.layers()
    if total_layers == 0:  # a build that never logs placement: every layer is on the CPU
        gpu_layers, total_layers = 0, request.model.block_count + 1
    buffers = tuple(MemoryBuffer(b.backend, b.kind, b.size_bytes) for b in memory.buffers)
    return LoadReport(
        buffers=buffers, gpu_layers=gpu_layers, total_layers=total_layers, context_length=request.num_ctx,
        num_batch=request.num_batch, fit_overflow=overflow,
    )


class LlamaServerRunner:
    """One loaded model: a running llama-server and what it logged while loading."""

    def __init__(self, server: LlamaServer, request: LoadRequest) -> None:
        self.server = server
        self.request = request
        self.memory = load_report(server, request)
        self._embedding_metadata: EmbeddingMetadata | None = None

    @property
    def pid(self) -> int | None:
        return self.server.pid

    async def health(self) -> bool:
        return self.server.running and await self.server.health() == "ok"

    async def tokenize(self, text: str) -> list[int]:
        # completionPromptForRequest tokenises with add_special=true (BOS counted).
        return await self.server.tokenize(text, add_special=True)

    async def count_tokens(self, text: str) -> int:
        # Ollama's Tokenize (chatPrompt, truncateNativeChatMessages) sends no add_special.
        try:
            return len(await self.server.tokenize(text, add_special=False))
        except EngineError as error:
            raise LoadFailed(str(error)) from None

    async def _ready(self) -> None:
        """getServerStatusRetry: every Completion, Chat and Embedding call starts with a /health."""
        status = await self.server.health()
        if status != "ok":
            raise LoadFailed(f"unexpected server status: {status}")

    async def apply_template(self, messages: Sequence[dict[str, Any]]) -> str:
        try:
            return await self.server.apply_template(list(messages))
        except EngineError as error:
            raise LoadFailed(str(error)) from None

    async def completion(self, request: CompletionRequest) -> AsyncIterator[str | CompletionTimings]:
        options = SamplingOptions.from_options(
            {**request.options, "num_predict": request.n_predict, "num_keep": request.n_keep}
        )
        await self._ready()
        if request.messages is not None:  # OLLAMA_GO_TEMPLATE=false: llama-server's Jinja chat
            events = stream_chat(self.server, chat_body(request.messages, options, self.request.num_ctx,
                                                        request.json_schema))
        else:
            prompt = request.prompt if isinstance(request.prompt, str) else list(request.prompt)
            body = completion_body(prompt, options, self.request.num_ctx)
            if request.json_schema:
                body["json_schema"] = _ANY_OBJECT_SCHEMA if request.json_schema == "json" else request.json_schema
            events = stream_completion(self.server, body)
        try:
            async for item in events:
                if isinstance(item, CompletionChunk):
                    yield item.content
                    continue
                if item.content:
                    yield item.content
                timings = item.timings
                stop_type = str(item.raw.get("stop_type") or ("limit" if item.done_reason == "length" else "eos"))
                yield CompletionTimings(
                    cache_n=timings.cache_n, prompt_n=timings.prompt_n, prompt_ms=timings.prompt_ms,
                    predicted_n=timings.predicted_n, predicted_ms=timings.predicted_ms, stop_type=stop_type,
                )
                return
        except EngineError as error:
            raise LoadFailed(str(error)) from None

    async def embed(self, texts: Sequence[str], truncate: bool = True) -> EmbedResult:
        # Ollama embeds the inputs concurrently, but the runner's semaphore (P = 1 for embedding
        # models) lets one /v1/embeddings through at a time: serial calls, in order.
        if self._embedding_metadata is None:
            self._embedding_metadata = await asyncio.to_thread(read_embedding_metadata, self.server.settings.model_path)
        vectors: list[list[float]] = []
        prompt_n = 0
        try:
            for text in texts:
                await self._ready()
                embedded = await embed_one(self.server, text, self.request.num_ctx, self.memory.num_batch, truncate,
                                           self._embedding_metadata)
                vectors.append(embedded.vector)
                prompt_n += embedded.prompt_tokens
        except EngineHTTPError as error:  # /tokenize or /detokenize refused
            raise RunnerRequestError(error.status, error.message) from None
        except EngineError as error:
            raise LoadFailed(str(error)) from None
        return EmbedResult(vectors=vectors, prompt_n=prompt_n)

    async def close(self) -> None:
        await self.server.stop()


def create_backend(config: SimConfig) -> LlamaServerBackend:
    """The hook bench/sim/state.py calls for `--engine llama-server`; EngineError without a binary."""
    binary = find_llama_server(config.llama_server_path)
    return LlamaServerBackend(binary, config.model_files, config.engine_log_dir)
