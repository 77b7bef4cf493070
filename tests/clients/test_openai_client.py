"""The OpenAI-compatible client (SSE via bench.clients.sse) against recorded-shape transcripts."""

from __future__ import annotations

import time

import httpx
from clients_transcripts import (
    JSON,
    OPENAI_DONE,
    SSE,
    STALL,
    Script,
    event,
    openai_chunk,
    openai_usage_chunk,
    run_send,
    spec,
)

from bench.clients import openai


def _chat_stream(*extra_before_done: bytes) -> list[object]:
    return [
        openai_chunk(""),  # Ollama's first chunk may carry only the role
        0.05,
        openai_chunk("Hel"), openai_chunk("lo"), openai_chunk("!"),
        openai_chunk("", finish_reason="stop"),
        *extra_before_done,
        openai_usage_chunk(),
        OPENAI_DONE,
    ]


def test_streamed_chat_takes_counts_from_usage_and_skips_role_only_chunk() -> None:
    script = Script(headers=SSE, parts=_chat_stream())
    record = run_send(openai.send, script, spec("openai", "chat", max_tokens=3, temperature=0.5,
                                                seed=1))
    assert record.ok and record.status == 200
    assert (record.prompt_tokens, record.output_tokens) == (26, 3)
    assert record.done_reason == "stop"
    assert len(record.chunk_times_s) == 3
    # The role-only chunk arrived 50 ms before the first text: TTFT is the text's arrival.
    assert record.first_token_s - record.headers_s >= 0.04
    assert record.output_chars == len("Hello!")
    body = script.sent_body()
    assert script.requests[-1].url.path == "/v1/chat/completions"
    assert body == {"model": "llama3.2", "messages": [{"role": "user", "content": "Say hello"}],
                    "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 3,
                    "temperature": 0.5, "seed": 1}
    assert "keep_alive" not in body and "options" not in body  # only sent when the spec has them


def test_keep_alive_and_num_ctx_are_sent_where_guides_put_them() -> None:
    script = Script(headers=SSE, parts=_chat_stream())
    run_send(openai.send, script, spec("openai", "chat", keep_alive=0, num_ctx=8192,
                                       extra_options={"top_p": 0.9, "num_batch": 64}))
    body = script.sent_body()
    assert body["keep_alive"] == 0
    assert body["options"] == {"num_ctx": 8192, "num_batch": 64}
    assert body["top_p"] == 0.9


def test_response_format_maps_json_and_schema() -> None:
    script = Script(headers=SSE, parts=_chat_stream())
    run_send(openai.send, script, spec("openai", "chat", format="json"))
    assert script.sent_body()["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    run_send(openai.send, script, spec("openai", "chat", format=schema))
    response_format = script.sent_body()["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == schema


def test_reasoning_delta_counts_as_first_token_but_not_first_content() -> None:
    script = Script(headers=SSE, parts=[
        openai_chunk(reasoning="hmm"), 0.05, openai_chunk("Hi"),
        openai_chunk(finish_reason="stop"), openai_usage_chunk(completion_tokens=2), OPENAI_DONE,
    ])
    record = run_send(openai.send, script, spec("openai", "chat", store_text=True))
    assert record.ok and len(record.chunk_times_s) == 2
    assert record.first_token_s == record.chunk_times_s[0]
    assert record.first_content_s - record.first_token_s >= 0.04
    assert record.output_text == "Hi"


def test_streamed_completions_ignore_zeroed_usage_on_every_chunk() -> None:
    # Ollama's /v1/completions puts usage {0,0,0} on each chunk when include_usage is on.
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    def chunk(text: str, finish: str | None = None) -> bytes:
        return event({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                      "choices": [{"text": text, "index": 0, "finish_reason": finish}],
                      "usage": zero})

    script = Script(headers=SSE, parts=[
        chunk("Once"), chunk(" upon"), chunk("", "length"),
        event({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
               "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2,
                                        "total_tokens": 7}}),
        OPENAI_DONE,
    ])
    record = run_send(openai.send, script, spec("openai", "completions"))
    assert record.ok and record.done_reason == "length"
    assert (record.prompt_tokens, record.output_tokens) == (5, 2)
    assert script.requests[-1].url.path == "/v1/completions"
    assert script.sent_body()["prompt"] == "Say hello"


def test_non_streaming_chat_reads_message_and_usage() -> None:
    body = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3.2",'
            b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
            b'"finish_reason":"stop"}],"usage":{"prompt_tokens":26,"completion_tokens":3,'
            b'"total_tokens":29}}')
    script = Script(headers=JSON, parts=[body])
    record = run_send(openai.send, script, spec("openai", "chat", stream=False))
    assert record.ok and record.output_tokens == 3 and record.done_reason == "stop"
    assert record.chunk_times_s == [record.end_s]
    assert "stream_options" not in script.sent_body()


