"""What both surfaces share: the record skeleton, the idle watchdog, and failure classification.

`exchange()` sends one request and reads its headers; the surface module supplies the body
reader. Every server or network failure ends up in record.error_class (records.ERROR_CLASSES),
never as an exception, and whatever was timed before the failure is kept.

How a stream that ends early is classified:
- the connection dropped (reset, or closed mid-chunk so the HTTP body is incomplete):
  `disconnected`;
- the server finished the HTTP body cleanly but never sent `done: true` / `data: [DONE]`:
  `bad_stream` (the server, not the network, broke the protocol).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from bench.clients.base import RequestInterrupted, RequestSpec
from bench.clients.transport import arrival_s
from bench.numbers import MAX_SECONDS
from bench.records.record import RequestRecord

ERROR_MESSAGE_MAX_CHARS = 500
JSON_HEADERS = {"Content-Type": "application/json"}

# The request deadline's default (request_deadline_s): the slowest generation bench waits for,
# and the token count assumed when a request sets no max_tokens and no num_ctx.
SECONDS_PER_TOKEN_CEILING = 1.0
DEFAULT_UNBOUNDED_TOKENS = 4096
CHUNK_SLACK = 64
# Ollama bounds an answer without num_predict at 10 x num_ctx tokens (v0.33 llm/llama_server.go
# boundedNumPredict, openEndedGenerationContextMultiplier); its largest default context is 256k
# tokens (chosen by VRAM: 4k/32k/256k). The chunk cap of a request without max_tokens follows them.
OPEN_ENDED_CONTEXT_MULTIPLIER = 10
LARGEST_DEFAULT_CONTEXT_TOKENS = 262_144
# An NDJSON line, an SSE line or event's data, or a whole non-streamed body longer than this is no
# Ollama answer (the largest real one, /api/generate's final `context` at num_ctx 131072, is ~1 MB):
# the reader stops there with `bad_stream` instead of buffering until the request deadline.
MAX_LINE_BYTES = 16 * 2**20
# An error answer (4xx/5xx, or a body that is not an event stream) is read this far for its message
# (which is cut to ERROR_MESSAGE_MAX_CHARS anyway); the rest is never read.
ERROR_BODY_BYTES = 64 * 1024

# A timer may fire up to one clock tick early; treat an idle time this close to the limit as over.
_TIMER_SLACK_S = 0.002

# After the final line only the end of the HTTP body should follow; reading it lets the connection
# go back to the pool (httpcore closes a half-read connection). A server that holds the body open
# after `done` is given this long, and the request still counts as a success.
DRAIN_BUDGET_S = 1.0


class StreamFailure(Exception):
    """Raised by a body reader to end the exchange with a classified error."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


def request_deadline_s(spec: RequestSpec) -> float:
    """The whole request's time limit: the scenario's load.request_deadline_s, else derived.

    Derived: timeout_s (for the first byte) plus one second per token the request may generate
    (max_tokens, else num_ctx, else DEFAULT_UNBOUNDED_TOKENS), capped at MAX_SECONDS. A model
    slower than a token a second is stuck, not being benchmarked; a server that streams forever
    (or only SSE comments) ends here instead of hanging the run.
    """
    if spec.deadline_s is not None:
        return spec.deadline_s
    tokens = spec.max_tokens or spec.num_ctx or DEFAULT_UNBOUNDED_TOKENS
    return min(spec.timeout_s + tokens * SECONDS_PER_TOKEN_CEILING, MAX_SECONDS)


def max_chunks(spec: RequestSpec) -> int:
    """How many streamed chunks a request may carry: its token budget and as many again, plus
    slack (a chunk is at most a token; thinking and role-only chunks come on top).

    The budget is max_tokens; without it, what Ollama itself allows an open-ended answer
    (OPEN_ENDED_CONTEXT_MULTIPLIER × num_ctx, the largest default context when num_ctx is unset),
    so a server that floods an answer without max_tokens stops at a bound, not only at the deadline.
    """
    if spec.max_tokens and spec.max_tokens > 0:
        tokens = spec.max_tokens
    else:
        tokens = OPEN_ENDED_CONTEXT_MULTIPLIER * (spec.num_ctx or LARGEST_DEFAULT_CONTEXT_TOKENS)
    return 2 * tokens + CHUNK_SLACK


