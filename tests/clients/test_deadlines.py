"""Nothing ends an endless answer no more: a total per-request deadline (derived from max_tokens
and timeout_s, or the scenario's load.request_deadline_s) and a cap on chunks past max_tokens end
a server that streams forever (every 10 ms, or without pause), drips a byte every 0.5 s or sends only
`: ping` (issue 26, class 2); a line that never ends stops at the 16 MiB line cap."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.clients import send
from bench.clients._exchange import max_chunks, request_deadline_s
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client


def _send(url: str, spec: RequestSpec, transport: str):  # noqa: ANN202 - a RequestRecord
    async def go():  # noqa: ANN202
        async with make_http_client(url, None, 1, spec.timeout_s, transport) as http:
            return await send(http, spec, time.monotonic())

    return asyncio.run(go())


def _spec(surface: str, **fields: object) -> RequestSpec:
    return RequestSpec(cell_id="c", request_index=0, surface=surface, endpoint="chat",  # type: ignore[arg-type]
                       model="m", prompt="hi", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("transport", ["fast", "httpx"])
# flood: whole chunks as fast as the socket takes them, which once kept the fast transport's reader
# running without ever letting the event loop (and so the deadline's timer) run: a hang.
@pytest.mark.parametrize("mode,surface", [("drip", "native"), ("ping", "openai"), ("forever", "native"),
                                          ("flood", "native")])
def test_an_endless_answer_ends_at_the_request_deadline(endless, mode: str, surface: str,  # noqa: ANN001
                                                        transport: str) -> None:
    server = endless(mode)
    # No max_tokens: only the deadline can end `forever`; the idle limit (30 s) never fires first.
    record = _send(server.url, _spec(surface, timeout_s=30.0, deadline_s=1.5), transport)
    assert record.error_class == "timeout", record
    assert "request deadline of 1.5 s" in (record.error_message or "")
    assert record.end_s is not None and record.end_s < 25.0  # the idle limit did not end it


@pytest.mark.parametrize("transport", ["fast", "httpx"])
def test_chunks_far_past_max_tokens_are_a_bad_stream(endless, transport: str) -> None:  # noqa: ANN001
    server = endless("forever")
    record = _send(server.url, _spec("native", timeout_s=30.0, max_tokens=4), transport)
    assert record.error_class == "bad_stream", record
    assert "max_tokens" in (record.error_message or "")
    assert len(record.chunk_times_s) == 2 * 4 + 64  # what arrived before the cap is kept


def test_the_default_deadline_grows_with_max_tokens_and_is_capped() -> None:
    assert request_deadline_s(_spec("native", timeout_s=10.0, max_tokens=100)) == 110.0
    assert request_deadline_s(_spec("native", timeout_s=10.0, num_ctx=2048)) == 2058.0
    assert request_deadline_s(_spec("native", timeout_s=10.0)) == 10.0 + 4096
    assert request_deadline_s(_spec("native", timeout_s=600_000.0, max_tokens=10**6)) == 7 * 24 * 3600.0
    assert request_deadline_s(_spec("native", timeout_s=10.0, max_tokens=100, deadline_s=5.0)) == 5.0


@pytest.mark.parametrize("transport", ["fast", "httpx"])
@pytest.mark.parametrize("mode,surface,says", [
    ("line", "native", "an NDJSON line longer than 16777216 bytes"),
    ("sse-line", "openai", "an SSE line longer than 16777216 bytes"),
    ("sse-event", "openai", "an SSE event with more than 16777216 bytes of data"),
])
def test_a_line_that_never_ends_is_a_bad_stream_at_the_line_cap(endless, mode: str, surface: str,  # noqa: ANN001
                                                                  says: str, transport: str) -> None:
    server = endless(mode)
    # A deadline far off: only the line cap (MAX_LINE_BYTES, 16 MiB) can end it as a bad_stream.
    record = _send(server.url, _spec(surface, timeout_s=300.0, deadline_s=600.0), transport)
    assert record.error_class == "bad_stream", record
    assert says in (record.error_message or ""), record.error_message


@pytest.mark.parametrize("transport", ["fast", "httpx"])
@pytest.mark.parametrize("surface", ["native", "openai"])
def test_an_error_body_that_never_ends_is_read_only_for_its_message(endless, surface: str,  # noqa: ANN001
                                                                    transport: str) -> None:
    server = endless("error-body")
    record = _send(server.url, _spec(surface, timeout_s=300.0, deadline_s=600.0), transport)
    assert record.error_class == "server_error" and record.status == 500, record
    assert len(record.error_message or "") <= 500


@pytest.mark.parametrize("transport", ["fast", "httpx"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_whole_body_that_never_ends_is_a_bad_stream_at_the_cap(endless, transport: str, stream: bool) -> None:  # noqa: ANN001
    server = endless("line")  # NDJSON bytes without a newline: as a whole body, one endless document
    record = _send(server.url, _spec("native", timeout_s=300.0, deadline_s=600.0, stream=stream), transport)
    assert record.error_class == "bad_stream", record
    assert "16777216 bytes" in (record.error_message or ""), record.error_message


@pytest.mark.parametrize("transport", ["fast", "httpx"])
def test_chunks_without_max_tokens_stop_at_ollamas_own_bound(endless, transport: str) -> None:  # noqa: ANN001
    """No max_tokens: the cap is Ollama's bound for an open-ended answer, 10 x num_ctx tokens
    (llm/llama_server.go boundedNumPredict), so a flood ends there and not only at the deadline."""
    server = endless("forever")
    record = _send(server.url, _spec("native", timeout_s=30.0, num_ctx=8), transport)
    assert record.error_class == "bad_stream", record
    assert "more than 224 chunks" in (record.error_message or "")
    assert len(record.chunk_times_s) == 2 * 10 * 8 + 64


def test_the_chunk_cap_without_num_ctx_is_ollamas_largest_default_context() -> None:
    assert max_chunks(_spec("native", max_tokens=100)) == 264
    assert max_chunks(_spec("native", num_ctx=4096)) == 2 * 10 * 4096 + 64
    assert max_chunks(_spec("native")) == 2 * 10 * 262_144 + 64
