"""What the load engine asks a client to send: the contract between bench.load and bench.clients."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bench.records.record import Endpoint, Phase, RequestRecord, Surface

# A keep_alive as Ollama accepts it: a duration string ("5m", "1h30m", "300ms"), a number of
# seconds, 0 (unload when idle) or negative (never unload).
KeepAlive = str | int | float


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send, fully resolved: the client adds nothing of its own."""

    cell_id: str
    request_index: int
    surface: Surface
    endpoint: Endpoint
    model: str
    prompt: str  # the new user message of a chat turn; the whole text for generate/completions
    repeat: int = 0
    phase: Phase = "measure"
    max_tokens: int | None = None  # num_predict (native) / max_tokens (openai)
    num_ctx: int | None = None  # options.num_ctx; sent on the OpenAI surface too if asked (ignored there)
    keep_alive: KeepAlive | None = None  # sent on the OpenAI surface too if asked (ignored there)
    temperature: float | None = None
    seed: int | None = None
    format: str | dict[str, Any] | None = None  # None, "json", or a JSON schema
    system: str | None = None
    stream: bool = True
    extra_options: dict[str, Any] = field(default_factory=dict)  # more native `options`
    store_text: bool = False  # keep prompt and output text in the record (off: nothing leaks)
    timeout_s: float = 300.0  # give up when no byte arrives for this long
    deadline_s: float | None = None  # give up on the whole request after this long (None: derived)
    scheduled_s: float | None = None  # when the schedule intended to send it (run-relative)
    worker: int = 0
    # A conversation's earlier turns as (role, content) pairs, user and assistant alternating,
    # sent before `prompt` on chat endpoints (generate endpoints get a rendered transcript).
    history: tuple[tuple[str, str], ...] = ()
    conversation_id: str | None = None
    turn: int | None = None
    keep_reply: bool = False  # read the reply text even without store_text (the next turn needs it)


def chat_messages(spec: RequestSpec) -> list[dict[str, str]]:
    """The messages of a chat request: system, the conversation so far, the new user message."""
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    messages.extend({"role": role, "content": content} for role, content in spec.history)
    messages.append({"role": "user", "content": spec.prompt})
    return messages


class RequestInterrupted(asyncio.CancelledError):
    """The request was cancelled in flight (the run's grace after Ctrl-C / SIGTERM ran out).

    Still a CancelledError, so the cancellation goes on; it carries the request's record, stamped
    `interrupted` with what was timed so far, for the load engine to store rather than drop."""

    def __init__(self, record: RequestRecord) -> None:
        super().__init__("request interrupted")
        self.record = record
