"""The real engine: llama-server started as Ollama v0.33 starts it, serving models from `bench gguf make`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bench.analysis.kv_model import read_gguf
from bench.analysis.kv_formulas import kv_bytes_per_token
from bench.engine.binary import EngineError
from bench.engine.completion import (
    CompletionChunk,
    CompletionDone,
    SamplingOptions,
    completion_body,
    stream_completion,
)
from bench.engine.launch import LaunchSettings
from bench.engine.memory_log import MIB
from bench.engine.process import LlamaServer

pytestmark = pytest.mark.engine


async def _complete(server: LlamaServer, prompt: str, max_tokens: int, **options: object):
    body = completion_body(prompt, SamplingOptions.from_options({"num_predict": max_tokens, **options}),
                           server.settings.num_ctx)
    chunks: list[str] = []
    done: CompletionDone | None = None
    async for item in stream_completion(server, body):
        if isinstance(item, CompletionChunk):
            chunks.append(item.content)
        else:
            done = item
    assert done is not None
    return chunks, done


def test_every_request_streams_exactly_max_tokens_one_chunk_each(llama_server_binary: Path, tiny_gguf: Path) -> None:
    async def scenario() -> None:
        settings = LaunchSettings(tiny_gguf, num_ctx=512, num_parallel=2, num_thread=1)
        async with LlamaServer(llama_server_binary, settings) as server:
            prompts = ["Hello", "The licence says", "x" * 50, "def main():", "", "¿Qué?"]
            for index, prompt in enumerate(prompts):
                # Greedy, sampled and hot: no sampler may reach a stopping token.
                for temperature in (0.0, 0.8, 2.0):
                    max_tokens = 8 + index * 5
                    chunks, done = await _complete(server, prompt or " ", max_tokens, temperature=temperature,
                                                   seed=index)
                    assert len(chunks) == max_tokens, (prompt, temperature, chunks)
                    assert all(chunk for chunk in chunks)
                    assert done.timings.predicted_n == max_tokens and done.done_reason == "length"

    asyncio.run(scenario())


def test_concurrent_requests_all_reach_max_tokens(llama_server_binary: Path, tiny_gguf: Path) -> None:
    async def scenario() -> None:
        settings = LaunchSettings(tiny_gguf, num_ctx=512, num_parallel=4)
        async with LlamaServer(llama_server_binary, settings) as server:
            results = await asyncio.gather(*(_complete(server, f"request {i}", 24, seed=i) for i in range(8)))
            assert [len(chunks) for chunks, _ in results] == [24] * 8

    asyncio.run(scenario())


def test_logged_kv_buffer_is_the_exact_gqa_size(llama_server_binary: Path, tiny_gguf: Path, mha_gguf: Path) -> None:
    async def scenario() -> None:
        for path, cache_type in ((tiny_gguf, ""), (mha_gguf, "f16"), (tiny_gguf, "q8_0")):
            arch = read_gguf(path).arch
            settings = LaunchSettings(path, num_ctx=1024, num_parallel=2, kv_cache_type=cache_type)
            async with LlamaServer(llama_server_binary, settings) as server:
                memory = server.memory()
                expected = 1024 * 2 * kv_bytes_per_token(arch, cache_type or "f16", stored=True)
                # llama-server logs MiB with two decimals.
                assert abs(memory.kind_bytes("KV") - expected) <= 0.01 * MIB, (path.name, cache_type)
                assert memory.size_vram_bytes == 0 and memory.size_bytes > memory.kind_bytes("KV")

    asyncio.run(scenario())


def test_repeated_prompt_is_served_from_the_slot_cache(llama_server_binary: Path, tiny_gguf: Path) -> None:
    async def scenario() -> None:
        settings = LaunchSettings(tiny_gguf, num_ctx=1024, num_parallel=1)
        async with LlamaServer(llama_server_binary, settings) as server:
            prompt = "A long shared system prompt. " * 20
            _, first = await _complete(server, prompt, 4)
            _, second = await _complete(server, prompt, 4)
            assert first.timings.cache_n == 0 and second.timings.cache_n > 0
            # Ollama counts cached tokens as evaluated: the same prompt_eval_count both times.
            assert second.timings.prompt_eval_count == first.timings.prompt_eval_count
            assert second.timings.prompt_n < first.timings.prompt_n

    asyncio.run(scenario())


def test_stop_leaves_no_process_behind(llama_server_binary: Path, tiny_gguf: Path) -> None:
    async def scenario() -> int:
        server = LlamaServer(llama_server_binary, LaunchSettings(tiny_gguf, num_ctx=256))
        await server.start()
        pid = server.pid
        assert pid is not None and server.running
        await server.stop()
        await server.stop()  # idempotent
        return pid

    pid = asyncio.run(scenario())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_quantised_cache_the_head_dim_cannot_hold_fails_the_load(llama_server_binary: Path, tmp_path: Path) -> None:
    from bench.engine.gguf_maker import make_model
    from bench.engine.shapes import resolve_shape

    path = tmp_path / "hd16.gguf"
    make_model(path, resolve_shape(None, head_dim=16, vocab_size=512), "hd16")

    async def scenario() -> None:
        server = LlamaServer(llama_server_binary, LaunchSettings(path, num_ctx=256, kv_cache_type="q8_0"))
        with pytest.raises(EngineError, match="does not divide n_embd_head_k=16"):
            await server.start(timeout_s=60)

    asyncio.run(scenario())


def test_a_broken_model_fails_the_load_with_llama_servers_words(llama_server_binary: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)

    async def scenario() -> None:
        server = LlamaServer(llama_server_binary, LaunchSettings(broken, num_ctx=256), log_path=tmp_path / "log")
        with pytest.raises(EngineError, match="exited with status"):
            await server.start(timeout_s=60)
        assert not server.running

    asyncio.run(scenario())
