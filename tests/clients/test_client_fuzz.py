"""Property tests: whatever bytes a server sends, both parsers return a classified record."""

from __future__ import annotations

import asyncio
import time

from clients_transcripts import (
    JSON,
    NDJSON,
    OPENAI_DONE,
    SSE,
    Script,
    native_chat_done,
    native_chat_line,
    openai_chunk,
    openai_usage_chunk,
    spec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.clients import native, openai
from bench.records import ERROR_CLASSES

NATIVE_GOOD = native_chat_line("Hel") + native_chat_line("lo") + native_chat_done()
OPENAI_GOOD = (openai_chunk("") + openai_chunk("Hel") + openai_chunk("", finish_reason="stop")
               + openai_usage_chunk() + OPENAI_DONE)


def _send_bytes(send: object, surface: str, endpoint: str, status: int,
                headers: dict[str, str], pieces: list[bytes], stream: bool = True) -> object:
    script = Script(status=status, headers=headers, parts=list(pieces))

    async def go() -> object:
        async with script.client() as http:
            return await send(http, spec(surface, endpoint, stream=stream, timeout_s=5.0),  # type: ignore[operator]
                              time.monotonic())

    return asyncio.run(go())


def _assert_classified(record: object) -> None:
    assert record.error_class is None or record.error_class in ERROR_CLASSES  # type: ignore[attr-defined]
    assert record.end_s is not None  # type: ignore[attr-defined]
    if record.error_class is not None:  # type: ignore[attr-defined]
        assert record.error_message  # type: ignore[attr-defined]


def _mutate(good: bytes) -> st.SearchStrategy[bytes]:
    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 8))):
            position = draw(st.integers(0, len(data)))
            action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            if action == "cut":
                del data[position:]
            elif action == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=12))
            elif action == "delete":
                del data[position:position + draw(st.integers(1, 20))]
            elif data:
                data[min(position, len(data) - 1)] = draw(st.integers(0, 255))
        return bytes(data)

    return mutated()


def _split(payload: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(payload) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(payload[start:point])
        start = point
    pieces.append(payload[start:])
    return [p for p in pieces if p]


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(payload=st.one_of(st.binary(max_size=400), _mutate(NATIVE_GOOD)),
       cuts=st.lists(st.integers(0, 10_000), max_size=4),
       endpoint=st.sampled_from(["chat", "generate", "embed"]),
       stream=st.booleans(), status=st.sampled_from([200, 200, 200, 404, 500, 503]))
def test_native_parser_never_raises_on_arbitrary_bytes(payload: bytes, cuts: list[int],
                                                       endpoint: str, stream: bool,
                                                       status: int) -> None:
    record = _send_bytes(native.send, "native", endpoint, status, NDJSON if stream else JSON,
                         _split(payload, cuts), stream)
    _assert_classified(record)


@SETTINGS
@given(payload=st.one_of(st.binary(max_size=400), _mutate(OPENAI_GOOD)),
       cuts=st.lists(st.integers(0, 10_000), max_size=4),
       endpoint=st.sampled_from(["chat", "completions", "embed"]),
       stream=st.booleans(), status=st.sampled_from([200, 200, 200, 400, 500, 503]))
def test_openai_parser_never_raises_on_arbitrary_bytes(payload: bytes, cuts: list[int],
                                                       endpoint: str, stream: bool,
                                                       status: int) -> None:
    record = _send_bytes(openai.send, "openai", endpoint, status, SSE if stream else JSON,
                         _split(payload, cuts), stream)
    _assert_classified(record)


def test_unmutated_transcripts_succeed_however_they_are_split() -> None:
    for cut in range(0, len(NATIVE_GOOD), 7):
        record = _send_bytes(native.send, "native", "chat", 200, NDJSON,
                             _split(NATIVE_GOOD, [cut, cut * 3]))
        assert record.ok and len(record.chunk_times_s) == 2  # type: ignore[attr-defined]
    for cut in range(0, len(OPENAI_GOOD), 11):
        record = _send_bytes(openai.send, "openai", "chat", 200, SSE,
                             _split(OPENAI_GOOD, [cut, cut * 3]))
        assert record.ok and record.output_tokens == 3  # type: ignore[attr-defined]
