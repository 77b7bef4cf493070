"""Nothing ends an endless answer no more: a total per-request deadline (derived from max_tokens
and timeout_s, or the scenario's load.request_deadline_s) and a cap on chunks past max_tokens end
a server that streams forever, drips a byte every 0.5 s or sends only `: ping` (issue 26, class 2)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.clients import send
from bench.clients._exchange import request_deadline_s
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
@pytest.mark.parametrize("mode,surface", [("drip", "native"), ("ping", "openai"), ("forever", "native")])
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
