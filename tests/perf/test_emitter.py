"""The lean emitter speaks Ollama's wire formats: bench's real clients parse it, and its emit log
lines up with what they saw."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from bench import clients
from bench.clients.base import RequestSpec
from bench.perf.accuracy import read_emit_log, timing_errors
from bench.perf.drive import closed_loop, http_client, request_nonce
from bench.perf.emitter_proc import EmitterProcess, running_emitter
from bench.sim.emitter import request_id


@pytest.fixture(scope="module")
def emitter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmitterProcess]:
    log = tmp_path_factory.mktemp("emit") / "emit.jsonl"
    with running_emitter(tokens=7, emit_log=log) as process:
        yield process


def _send(base_url: str, spec: RequestSpec, transport: str = "httpx"):
    async def go():
        http = http_client(base_url, 4, 30.0, transport)
        try:
            return await clients.send(http, spec, 0.0)
        finally:
            await http.aclose()
    return asyncio.run(go())


@pytest.mark.parametrize("transport", ["httpx", "fast"])
@pytest.mark.parametrize(("surface", "endpoint"), [("native", "chat"), ("native", "generate"),
                                                   ("openai", "chat")])
def test_real_clients_read_every_emitted_token(emitter: EmitterProcess, surface: str,
                                               endpoint: str, transport: str) -> None:
    spec = RequestSpec(cell_id="t", request_index=0, surface=surface, endpoint=endpoint,  # type: ignore[arg-type]
                       model="m", prompt="[x1] hi", max_tokens=5, store_text=True)
    record = _send(emitter.base_url, spec, transport)
    assert record.error_class is None, record.error_message
    assert record.output_tokens == 5
    assert len(record.chunk_times_s) == 5
    assert record.done_reason == "length"
    assert record.output_text == " tok0 tok1 tok2 tok3 tok4"


def test_without_a_cap_the_emitter_streams_its_default_token_count(emitter: EmitterProcess) -> None:
    spec = RequestSpec(cell_id="t", request_index=1, surface="openai", endpoint="chat",
                       model="m", prompt="hi")
    record = _send(emitter.base_url, spec)
    assert record.error_class is None
    assert (record.output_tokens, record.done_reason, len(record.chunk_times_s)) == (7, "stop", 7)


def test_emitter_answers_root_like_ollama(emitter: EmitterProcess) -> None:
    response = httpx.get(emitter.base_url + "/")
    assert (response.status_code, response.text) == (200, "Ollama is running")


@pytest.mark.parametrize("transport", ["httpx", "fast"])
def test_emit_log_lines_up_with_client_records(emitter: EmitterProcess, transport: str) -> None:
    step, records, clock = asyncio.run(closed_loop(
        emitter.base_url, "native", 4, tokens=6, requests=12, warmup=False,
        cell_id=f"acc-{transport}", options={"emit_itl_ms": 2, "emit_ttft_ms": 3},
        transport=transport))
    httpx.post(emitter.base_url + "/emitter/flush")
    assert emitter.emit_log is not None
    emitted = read_emit_log(emitter.emit_log)
    errors = timing_errors(records, clock.t0, emitted,
                           lambda r: request_nonce(r.cell_id, r.repeat, r.request_index))
    assert step.ok == 12
    assert (errors["matched"], errors["unmatched"], errors["count_mismatch"]) == (12, 0, 0)
    assert errors["itl_error"]["n"] == 12 * 5
    # Same clock on both sides: the emitter cannot have read a request before it was stamped sent.
    assert errors["request_lag"]["n"] == 12 and errors["request_lag"]["min_ms"] >= 0
    for record in records:
        entry = emitted[request_nonce(record.cell_id, record.repeat, record.request_index)]
        assert len(entry["token_emit_s"]) == len(record.chunk_times_s) == 6
        # Cause before effect on the one clock: the emitter read the request after the client
        # stamped it sent, and the client saw the first token after the emitter read the request.
        # (Not "TTFT >= emit_ttft_ms": uvloop's timers run off a cached loop time and may fire
        # up to a loop iteration early.)
        assert record.first_token_s is not None and record.sent_s is not None
        assert clock.t0 + record.sent_s < entry["received_s"] < clock.t0 + record.first_token_s
        # Stamps taken at each read's arrival keep their order: head, then tokens, then the end.
        assert record.headers_s is not None and record.end_s is not None
        assert record.sent_s <= record.headers_s <= record.first_token_s <= record.end_s
        assert record.chunk_times_s == sorted(record.chunk_times_s)


def test_request_id_prefers_header_then_prompt_nonce() -> None:
    assert request_id("abc", "[n1] hi") == "abc"
    assert request_id(None, "[n1] hi") == "n1"
    assert request_id(None, "no nonce") == request_id(None, "no nonce")
    assert request_id(None, "no nonce") != request_id(None, "other prompt")
