"""Embeddings through `bench sim --engine llama-server`: an embedding GGUF (`llama.pooling_type`)
launched the way Ollama v0.33 launches one, both embedding endpoints, and `bench run` on them."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from bench.engine.gguf_maker import make_model
from bench.engine.shapes import PRESETS, resolve_shape
from bench.sim.testing import running_sim, simulator_for
from tests.engine.runs import run_scenario

pytestmark = pytest.mark.engine

NUM_CTX = 512
EMBEDDING_LENGTH = PRESETS["tiny-embed"].shape.embedding_length


@pytest.fixture(scope="module")
def embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "embed.gguf"
    make_model(path, resolve_shape("tiny-embed"), "embed")
    return path


@pytest.fixture(scope="module")
def embed_sim(llama_server_binary: Path, embed_gguf: Path):
    # NUM_PARALLEL 4 asked for: Ollama forces 1 for a model without the completion capability.
    env = {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_CONTEXT_LENGTH": str(NUM_CTX), "LLAMA_ARG_THREADS": "1",
           "BENCH_SIM_LLAMA_SERVER": str(llama_server_binary)}
    with running_sim(env=env, engine="llama-server", model_files=(f"embed={embed_gguf}",)) as base_url:
        yield base_url


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(v * v for v in vector))


def test_both_endpoints_return_one_unit_vector_per_input_from_the_engine(embed_sim: str) -> None:
    texts = ["The quick brown fox", "jumps over the lazy dog", "x"]
    native = httpx.post(f"{embed_sim}/api/embed", json={"model": "embed", "input": texts}, timeout=120)
    assert native.status_code == 200, native.text
    answer = native.json()
    assert len(answer["embeddings"]) == 3
    assert all(len(v) == EMBEDDING_LENGTH and abs(_norm(v) - 1) < 1e-5 for v in answer["embeddings"])
    assert answer["embeddings"][0] != answer["embeddings"][1]  # the engine's vectors, not a constant

    runner = simulator_for(embed_sim).scheduler.loaded["embed:latest"].runner
    args = runner.server.args
    # Ollama's embedding launch: --embedding, one slot, -b/-ub min(num_batch, num_ctx×P) = min(2048, 512).
    assert "--embedding" in args and args[args.index("-np") + 1] == "1" and args[args.index("-c") + 1] == str(NUM_CTX)
    assert args[args.index("-b") + 1] == args[args.index("-ub") + 1] == str(NUM_CTX)

    openai = httpx.post(f"{embed_sim}/v1/embeddings", json={"model": "embed", "input": texts}, timeout=120)
    assert openai.status_code == 200, openai.text
    data = openai.json()["data"]
    assert [item["index"] for item in data] == [0, 1, 2]
    # Same engine, same inputs: the same vectors on both surfaces, and the same token count.
    for item, vector in zip(data, answer["embeddings"], strict=True):
        assert max(abs(a - b) for a, b in zip(item["embedding"], vector, strict=True)) < 1e-5
    assert openai.json()["usage"]["prompt_tokens"] == answer["prompt_eval_count"]

    # prompt_eval_count is the engine's: what llama-server itself counts for each input, summed.
    direct = [httpx.post(f"{runner.server.base_url}/v1/embeddings", json={"input": text}, timeout=60).json()
              for text in texts]
    assert answer["prompt_eval_count"] == sum(d["usage"]["prompt_tokens"] for d in direct) > len(texts)


def test_over_long_input_is_cut_to_the_context_or_refused_without_truncate(embed_sim: str) -> None:
    long_text = "benchmark " * (3 * NUM_CTX)
    cut = httpx.post(f"{embed_sim}/api/embed", json={"model": "embed", "input": long_text}, timeout=120)
    assert cut.status_code == 200, cut.text
    assert len(cut.json()["embeddings"][0]) == EMBEDDING_LENGTH
    assert NUM_CTX - 4 <= cut.json()["prompt_eval_count"] <= NUM_CTX
    refused = httpx.post(f"{embed_sim}/api/embed", json={"model": "embed", "input": long_text, "truncate": False},
                         timeout=120)
    assert refused.status_code == 400
    assert refused.json() == {"error": "the input length exceeds the context length"}
    chat = httpx.post(f"{embed_sim}/api/chat", json={"model": "embed", "messages": [{"role": "user", "content": "x"}]},
                      timeout=60)
    assert chat.status_code == 400 and "does not support chat" in chat.json()["error"]


def test_bench_run_measures_both_embedding_endpoints_on_the_engine(
    llama_server_binary: Path, embed_gguf: Path, tmp_path: Path
) -> None:
    scenario = {
        "name": "engine-embed", "target": "sim",
        "sim": {"args": ["--engine", "llama-server", "--llama-server", str(llama_server_binary),
                         "--model-file", f"embed={embed_gguf}"],
                "env": {"OLLAMA_CONTEXT_LENGTH": str(NUM_CTX), "LLAMA_ARG_THREADS": "1"}},
        "workload": {"endpoint": ["native/embed", "openai/embeddings"], "model": "embed", "prompt": {"tokens": 64}},
        "load": {"arrival": "closed", "concurrency": [2], "requests": 4, "warmup_requests": 1},
    }
    run_dir = tmp_path / "run"
    records = run_scenario(scenario, run_dir)
    measured = [r for r in records if r["phase"] == "measure"]
    assert len(measured) == 8 and all(r["error_class"] is None for r in measured), measured
    assert {r["endpoint"] for r in measured} == {"embed"}
    assert all(r["prompt_tokens"] and r["prompt_tokens"] > 0 for r in measured), measured[0]
