"""The per-chunk bookkeeping both stream readers share (TextStamps): each chunk's arrival, the text
and its length, the chunk cap past max_tokens, and how a stream that ended early is described."""

from __future__ import annotations

from typing import Any

from bench.clients._exchange import CHUNK_SLACK, StreamFailure
from bench.records.record import RequestRecord

# Ollama ends a completion when llama-server sends the same token (whitespace trimmed) a 31st time
# in a row, with no final line and no error: llm/llama_server.go's token repeat limit
# (`tokenRepeat > 30`, then `return ctx.Err()`, which is nil). A stream that ends without its
# final line after at least this many equal chunks is named as that in the error message.
REPEAT_LIMIT_CHUNKS = 31


def take_text(record: RequestRecord, output_chars: int, text_parts: list[str] | None) -> None:
    """A stream's text into the record: its length always, the text only when asked to store it."""
    record.output_chars = output_chars
    if text_parts is not None:
        record.output_text = "".join(text_parts)


class TextStamps:
    """The per-chunk bookkeeping both stream readers share: a chunk that carried generated text
    (answer or thinking) is stamped with its read's arrival; answer text is counted (and kept only
    when the spec asks to store it). On the hot path: slots, no logging, nothing allocated per
    chunk beyond the stamp itself."""

    __slots__ = ("chunk_cap", "chunk_times", "chunks_left", "output_chars", "record", "run_chunks", "run_text", "t0",
                 "text_parts")

    def __init__(self, record: RequestRecord, t0: float, store_text: bool, max_chunks: int | None = None) -> None:
        self.record, self.t0 = record, t0
        self.chunk_times = record.chunk_times_s
        self.text_parts: list[str] | None = [] if store_text else None
        self.output_chars = 0
        self.chunk_cap = max_chunks if max_chunks is not None else -1
        self.chunks_left = self.chunk_cap  # -1: no cap
        # The run of text chunks at the stream's end that carried the same text:
        # only read when a stream ends without its final line (ended_without()).
        self.run_text = ""
        self.run_chunks = 0

    def add(self, now: float, content: Any, thinking: Any) -> None:
        """One parsed chunk that arrived at `now` (monotonic s): stamped if it carried any text.

        A stream far past max_tokens (max_chunks) is a server that does not stop: bad_stream."""
        if self.chunks_left == 0:
            raise StreamFailure("bad_stream", f"more than {self.chunk_cap:,} chunks (2 x the token budget + {CHUNK_SLACK}; "
                                              "the budget is max_tokens, else Ollama's own 10 x num_ctx): "
                                              "the server does not stop")
        self.chunks_left -= 1
        # A role-only delta ({"role": "assistant", "content": ""}) is not a token.
        has_content = type(content) is str and content != ""
        if not has_content and not (type(thinking) is str and thinking != ""):
            return
        # Compared as sent (Ollama trims whitespace first): cheap on the hot path, and a
        # token the model loops on arrives the same every time.
        text = content if has_content else thinking
        if text == self.run_text:
            self.run_chunks += 1
        else:
            self.run_text, self.run_chunks = text, 1
        stamp = now - self.t0
        record = self.record
        if record.first_token_s is None:
            record.first_token_s = stamp
        self.chunk_times.append(stamp)
        if has_content:
            if record.first_content_s is None:
                record.first_content_s = stamp
            self.output_chars += len(content)
            if self.text_parts is not None:
                self.text_parts.append(content)

    def finish(self) -> None:
        """The stream's text into the record (its length always)."""
        take_text(self.record, self.output_chars, self.text_parts)

    def ended_without(self, final: str) -> StreamFailure:
        """The failure of a body that ended cleanly before its final line (`final` names it).

        A protocol break either way (bad_stream); when the stream's last REPEAT_LIMIT_CHUNKS or
        more chunks repeated one text, the message says so: that is how Ollama's token repeat
        limit ends a stream (docs/ollama-behaviour.md), a model stuck in a loop, not a network
        or client fault."""
        chunks = len(self.chunk_times)
        message = f"stream ended without {final} after {chunks} text chunks"
        if self.run_chunks >= REPEAT_LIMIT_CHUNKS:
            message += (f"; the last {self.run_chunks} were all {self.run_text.strip()!r}: Ollama's token "
                        "repeat limit ends a stream this way, with no error (docs/ollama-behaviour.md)")
        return StreamFailure("bad_stream", message)
