"""Both clients end to end against the in-process simulator (bench.sim.testing.running_sim)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable

import pandas as pd
import pytest
from clients_transcripts import spec

from bench.clients import send
from bench.clients.http import make_http_client
from bench.analysis.metrics import cell_summary
from bench.records import RequestRecord


def _send_all(base_url: str, specs: list, concurrency: int = 8) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        t0 = time.monotonic()
        async with make_http_client(base_url, "sk-ignored", concurrency) as http:
            return list(await asyncio.gather(*(send(http, s, t0) for s in specs)))

    return asyncio.run(go())


@pytest.mark.parametrize(("surface", "endpoint"), [
    ("native", "chat"), ("native", "generate"), ("openai", "chat"), ("openai", "completions"),
])
def test_streams_from_the_simulator_are_timed_and_counted(
    sim: Callable[..., str], surface: str, endpoint: str
) -> None:
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "2"})
    specs = [spec(surface, endpoint, model="llama3.2:1b", request_index=i, max_tokens=16,
                  prompt=f"request {i}: tell me a story", seed=i) for i in range(4)]
    records = _send_all(base_url, specs)
    for record in records:
        assert record.ok, (record.error_class, record.error_message)
        assert record.output_tokens is not None and 0 < record.output_tokens <= 16
        assert record.prompt_tokens and record.prompt_tokens > 0
        assert len(record.chunk_times_s) >= 1
        assert record.sent_s <= record.first_token_s <= record.end_s
        assert record.chunk_times_s == sorted(record.chunk_times_s)
        if surface == "native":
            assert record.total_duration_ns and record.eval_duration_ns is not None
    summary = cell_summary(pd.DataFrame([dataclasses.asdict(r) for r in records]))
    assert summary.loc["c0"].ok == 4 and summary.loc["c0"].output_tps > 0


@pytest.mark.parametrize("surface", ["native", "openai"])
def test_embeddings_and_unknown_models_against_the_simulator(
    sim: Callable[..., str], surface: str
) -> None:
    base_url = sim(speed=50.0)
    good, missing = _send_all(base_url, [
        spec(surface, "embed", model="nomic-embed-text:latest"),
        spec(surface, "chat", model="no-such-model:1b", request_index=1),
    ])
    assert good.ok and good.prompt_tokens
    assert missing.error_class == "client_error" and missing.status == 404
    assert "not found" in missing.error_message


def test_cold_burst_beyond_the_queue_is_rejected(sim: Callable[..., str]) -> None:
    # ollama-protocol.md: a burst of N > Q + 2 at a cold model serves Q + 2 and rejects the rest.
    base_url = sim(speed=50.0, env={"OLLAMA_MAX_QUEUE": "2"})
    specs = [spec("native", "chat", model="llama3.2:1b", request_index=i, max_tokens=4,
                  prompt=f"burst {i}") for i in range(10)]
    records = _send_all(base_url, specs, concurrency=10)
    classes = [r.error_class for r in records]
    assert classes.count("rejected") >= 1
    assert all(c in (None, "rejected") for c in classes)
    rejected = next(r for r in records if r.error_class == "rejected")
    assert rejected.status == 503 and "maximum pending requests exceeded" in rejected.error_message