def test_a_non_streamed_answer_that_never_finished_is_bad_stream() -> None:
    # What Ollama 0.33 answers when its token repeat limit ends a stream: false completion:
    # the text so far, finish_reason null, zero usage (server/routes.go writeChatResponse).
    body = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama3.2",'
            b'"choices":[{"index":0,"message":{"role":"assistant","content":"ource sigma sigma"},'
            b'"finish_reason":null}],"usage":{"prompt_tokens":0,"completion_tokens":0,'
            b'"total_tokens":0}}')
    record = run_send(openai.send, Script(headers=JSON, parts=[body]), spec("openai", "chat", stream=False))
    assert record.error_class == "bad_stream" and "finish_reason" in (record.error_message or "")


def test_embeddings_take_prompt_tokens_from_usage() -> None:
    body = (b'{"object":"list","data":[{"object":"embedding","embedding":[0.1],"index":0}],'
            b'"model":"nomic-embed-text","usage":{"prompt_tokens":8,"total_tokens":8}}')
    script = Script(headers=JSON, parts=[body])
    record = run_send(openai.send, script, spec("openai", "embed"))
    assert record.ok and record.prompt_tokens == 8 and record.output_tokens is None
    assert script.requests[-1].url.path == "/v1/embeddings"


def test_openai_503_is_rejected_with_message_from_error_object() -> None:
    body = (b'{"error":{"message":"server busy, please try again.  maximum pending requests '
            b'exceeded","type":"api_error","param":null,"code":null}}')
    record = run_send(openai.send, Script(status=503, headers=JSON, parts=[body]),
                      spec("openai", "chat"))
    assert record.error_class == "rejected"
    assert record.error_message.startswith("server busy")


def test_openai_404_is_client_error() -> None:
    body = (b'{"error":{"message":"model \\"nope\\" not found, try pulling it first",'
            b'"type":"not_found_error","param":null,"code":null}}')
    record = run_send(openai.send, Script(status=404, headers=JSON, parts=[body]),
                      spec("openai", "chat"))
    assert record.error_class == "client_error" and "not found" in record.error_message


def test_error_event_mid_stream_is_server_error() -> None:
    script = Script(headers=SSE, parts=[
        openai_chunk("Hel"), event({"error": {"message": "runner died", "type": "api_error"}}),
    ])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "server_error" and record.error_message == "runner died"
    assert len(record.chunk_times_s) == 1


def test_stream_without_done_event_is_bad_stream() -> None:
    script = Script(headers=SSE, parts=[openai_chunk("Hel"), openai_chunk("lo")])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "bad_stream" and "[DONE]" in record.error_message


def test_a_stream_cut_by_ollamas_token_repeat_limit_is_named() -> None:
    # middleware/openai.go writes the finish chunk and [DONE] only for a done response; the
    # repeat limit ends the completion without one, so the SSE body just ends.
    parts = [openai_chunk(""), openai_chunk("ource")] + [openai_chunk(" sigma")] * 31
    record = run_send(openai.send, Script(headers=SSE, parts=parts), spec("openai", "chat"))
    assert record.error_class == "bad_stream"
    message = record.error_message or ""
    assert "without data: [DONE] after 32 text chunks" in message
    assert "the last 31 were all 'sigma'" in message and "token repeat limit" in message


def test_dropped_connection_mid_stream_is_disconnected() -> None:
    script = Script(headers=SSE, parts=[openai_chunk("Hel"), httpx.ReadError("reset by peer")])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "disconnected" and len(record.chunk_times_s) == 1


def test_malformed_event_is_bad_stream() -> None:
    script = Script(headers=SSE, parts=[openai_chunk("Hel"), b"data: {oops\n\n", OPENAI_DONE])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "bad_stream"


def test_json_body_where_a_stream_was_expected_is_classified() -> None:
    script = Script(headers=JSON, parts=[b'{"error":{"message":"boom","type":"api_error"}}'])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "server_error" and record.error_message == "boom"
    script = Script(headers={"content-type": "text/plain"}, parts=[b"hello"])
    record = run_send(openai.send, script, spec("openai", "chat"))
    assert record.error_class == "bad_stream" and "text/event-stream" in record.error_message


def test_stalled_sse_stream_times_out() -> None:
    script = Script(headers=SSE, parts=[openai_chunk("Hel"), STALL])
    started = time.monotonic()
    record = run_send(openai.send, script, spec("openai", "chat", timeout_s=0.3))
    assert record.error_class == "timeout" and len(record.chunk_times_s) == 1
    assert time.monotonic() - started < 30
