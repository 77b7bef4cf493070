"""The scheduler behaves like Ollama's server/sched.go: queue bound, slots, loads, keep_alive, reloads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from bench.sim.scheduler import MAX_QUEUE_MESSAGE
from bench.sim.testing import simulator_for

BIG = "llama3.1:8b"  # ~2.6 simulated seconds to load: long against a burst's arrival spread
SMALL = "qwen2.5:0.5b"


def _generate(base_url: str, model: str = SMALL, **extra: object) -> dict:
    body = {"model": model, "prompt": "hello", "stream": False, "options": {"num_predict": 3}, **extra}
    response = httpx.post(f"{base_url}/api/generate", json=body, timeout=60)
    response.raise_for_status()
    return response.json()


async def _burst(base_url: str, model: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count)) as client:
        body = {"model": model, "prompt": "burst", "stream": False, "options": {"num_predict": 3}}
        return await asyncio.gather(*(client.post(f"{base_url}/api/generate", json=body) for _ in range(count)))


def _wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_cold_burst_rejects_beyond_queue(sim) -> None:
    base_url = sim(speed=2, env={"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_MAX_QUEUE": "3"})
    responses = asyncio.run(_burst(base_url, BIG, 10))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [503] * 5
    rejected = [r for r in responses if r.status_code == 503]
    assert all(r.content == b'{"error":"' + MAX_QUEUE_MESSAGE.encode() + b'"}' for r in rejected)
    assert MAX_QUEUE_MESSAGE == "server busy, please try again.  maximum pending requests exceeded"


def test_warm_burst_serves_all_with_at_most_num_parallel_generating(sim) -> None:
    base_url = sim(speed=20, env={"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_MAX_QUEUE": "3"})
    _generate(base_url, BIG)  # warm up
    responses = asyncio.run(_burst(base_url, BIG, 10))
    assert [r.status_code for r in responses] == [200] * 10
    runner = simulator_for(base_url).scheduler.loaded[BIG]
    assert runner.max_generating == 2
    assert simulator_for(base_url).scheduler.loads_total == 1


def test_keep_alive_zero_unloads_so_next_request_loads_again(sim) -> None:
    base_url = sim(speed=20)
    first = _generate(base_url, keep_alive=0)
    _wait_for(lambda: httpx.get(f"{base_url}/api/ps").json()["models"] == [])
    warm_check = _generate(base_url)
    warm = _generate(base_url)
    assert first["load_duration"] > 10 * warm["load_duration"]
    assert warm_check["load_duration"] > 10 * warm["load_duration"]


def test_keep_alive_duration_expires_and_negative_never_does(sim) -> None:
    base_url = sim(speed=100)
    _generate(base_url, keep_alive="1s")  # 10 ms of wall time at speed 100
    _wait_for(lambda: httpx.get(f"{base_url}/api/ps").json()["models"] == [])
    _generate(base_url, keep_alive=-1)
    time.sleep(0.2)  # 20 simulated seconds: longer than any finite keep_alive used here
    models = httpx.get(f"{base_url}/api/ps").json()["models"]
    assert [m["name"] for m in models] == [SMALL] and models[0]["expires_at"] > "2100"


def test_different_num_ctx_reloads_the_runner(sim) -> None:
    base_url = sim(speed=20)
    _generate(base_url)
    same = _generate(base_url)
    reloaded = _generate(base_url, options={"num_ctx": 8192, "num_predict": 2})
    assert reloaded["load_duration"] > 10 * same["load_duration"]
    models = httpx.get(f"{base_url}/api/ps").json()["models"]
    assert [m["context_length"] for m in models] == [8192]


def test_max_loaded_models_evicts_least_recently_used(sim) -> None:
    base_url = sim(speed=50, env={"OLLAMA_MAX_LOADED_MODELS": "2"})
    _generate(base_url, "qwen2.5:0.5b")
    _generate(base_url, "llama3.2:1b")
    _generate(base_url, "qwen2.5:0.5b")  # now llama3.2:1b is the least recently used
    _generate(base_url, "llama3.2:3b")
    names = sorted(m["name"] for m in httpx.get(f"{base_url}/api/ps").json()["models"])
    assert names == ["llama3.2:3b", "qwen2.5:0.5b"]


def test_load_only_requests_load_and_unload(sim) -> None:
    base_url = sim(speed=50)
    loaded = httpx.post(f"{base_url}/api/generate", json={"model": SMALL}, timeout=30).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    assert [m["name"] for m in httpx.get(f"{base_url}/api/ps").json()["models"]] == [SMALL]
    unloaded = httpx.post(f"{base_url}/api/chat", json={"model": SMALL, "messages": [], "keep_alive": 0}, timeout=30).json()
    assert unloaded["done_reason"] == "unload" and unloaded["message"] == {"role": "assistant", "content": ""}
    _wait_for(lambda: httpx.get(f"{base_url}/api/ps").json()["models"] == [])


def test_embedding_models_run_one_slot(sim) -> None:
    base_url = sim(speed=50, env={"OLLAMA_NUM_PARALLEL": "4"})
    httpx.post(f"{base_url}/api/embed", json={"model": "nomic-embed-text", "input": "x"}, timeout=30).raise_for_status()
    runner = simulator_for(base_url).scheduler.loaded["nomic-embed-text:latest"]
    assert runner.num_parallel == 1


def test_openai_surface_ignores_keep_alive_and_num_ctx(sim) -> None:
    base_url = sim(speed=50, env={"OLLAMA_CONTEXT_LENGTH": "2048"})
    body = {"model": SMALL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "keep_alive": 0, "num_ctx": 9000}
    httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=30).raise_for_status()
    models = httpx.get(f"{base_url}/api/ps").json()["models"]
    assert [(m["name"], m["context_length"]) for m in models] == [(SMALL, 2048)]


def test_client_leaving_mid_stream_frees_its_slot_and_lets_the_model_expire(sim) -> None:
    base_url = sim(speed=5, env={"OLLAMA_NUM_PARALLEL": "1"})
    body = {"model": SMALL, "prompt": "long answer please", "keep_alive": "1s"}
    with httpx.stream("POST", f"{base_url}/api/generate", json=body, timeout=60) as response:
        next(response.iter_lines())  # one token, then hang up
    runner = simulator_for(base_url).scheduler.loaded[SMALL]
    _wait_for(lambda: runner.generating == 0 and runner.ref_count == 0)
    follow_up = _generate(base_url, keep_alive="1s")  # the single slot is free again
    assert follow_up["eval_count"] == 3
    _wait_for(lambda: httpx.get(f"{base_url}/api/ps").json()["models"] == [])
