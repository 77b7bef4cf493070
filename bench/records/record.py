"""The per-request record: what a client gives back for one request, and what every later stage reads.

It sits below the load stage on purpose: the load engine fills it in, and the workload reads a
reply back from it (conversations, prompt calibration); the rest of bench/records/ stores it.
Every time in a record is in seconds on the monotonic clock, relative to the run's t0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import orjson

Surface = Literal["native", "openai"]
Endpoint = Literal["chat", "generate", "completions", "embed"]
Phase = Literal["warmup", "measure"]

# error_class values. `rejected` is a 503 from a full scheduler queue; the rest follow the
# HTTP status or the way the stream failed.
ERROR_CLASSES = (
    "rejected",  # 503 "server busy ... maximum pending requests exceeded"
    "client_error",  # other 4xx (404 unknown model, 400 bad body)
    "server_error",  # other 5xx, or {"error": ...} inside a 200 stream
    "timeout",  # no byte for longer than the request timeout
    "disconnected",  # connection refused / reset / closed before done
    "bad_stream",  # a line or event that is not valid JSON, or a stream with no done/[DONE]
    "interrupted",  # still in flight when Ctrl-C / SIGTERM's grace ran out: kept, not dropped
)


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request. Written as one JSON line; None means 'did not happen'."""

    cell_id: str
    request_index: int  # dispatch order within the cell (0-based), unique per (cell, repeat)
    surface: Surface
    endpoint: Endpoint
    model: str
    repeat: int = 0
    phase: Phase = "measure"
    worker: int = 0  # load-generator process that sent it (issue 8's multi-process mode)
    # Multi-turn workloads: the conversation this request belongs to and its user turn (1-based);
    # None for single-turn requests.
    conversation_id: str | None = None
    turn: int | None = None
    # Times: seconds since run t0 on the monotonic clock.
    scheduled_s: float | None = None  # when the load schedule intended to send it
    sent_s: float | None = None  # when the request was handed to the connection
    headers_s: float | None = None  # response status line and headers received
    first_token_s: float | None = None  # first chunk carrying generated text (thinking included)
    first_content_s: float | None = None  # first chunk carrying answer content (not thinking)
    end_s: float | None = None  # done line / [DONE] / error / give-up
    # Arrival time of every chunk that carried generated text, in order (first_token_s included).
    chunk_times_s: list[float] = field(default_factory=list)
    # Outcome.
    status: int | None = None  # HTTP status; None when no response arrived
    error_class: str | None = None  # one of ERROR_CLASSES, None on success
    error_message: str | None = None  # server's error text or exception summary, truncated
    done_reason: str | None = None  # stop / length / load / unload (OpenAI finish_reason mapped)
    # Server-reported counts and timings (native: final line; openai: usage).
    prompt_tokens: int | None = None  # prompt_eval_count / usage.prompt_tokens
    output_tokens: int | None = None  # eval_count / usage.completion_tokens
    # Prompt tokens the server says it took from its prompt cache, when it says so (OpenAI
    # usage.prompt_tokens_details.cached_tokens). Ollama's native API does not: its
    # prompt_eval_count counts cached tokens too, and only prompt_eval_duration shrinks.
    cached_prompt_tokens: int | None = None
    load_duration_ns: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_duration_ns: int | None = None
    total_duration_ns: int | None = None
    # What we sent and got, in characters (prompt calibration; no text is stored by default).
    prompt_chars: int = 0
    output_chars: int = 0
    # Optional, only when the scenario asks to store bodies (issue 9: nothing leaks by default).
    prompt_text: str | None = None
    output_text: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_class is None

    def to_json_line(self) -> bytes:
        # orjson serialises the dataclass itself, fields in declaration order: the same bytes as
        # dumps(asdict(self)) at ~3 µs instead of ~50 (asdict deep-copies every field).
        return orjson.dumps(self) + b"\n"


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RequestRecord))
