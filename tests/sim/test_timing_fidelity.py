"""Timing fidelity: no transport-level delay floor, and server-reported durations follow --speed."""

from __future__ import annotations

import socket

import httpx
import pytest

from bench.sim.testing import accepted_sockets, running_sim
from polling import wait_for

MODEL = "qwen2.5:0.5b"


def test_reused_connections_have_nagle_off_so_first_chunks_are_not_held_for_delayed_acks(sim) -> None:
    # With Nagle on, a stream's first small chunk, written while the response headers are still
    # unacknowledged, waits for the client's delayed ACK: a ~40 ms TTFT floor on keep-alive reuse.
    base_url = sim(speed=100)
    body = {"model": MODEL, "prompt": "hi", "options": {"num_predict": 2}}
    with httpx.Client(timeout=30) as client:
        for _ in range(2):  # the second request reuses the pooled connection
            with client.stream("POST", f"{base_url}/api/generate", json=body) as response:
                assert [line for line in response.iter_lines() if line]
        wait_for(lambda: len(accepted_sockets(base_url)) == 1)
        (server_side,) = accepted_sockets(base_url)
        assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _cold_durations(speed: float) -> dict[str, int]:
    body = {"model": MODEL, "prompt": "a short prompt", "stream": False, "options": {"num_predict": 8}}
    with running_sim(speed=speed, seed=7) as base_url:
        final = httpx.post(f"{base_url}/api/generate", json=body, timeout=60).json()
    assert final["eval_count"] == 8
    return {key: final[key] for key in ("load_duration", "prompt_eval_duration", "eval_duration", "total_duration")}


def test_server_reported_durations_scale_with_speed() -> None:
    slow, fast = _cold_durations(1.0), _cold_durations(4.0)
    # Prompt processing and decoding report the simulated hardware's time, so they scale exactly,
    # however late the event loop wakes up (sub-millisecond prefill included). Durations are whole
    # nanoseconds, so four times the fast one carries up to 4 ns of rounding.
    assert slow["prompt_eval_duration"] == pytest.approx(4 * fast["prompt_eval_duration"], rel=1e-6, abs=4)
    assert slow["eval_duration"] == pytest.approx(4 * fast["eval_duration"], rel=1e-6, abs=4)
    # load_duration also covers the request's handling before the load starts (as in Ollama,
    # which starts the clock on arrival): well under a millisecond against 1.1 s and 0.28 s.
    assert slow["load_duration"] == pytest.approx(4 * fast["load_duration"], rel=0.05)
    for durations in (slow, fast):
        parts = durations["load_duration"] + durations["prompt_eval_duration"] + durations["eval_duration"]
        assert durations["total_duration"] >= parts


def test_ps_context_length_is_per_slot_num_ctx_not_runner_context(sim) -> None:
    # Ollama: PsHandler reports llama.ContextLength() = options.NumCtx, the per-request num_ctx;
    # the runner's KV holds num_ctx × NUM_PARALLEL (llm/server.go KvSize), which size reflects.
    base_url = sim(speed=200, env={"OLLAMA_NUM_PARALLEL": "4"})
    body = {"model": MODEL, "prompt": "x", "stream": False, "options": {"num_ctx": 8192, "num_predict": 1}}
    httpx.post(f"{base_url}/api/generate", json=body, timeout=30).raise_for_status()
    (entry,) = httpx.get(f"{base_url}/api/ps").json()["models"]
    assert entry["context_length"] == 8192
