"""A count or duration a server sends outside 0..2^62 is the server's error, recorded with the
request (error_class server_error), never turned into a rate (issue 26: eval_count -5 gave
-3.2e13 tok/s)."""

from __future__ import annotations

import pytest
from clients_transcripts import (
    OPENAI_DONE,
    SSE,
    Script,
    native_chat_done,
    native_chat_line,
    openai_chunk,
    openai_usage_chunk,
    run_send,
    spec,
)

from bench.clients import native, openai


@pytest.mark.parametrize("metrics", [{"eval_count": -5}, {"prompt_eval_count": -1}, {"eval_duration": -1},
                                     {"total_duration": 2**63 - 1}])
def test_an_impossible_count_is_a_server_error_recorded_not_a_rate(metrics: dict[str, int]) -> None:
    script = Script(parts=[native_chat_line("Hi"), native_chat_done(**metrics)])
    record = run_send(native.send, script, spec(max_tokens=3))
    assert record.error_class == "server_error"
    assert "outside 0..2^62" in (record.error_message or "")
    assert record.output_tokens is None or record.output_tokens >= 0


def test_an_impossible_openai_usage_count_is_a_server_error() -> None:
    script = Script(headers=dict(SSE), parts=[openai_chunk("Hi"), openai_chunk("", finish_reason="stop"),
                           openai_usage_chunk(completion_tokens=-3), OPENAI_DONE])
    record = run_send(openai.send, script, spec(surface="openai", max_tokens=3))
    assert record.error_class == "server_error"
