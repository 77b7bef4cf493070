"""The native client (NDJSON) against recorded-shape Ollama transcripts on a MockTransport."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from clients_transcripts import (
    JSON,
    QUEUE_FULL_BODY,
    STALL,
    Script,
    line,
    native_chat_done,
    native_chat_line,
    native_generate_done,
    native_generate_line,
    run_send,
    spec,
)

from bench.clients import native
from bench.clients import send as dispatch_send
from bench.clients.http import make_http_client


def test_streamed_chat_records_every_token_time_and_server_metrics() -> None:
    script = Script(parts=[
        native_chat_line("Hel"), 0.05, native_chat_line("lo"), 0.05, native_chat_line("!"),
        native_chat_done(),
    ])
    record = run_send(native.send, script, spec(max_tokens=3, num_ctx=8192, temperature=0.0,
                                                seed=42, keep_alive="5m"))
    assert record.ok and record.status == 200
    assert record.done_reason == "stop"
    assert (record.prompt_tokens, record.output_tokens) == (26, 3)
    assert record.load_duration_ns == 2_100_000
    assert record.prompt_eval_duration_ns == 130_000_000
    assert record.eval_duration_ns == 60_000_000
    assert record.total_duration_ns == 512_000_000
    assert len(record.chunk_times_s) == 3
    assert record.first_token_s == record.chunk_times_s[0] == record.first_content_s
    # Stamped on arrival: the scripted 50 ms pauses show between the chunks.
    assert record.chunk_times_s[1] - record.chunk_times_s[0] >= 0.04
    assert record.chunk_times_s[2] - record.chunk_times_s[1] >= 0.04
    assert record.sent_s <= record.headers_s <= record.first_token_s <= record.end_s
    assert record.output_chars == len("Hello!")
    assert record.output_text is None and record.prompt_text is None  # nothing stored by default
    body = script.sent_body()
    assert body == {
        "model": "llama3.2", "messages": [{"role": "user", "content": "Say hello"}],
        "stream": True, "options": {"num_predict": 3, "num_ctx": 8192, "temperature": 0.0,
                                    "seed": 42}, "keep_alive": "5m",
    }
    assert script.requests[-1].url.path == "/api/chat"


def test_stored_text_is_kept_only_when_asked() -> None:
    script = Script(parts=[native_chat_line("Hel"), native_chat_line("lo"), native_chat_done()])
    record = run_send(native.send, script, spec(store_text=True))
    assert record.output_text == "Hello" and record.prompt_text == "Say hello"


def test_lines_split_across_reads_and_batched_in_one_read_are_both_parsed() -> None:
    whole = native_chat_line("a") + native_chat_line("b") + native_chat_done()
    script = Script(parts=[whole[:10], whole[10:70], whole[70:]])
    record = run_send(native.send, script, spec())
    assert record.ok and len(record.chunk_times_s) == 2 and record.output_chars == 2


def test_thinking_chunk_counts_as_first_token_but_not_first_content() -> None:
    script = Script(parts=[
        native_chat_line("", thinking="Let me think"), 0.05, native_chat_line("Hi"),
        native_chat_done(),
    ])
    record = run_send(native.send, script, spec())
    assert record.ok
    assert record.first_token_s == record.chunk_times_s[0]
    assert record.first_content_s == record.chunk_times_s[1]
    assert record.first_content_s - record.first_token_s >= 0.04


def test_empty_content_line_is_not_a_token() -> None:
    script = Script(parts=[native_chat_line(""), 0.05, native_chat_line("Hi"), native_chat_done()])
    record = run_send(native.send, script, spec())
    assert len(record.chunk_times_s) == 1 and record.first_token_s - record.headers_s >= 0.04


def test_streamed_generate_reads_response_field_and_sends_prompt() -> None:
    script = Script(parts=[native_generate_line("Once"), native_generate_line(" upon"),
                           native_generate_done()])
    record = run_send(native.send, script, spec(endpoint="generate", system="Be brief",
                                                format="json"))
    assert record.ok and record.done_reason == "length" and len(record.chunk_times_s) == 2
    body = script.sent_body()
    assert script.requests[-1].url.path == "/api/generate"
    assert body["prompt"] == "Say hello" and body["system"] == "Be brief"
    assert body["format"] == "json" and body["stream"] is True


def test_non_streaming_chat_has_one_chunk_at_the_end() -> None:
    body = (b'{"model":"llama3.2","created_at":"2026-01-01T00:00:01Z","message":{"role":'
            b'"assistant","content":"Hello!"},"done":true,"done_reason":"stop",'
            b'"total_duration":512000000,"load_duration":0,"prompt_eval_count":26,'
            b'"prompt_eval_duration":130000000,"eval_count":3,"eval_duration":60000000}')
    script = Script(headers=JSON, parts=[body])
    record = run_send(native.send, script, spec(stream=False))
    assert record.ok and record.output_tokens == 3 and record.load_duration_ns == 0
    assert record.chunk_times_s == [record.end_s] and record.first_token_s == record.end_s
    assert script.sent_body()["stream"] is False


def test_embed_records_prompt_tokens_and_durations() -> None:
    body = (b'{"model":"nomic-embed-text","embeddings":[[0.1,0.2]],"total_duration":14000000,'
            b'"load_duration":1000000,"prompt_eval_count":8}')
    script = Script(headers=JSON, parts=[body])
    record = run_send(native.send, script, spec(endpoint="embed", max_tokens=5, num_ctx=2048))
    assert record.ok and record.prompt_tokens == 8 and record.total_duration_ns == 14_000_000
    assert record.first_token_s is None and record.output_tokens is None
    assert script.requests[-1].url.path == "/api/embed"
    assert script.sent_body() == {"model": "llama3.2", "input": "Say hello",
                                  "options": {"num_ctx": 2048}}


def test_queue_full_503_is_rejected_with_server_text() -> None:
    script = Script(status=503, headers=JSON, parts=[QUEUE_FULL_BODY])
    record = run_send(native.send, script, spec())
    assert record.error_class == "rejected" and record.status == 503
    assert "maximum pending requests exceeded" in record.error_message
    assert record.end_s is not None and record.first_token_s is None


def test_unknown_model_404_is_client_error() -> None:
    script = Script(status=404, headers=JSON,
                    parts=[b'{"error":"model \\"nope\\" not found, try pulling it first"}'])
    record = run_send(native.send, script, spec(model="nope"))
    assert record.error_class == "client_error" and record.status == 404
    assert record.error_message == 'model "nope" not found, try pulling it first'


def test_500_is_server_error_and_long_messages_are_truncated() -> None:
    script = Script(status=500, headers=JSON, parts=[line({"error": "x" * 2000})])
    record = run_send(native.send, script, spec())
    assert record.error_class == "server_error" and len(record.error_message) <= 500


def test_error_line_inside_a_200_stream_is_server_error_keeping_partial_timings() -> None:
    script = Script(parts=[native_chat_line("Hel"), line({"error": "llama runner process has terminated"})])
    record = run_send(native.send, script, spec())
    assert record.error_class == "server_error" and record.status == 200
    assert record.error_message == "llama runner process has terminated"
    assert len(record.chunk_times_s) == 1 and record.end_s >= record.first_token_s


def test_stream_closed_cleanly_without_done_is_bad_stream() -> None:
    script = Script(parts=[native_chat_line("Hel"), native_chat_line("lo")])
    record = run_send(native.send, script, spec())
    assert record.error_class == "bad_stream" and "done" in record.error_message
    assert len(record.chunk_times_s) == 2


@pytest.mark.parametrize("repeats,named", [(31, True), (30, False)])
def test_a_stream_cut_by_ollamas_token_repeat_limit_is_named(repeats: int, named: bool) -> None:
    # Recorded from Ollama 0.33.0 (tiny-llama3.2-1b, chat-prompt-cache, temperature 0): "ource",
    # then " sigma" 31 times, then the 200 body ends: no done line, no error line
    # (llm/llama_server.go aborts on the 31st repeat before forwarding it).
    script = Script(parts=[native_chat_line("ource")] + [native_chat_line(" sigma")] * repeats)
    record = run_send(native.send, script, spec())
    assert record.error_class == "bad_stream" and record.status == 200
    message = record.error_message or ""
    assert f"without a done line after {repeats + 1} text chunks" in message
    assert (f"the last {repeats} were all 'sigma'" in message) is named
    assert ("token repeat limit" in message) is named
    assert len(record.chunk_times_s) == repeats + 1 and record.output_tokens is None


def test_a_whole_answer_that_never_finished_is_bad_stream() -> None:
    # Ollama 0.33's stream: false answer when the token repeat limit ended the generation.
    body = line({"model": "llama3.2", "created_at": "2026-01-01T00:00:00.1Z",
                 "message": {"role": "assistant", "content": "ource sigma sigma"}, "done": False})
    record = run_send(native.send, Script(headers=JSON, parts=[body]), spec(stream=False))
    assert record.error_class == "bad_stream" and record.status == 200
    assert "no done: true: the completion did not finish" in (record.error_message or "")


def test_connection_dropped_mid_stream_is_disconnected() -> None:
    script = Script(parts=[native_chat_line("Hel"), httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body")])
    record = run_send(native.send, script, spec())
    assert record.error_class == "disconnected" and len(record.chunk_times_s) == 1
    assert "peer closed" in record.error_message


def test_malformed_line_is_bad_stream() -> None:
    script = Script(parts=[native_chat_line("Hel"), b"{not json\n", native_chat_done()])
    record = run_send(native.send, script, spec())
    assert record.error_class == "bad_stream" and "not JSON" in record.error_message


def test_stream_that_stalls_past_the_timeout_is_timeout_with_partial_timings() -> None:
    script = Script(parts=[native_chat_line("Hel"), STALL])
    started = time.monotonic()
    record = run_send(native.send, script, spec(timeout_s=0.3))
    assert record.error_class == "timeout" and "0.3" in record.error_message
    assert len(record.chunk_times_s) == 1
    assert record.end_s - record.chunk_times_s[0] >= 0.29
    assert time.monotonic() - started < 30  # it gave up rather than hanging


def test_slow_but_steady_stream_is_not_a_timeout() -> None:
    # Each gap is under the idle limit though the whole request takes longer than it.
    parts: list[object] = []
    for _ in range(6):
        parts += [native_chat_line("x"), 0.1]
    script = Script(parts=[*parts, native_chat_done()])
    record = run_send(native.send, script, spec(timeout_s=0.35))
    assert record.ok and record.end_s - record.sent_s > 0.35


def test_server_holding_the_body_open_after_done_still_counts_as_success() -> None:
    script = Script(parts=[native_chat_line("Hi"), native_chat_done(), STALL])
    record = run_send(native.send, script, spec(timeout_s=30.0))
    assert record.ok and record.output_tokens == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_disconnected() -> None:
    async def go() -> object:
        async with make_http_client(f"http://127.0.0.1:{_closed_port()}", None, 4) as http:
            return await dispatch_send(http, spec(), time.monotonic())

    record = asyncio.run(go())
    assert record.error_class == "disconnected" and record.status is None
    assert record.sent_s is not None and record.end_s is not None


def test_record_carries_the_spec_identity() -> None:
    script = Script(parts=[native_chat_line("Hi"), native_chat_done()])
    record = run_send(native.send, script, spec(repeat=2, phase="warmup", worker=3,
                                                scheduled_s=1.5), t0=time.monotonic() - 2.0)
    assert (record.cell_id, record.request_index, record.repeat) == ("c0", 7, 2)
    assert (record.phase, record.worker, record.scheduled_s) == ("warmup", 3, 1.5)
    assert record.sent_s >= 2.0  # relative to the run's t0
    assert record.prompt_chars == len("Say hello")


def test_make_http_client_sends_bearer_key_and_sizes_the_pool() -> None:
    http = make_http_client("http://127.0.0.1:1", "sk-test", 1024, transport="httpx")
    try:
        assert http.headers["Authorization"] == "Bearer sk-test"
        pool = http._transport._pool  # type: ignore[attr-defined]
        assert pool._max_connections >= 1024 and pool._max_keepalive_connections >= 1024
    finally:
        asyncio.run(http.aclose())
    lean = make_http_client("http://127.0.0.1:1", "sk-test", 1024)  # auto: the lean transport
    try:
        assert lean.headers["Authorization"] == "Bearer sk-test"
        assert lean._transport._slots._value >= 1024  # type: ignore[attr-defined]
    finally:
        asyncio.run(lean.aclose())
    assert "Authorization" not in make_http_client("http://x", None, 1).headers


@pytest.mark.parametrize("endpoint", ["completions"])
def test_native_surface_refuses_endpoints_it_does_not_have(endpoint: str) -> None:
    with pytest.raises(ValueError):
        native.build_body(spec(endpoint=endpoint))