class IdleWatchdog:
    """Ends the request when no byte has arrived for timeout_s (issue 3: 'no byte for longer'),
    or when the whole request has run past its deadline (issue 26: bytes that never end).

    One timer per request instead of one per chunk: the reader only stores the arrival time of
    each chunk in `last_byte` (a float), and the timer, when it fires, re-arms itself for the
    remaining idle budget. Firing moves the enclosing asyncio.timeout() deadline to now, so the
    cancellation is asyncio's own and an outside cancel (Ctrl-C) is never mistaken for a timeout.
    `expired` says which limit fired ("idle" or "deadline").
    """

    __slots__ = ("last_byte", "finished", "expired", "max_chunks", "_deadline", "_timeout_s", "_ends_at",
                 "_loop", "_handle")

    def __init__(self, deadline: asyncio.Timeout, timeout_s: float, total_s: float | None = None,
                 chunk_limit: int | None = None) -> None:
        self.last_byte = time.monotonic()
        self.finished = False  # the final line arrived: the measurement is complete
        self.expired: str | None = None
        self.max_chunks = chunk_limit
        self._deadline = deadline
        self._timeout_s = timeout_s
        self._ends_at = None if total_s is None else self.last_byte + total_s
        self._loop = asyncio.get_running_loop()
        first_s = timeout_s if total_s is None else min(timeout_s, total_s)
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(first_s, self._check)

    def _check(self) -> None:
        now = time.monotonic()
        idle_s = now - self.last_byte
        if self._ends_at is not None and now >= self._ends_at - _TIMER_SLACK_S:
            self._expire("deadline")
        elif idle_s >= self._timeout_s - _TIMER_SLACK_S:
            self._expire("idle")
        else:
            wait_s = self._timeout_s - idle_s
            if self._ends_at is not None:
                wait_s = min(wait_s, self._ends_at - now)
            self._handle = self._loop.call_later(wait_s, self._check)

    def _expire(self, which: str) -> None:
        self.expired = which
        self._handle = None
        self._deadline.reschedule(self._loop.time())

    def finish(self) -> None:
        """The final line arrived: what is left is draining, on a short budget."""
        self.finished = True
        self._ends_at = None
        self.last_byte = time.monotonic()
        if self._timeout_s > DRAIN_BUDGET_S:
            self._timeout_s = DRAIN_BUDGET_S
            self.stop()
            self._handle = self._loop.call_later(DRAIN_BUDGET_S, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


# (response, record, watchdog, t0, store_text): parse a 2xx body into the record, stamp end_s
# at the final line, call watchdog.finish() there; raise StreamFailure for a protocol break.
BodyReader = Callable[[httpx.Response, RequestRecord, IdleWatchdog, float, bool], Awaitable[None]]


def new_record(spec: RequestSpec) -> RequestRecord:
    prompt_chars = (len(spec.prompt) + (len(spec.system) if spec.system else 0)
                    + sum(len(content) for _, content in spec.history))
    return RequestRecord(
        cell_id=spec.cell_id,
        request_index=spec.request_index,
        surface=spec.surface,
        endpoint=spec.endpoint,
        model=spec.model,
        repeat=spec.repeat,
        phase=spec.phase,
        worker=spec.worker,
        scheduled_s=spec.scheduled_s,
        conversation_id=spec.conversation_id,
        turn=spec.turn,
        prompt_chars=prompt_chars,
        prompt_text=spec.prompt if spec.store_text else None,
    )


def truncate(text: str) -> str:
    if len(text) <= ERROR_MESSAGE_MAX_CHARS:
        return text
    return text[: ERROR_MESSAGE_MAX_CHARS - 3] + "..."


def error_text(error_value: Any) -> str:
    """The message inside a native `{"error": "msg"}` or OpenAI `{"error": {"message": ...}}`."""
    if isinstance(error_value, dict):
        message = error_value.get("message")
        if isinstance(message, str):
            return truncate(message)
        return truncate(orjson.dumps(error_value).decode())
    if isinstance(error_value, str):
        return truncate(error_value)
    return truncate(repr(error_value))


async def read_at_most(response: httpx.Response, limit_bytes: int) -> tuple[bytes, bool]:
    """A body read up to `limit_bytes` and no further: (the bytes, whether more was sent). The one
    bounded reader of a whole body, however long the server keeps sending."""
    parts: list[bytes] = []
    size_bytes = 0
    async for piece in response.aiter_bytes():
        parts.append(piece)
        size_bytes += len(piece)
        if size_bytes > limit_bytes:
            return b"".join(parts)[:limit_bytes], True
    return b"".join(parts), False


async def read_error_body(response: httpx.Response) -> bytes:
    """The first ERROR_BODY_BYTES of an error answer: enough for its message."""
    body, _ = await read_at_most(response, ERROR_BODY_BYTES)
    return body


def error_text_from_body(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return truncate(body.decode("utf-8", "replace").strip())
    if isinstance(parsed, dict) and "error" in parsed:
        return error_text(parsed["error"])
    return truncate(body.decode("utf-8", "replace").strip())


def class_of_status(status: int) -> str:
    """503 is Ollama's queue-full rejection (server/sched.go ErrMaxQueue); 4xx/5xx otherwise."""
    if status == 503:
        return "rejected"
    if status >= 500:
        return "server_error"
    # 4xx, and 1xx/3xx too: a redirect is not followed, so the URL is wrong for bench's purpose.
    return "client_error"


def _class_of_exception(error: BaseException) -> str:
    if isinstance(error, (TimeoutError, httpx.TimeoutException)):
        return "timeout"
    if isinstance(error, httpx.DecodingError):
        return "bad_stream"
    return "disconnected"


def _describe(error: BaseException) -> str:
    text = str(error)
    return truncate(f"{type(error).__name__}: {text}" if text else type(error).__name__)


async def read_whole_body(
    response: httpx.Response, record: RequestRecord, watchdog: IdleWatchdog, t0: float
) -> bytes:
    """A non-streamed body; its arrival is the request's end (and, for text, its one chunk).

    One JSON document: past MAX_LINE_BYTES it is a bad_stream, read no further."""
    body, cut = await read_at_most(response, MAX_LINE_BYTES)
    if cut:
        raise StreamFailure("bad_stream", f"a response body longer than {MAX_LINE_BYTES} bytes: "
                                          "not an Ollama answer")
    now = arrival_s(response)
    watchdog.last_byte = now
    record.end_s = now - t0
    return body


# Token counts and nanosecond durations: 2^62 ns is 146 years, so past it (or below 0) the
# server is wrong, and a rate divided by it would be nonsense (eval_count -5 gave -3.2e13 tok/s).
MAX_SERVER_COUNT = 2**62


def int_or_none(value: Any) -> int | None:
    """A count the server sent; None when absent or not an integer; StreamFailure (server_error,
    recorded with the request) when it is below 0 or past MAX_SERVER_COUNT."""
    # bool is an int subclass; a server sending `true` as a count is not a count.
    if type(value) is not int:
        return None
    if not 0 <= value <= MAX_SERVER_COUNT:
        raise StreamFailure("server_error", f"the server sent a count or duration of {value}, "
                                            "outside 0..2^62 (a server bug)")
    return value


async def exchange(
    http: httpx.AsyncClient,
    spec: RequestSpec,
    t0: float,
    path: str,
    body: dict[str, Any],
    read_body: BodyReader,
) -> RequestRecord:
    """POST `body` to `path`, time it, let `read_body` parse a 2xx body; classify every failure."""
    record = new_record(spec)
    request = http.build_request(
        "POST", path, content=orjson.dumps(body), headers=JSON_HEADERS, timeout=spec.timeout_s
    )
    watchdog: IdleWatchdog | None = None
    try:
        async with asyncio.timeout(None) as deadline:
            watchdog = IdleWatchdog(deadline, spec.timeout_s, request_deadline_s(spec), max_chunks(spec))
            try:
                record.sent_s = watchdog.last_byte - t0
                response = await http.send(request, stream=True)
                try:
                    now = arrival_s(response)
                    watchdog.last_byte = now
                    record.headers_s = now - t0
                    record.status = response.status_code
                    if 200 <= response.status_code < 300:
                        await read_body(response, record, watchdog, t0,
                                        spec.store_text or spec.keep_reply)
                    else:
                        error_body = await read_error_body(response)
                        record.end_s = time.monotonic() - t0
                        record.error_class = class_of_status(response.status_code)
                        record.error_message = error_text_from_body(error_body) or (
                            f"HTTP {response.status_code}"
                        )
                finally:
                    await response.aclose()
            finally:
                watchdog.stop()
    except StreamFailure as failure:
        record.error_class = failure.error_class
        record.error_message = truncate(failure.message)
    except TimeoutError:
        if not (watchdog is not None and watchdog.finished):
            record.error_class = "timeout"
            record.error_message = (
                f"no final line within the request deadline of {request_deadline_s(spec):g} s "
                "(load.request_deadline_s)" if watchdog is not None and watchdog.expired == "deadline"
                else f"no byte received for {spec.timeout_s:g} s")
    except (httpx.HTTPError, httpx.StreamError, OSError) as error:
        # A connection dropped while draining after the final line loses no measurement.
        if not (watchdog is not None and watchdog.finished):
            record.error_class = _class_of_exception(error)
            record.error_message = _describe(error)
    except asyncio.CancelledError:
        if watchdog is None or not watchdog.finished:
            record.error_class = "interrupted"
            record.error_message = "still in flight when the run was interrupted (Ctrl-C / SIGTERM)"
        if record.end_s is None:
            record.end_s = time.monotonic() - t0
        raise RequestInterrupted(record) from None
    if record.end_s is None:
        # Readers stamp end_s at the final line; a failure ends the request when it is noticed.
        record.end_s = time.monotonic() - t0
    return record
