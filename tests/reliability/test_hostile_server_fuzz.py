"""Hostile servers, fuzzed (issue 26): every reader of a server's JSON (/api/show, /api/ps,
/api/version, /v1/models, a stream's final metrics) given generated bodies of any shape, depth,
size and number ends in a typed value or a one-line TargetError / recorded error class, never an
exception that would end a thread or a run with exit 70.

MockTransport answers in-process: a few hundred bodies per reader fit a 2-core CI.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import TargetError
from bench.records import ERROR_CLASSES
from bench.run.targets import identify_server
from bench.telemetry.ollama_ps import PsPoller
from bench.telemetry.server_info import show_model

CASES = int(os.environ.get("BENCH_CLI_FUZZ_CASES", "200"))
SETTINGS = settings(max_examples=CASES, deadline=None,
                    derandomize=os.environ.get("BENCH_CLI_FUZZ_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMBERS = st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                    st.sampled_from([-1, 0, 1e308, -1e308, 2**62 + 1, 5e-324, True]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30))
KEYS = st.sampled_from(["models", "model_info", "details", "capabilities", "version", "data", "id", "name",
                        "model", "size", "size_vram", "context_length", "expires_at", "general.architecture",
                        "llama.block_count", "eval_count", "x"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(KEYS, inner, max_size=5)),
                      max_leaves=20)


def _deep(depth: int) -> bytes:
    return b'{"models": ' + b"[" * depth + b"]" * depth + b"}"


BODIES = st.one_of(
    VALUES.map(lambda value: orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)),
    st.integers(30, 100_000).map(_deep),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"{", b'{"models": [1e400]}', b'{"version": 1e999}', b"\xff\xfe",
                     b'{"model_info": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}"]),
)


def _transport(body: bytes, status: int = 200) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


@SETTINGS
@given(body=BODIES, need=st.booleans())
def test_fuzz_api_show_answers_are_a_dict_or_one_line(body: bytes, need: bool) -> None:
    try:
        shown = show_model("http://127.0.0.1:9", "m", transport=_transport(body), need_model_info=need)
    except TargetError as error:
        assert "\n" not in str(error) and len(str(error)) < 2_000
        return
    assert isinstance(shown, dict)
    assert isinstance(shown.get("model_info") or {}, dict) and isinstance(shown.get("details") or {}, dict)


@SETTINGS
@given(body=BODIES)
def test_fuzz_api_ps_answers_never_raise_and_keep_only_counts(body: bytes) -> None:
    poller = PsPoller(0.0, "http://127.0.0.1:9", transport=_transport(body))
    try:
        rows = poller.poll_once()
    finally:
        poller.stop()
    for row in rows:
        for value in (row.size_bytes, row.size_vram_bytes, row.context_length):
            assert value is None or (type(value) is int and 0 <= value <= 2**62)
    poller.to_table()  # what was kept fits its parquet schema


@SETTINGS
@given(version_body=BODIES, models_body=BODIES, version_status=st.sampled_from([200, 404]))
def test_fuzz_server_identification_is_an_identity_or_one_line(version_body: bytes, models_body: bytes,
                                                                version_status: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/version":
            return httpx.Response(version_status, content=version_body)
        return httpx.Response(200, content=models_body)

    real_client = httpx.AsyncClient

    def mocked(*args: Any, **kwargs: Any) -> httpx.AsyncClient:
        return real_client(*args, **{**kwargs, "transport": httpx.MockTransport(answer)})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx, "AsyncClient", mocked)
        try:
            identity = asyncio.run(identify_server("http://127.0.0.1:9"))
        except TargetError as error:
            assert "\n" not in str(error)
            return
    assert isinstance(identity.name, str) and all(isinstance(model, str) for model in identity.openai_models)


@SETTINGS
@given(metrics=st.dictionaries(st.sampled_from(["eval_count", "prompt_eval_count", "eval_duration",
                                                "prompt_eval_duration", "load_duration", "total_duration",
                                                "done_reason"]), NUMBERS, max_size=4))
def test_fuzz_final_metrics_are_recorded_counts_or_a_server_error(metrics: dict[str, Any]) -> None:
    from bench.clients import native
    from bench.clients.base import RequestSpec

    lines = [{"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False},
             {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, **metrics}]
    body = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    spec = RequestSpec(cell_id="c", request_index=0, surface="native", endpoint="chat", model="m",
                       prompt="p", timeout_s=10.0, max_tokens=3)

    async def send() -> Any:
        transport = httpx.MockTransport(lambda request: httpx.Response(
            200, content=body, headers={"content-type": "application/x-ndjson"}))
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as http:
            import time

            return await native.send(http, spec, time.monotonic())

    record = asyncio.run(send())
    assert record.error_class is None or record.error_class in ERROR_CLASSES
    for value in (record.output_tokens, record.prompt_tokens, record.eval_duration_ns, record.total_duration_ns):
        assert value is None or 0 <= value <= 2**62


# Streams (issue 26, second pass): how the reads split the bytes never changes what is decoded, and
# a line or event that never ends stops at the line cap as a recorded bad_stream.
EVENT_TEXT = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(body)) for cut in cuts})
    return [body[start:end] for start, end in zip([0, *points], [*points, len(body)])]


@SETTINGS
@given(events=st.lists(EVENT_TEXT, max_size=8), newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
       comments=st.booleans(), cuts=st.lists(st.integers(0, 600), max_size=12))
def test_fuzz_sse_events_do_not_depend_on_how_reads_split_the_bytes(events: list[str], newline: bytes,
                                                                     comments: bool, cuts: list[int]) -> None:
    from bench.clients.sse import SSEDataDecoder

    body = b"".join((b": ping" + newline if comments else b"") + b"event: x" + newline + b"data: "
                    + event.encode() + newline + newline for event in events)
    decoder = SSEDataDecoder()
    assert [data for piece in _split(body, cuts) for data in decoder.feed(piece)] == events


@SETTINGS
@given(pieces=st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([b"\n", b"\r\n", b"data: ", b": ping\n"])),
                       max_size=30))
def test_fuzz_sse_lines_past_the_cap_are_a_bad_stream_and_nothing_else(pieces: list[bytes]) -> None:
    from bench.clients._exchange import StreamFailure
    from bench.clients.sse import SSEDataDecoder

    decoder = SSEDataDecoder(max_bytes=64)
    try:
        for piece in pieces:
            decoder.feed(piece)
    except StreamFailure as failure:
        assert failure.error_class == "bad_stream"
        assert "longer than 64 bytes" in failure.message or "more than 64 bytes" in failure.message
        return
    longest = max((len(line) for line in b"".join(pieces).replace(b"\r", b"\n").split(b"\n")), default=0)
    assert longest <= 64 + 40  # a line that ended inside one read may pass the cap by that read


STREAM_PIECES = st.lists(st.one_of(
    st.sampled_from([b'{"message": {"content": "a"}, "done": false}\n', b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n',
                     b'{"done": true, "eval_count": 1}\n', b"data: [DONE]\n\n", b"\n", b": ping\n\n", b"a" * 4096,
                     b"data: " + b"b" * 4096]),
    st.binary(max_size=64)), max_size=40)


@SETTINGS
@given(pieces=STREAM_PIECES, surface=st.sampled_from(["native", "openai"]))
def test_fuzz_streamed_answers_end_as_a_record(pieces: list[bytes], surface: str) -> None:
    import time

    from bench.clients import native, openai
    from bench.clients.base import RequestSpec

    async def body():  # noqa: ANN202 - an async byte iterator
        for piece in pieces:
            yield piece

    content_type = "application/x-ndjson" if surface == "native" else "text/event-stream"
    spec = RequestSpec(cell_id="c", request_index=0, surface=surface, endpoint="chat",  # type: ignore[arg-type]
                       model="m", prompt="p", timeout_s=10.0, max_tokens=8)

    async def send() -> Any:
        transport = httpx.MockTransport(lambda request: httpx.Response(
            200, content=body(), headers={"content-type": content_type}))
        async with httpx.AsyncClient(base_url="http://127.0.0.1:9", transport=transport) as http:
            return await (native if surface == "native" else openai).send(http, spec, time.monotonic())

    with pytest.MonkeyPatch.context() as patch:
        import bench.clients._exchange as exchange
        import bench.clients.native as native_module
        import bench.clients.sse as sse

        # A small cap, so generated streams reach it: the same code path as 16 MiB.
        patch.setattr(native_module, "MAX_LINE_BYTES", 8192)
        patch.setattr(exchange, "MAX_LINE_BYTES", 8192)
        patch.setattr(sse.SSEDataDecoder.__init__, "__defaults__", (8192,))
        record = asyncio.run(send())
    assert record.error_class is None or record.error_class in ERROR_CLASSES
    assert record.end_s is not None
