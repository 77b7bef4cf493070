"""The runner seam's contract (bench/sim/backend.py), checked against every backend available.

A new backend (bench/engine's llama-server) joins by adding a factory to BACKENDS; the tests
then hold it to the same contract the scheduler relies on.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

from bench.sim import tokens
from bench.sim.backend import Backend, CompletionRequest, CompletionTimings, LoadRequest
from bench.sim.catalog import load_catalog
from bench.sim.simulated import SimulatedBackend, SimulatedHardware

CATALOG = load_catalog()


def _simulated() -> Backend:
    return SimulatedBackend(SimulatedHardware(gpu=CATALOG.gpus["h100"], speed=200.0, seed=0))


BACKENDS: dict[str, Callable[[], Backend]] = {"simulated": _simulated}


def _launch(model: str, **overrides: object) -> LoadRequest:
    values: dict = {"model": CATALOG.models[model], "num_ctx": 4096, "num_parallel": 2, "num_batch": 512,
                    "gpu_free_bytes": CATALOG.gpus["h100"].memory_bytes, "host_free_bytes": 64 * 2**30}
    values.update(overrides)
    return LoadRequest(**values)


async def _complete(runner, prompt: str, n_predict: int = 8) -> tuple[list[str], CompletionTimings]:
    pieces: list[str] = []
    finals: list[CompletionTimings] = []
    async for event in runner.completion(CompletionRequest(prompt=prompt, n_predict=n_predict, sample_key=prompt)):
        if isinstance(event, CompletionTimings):
            finals.append(event)
        else:
            assert not finals, "text after the final timings"
            pieces.append(event)
    assert len(finals) == 1
    return pieces, finals[0]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]()


def test_load_reports_buffers_layers_and_the_per_slot_context(backend: Backend) -> None:
    async def scenario() -> None:
        runner = await backend.load(_launch("qwen2.5:0.5b"))
        memory = runner.memory
        assert memory.context_length == 4096 and memory.num_batch == 512
        assert memory.gpu_layers == memory.total_layers and memory.size_bytes == memory.size_vram_bytes > 0
        assert {b.kind for b in memory.buffers} >= {"model", "KV", "compute"}
        assert await runner.health()
        await runner.close()

    asyncio.run(scenario())


def test_completion_streams_then_one_final_timings_and_caches_the_prefix(backend: Backend) -> None:
    async def scenario() -> None:
        runner = await backend.load(_launch("qwen2.5:0.5b"))
        prompt = tokens.render_chat([{"role": "user", "content": "tell me about rivers " * 40}])
        pieces, first = await _complete(runner, prompt, n_predict=6)
        assert len(pieces) == first.predicted_n == 6 and first.stop_type == "limit"
        assert first.cache_n + first.prompt_n == len(await runner.tokenize(prompt))
        _, again = await _complete(runner, prompt, n_predict=6)
        assert again.cache_n + again.prompt_n == first.cache_n + first.prompt_n
        assert again.prompt_n <= 1 < first.prompt_n and again.prompt_ms < first.prompt_ms
        await runner.close()

    asyncio.run(scenario())


def test_closing_a_stream_early_frees_its_slot(backend: Backend) -> None:
    async def scenario() -> None:
        runner = await backend.load(_launch("qwen2.5:0.5b", num_parallel=1))
        stream = runner.completion(CompletionRequest(prompt="x" * 64, n_predict=500, sample_key="x"))
        assert isinstance(await stream.__anext__(), str)
        await stream.aclose()
        pieces, final = await asyncio.wait_for(_complete(runner, "y" * 64, n_predict=2), timeout=30)
        assert final.predicted_n == 2
        await runner.close()

    asyncio.run(scenario())


def test_embeddings_are_unit_vectors(backend: Backend) -> None:
    async def scenario() -> None:
        runner = await backend.load(_launch("nomic-embed-text:latest", num_parallel=1, embedding=True))
        result = await runner.embed(["hello", "world"])
        assert len(result.vectors) == 2 and result.prompt_n > 0
        assert all(math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-6) for vector in result.vectors)
        await runner.close()

    asyncio.run(scenario())
