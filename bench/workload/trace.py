"""Trace replay: a JSONL of requests with their original timing, replayed (optionally time-scaled).

One request a line:

    {"timestamp": 12.5, "prompt_tokens": 800, "max_tokens": 120, "conversation_id": "u7"}
    {"timestamp": 13.0, "prompt": "What is ...?", "max_tokens": 64}

`timestamp` is seconds (any origin; `timestamp_ms` for milliseconds); a request is sent at its
offset from the first line times `time_scale`. `prompt` is sent as is (with a unique token in
front, as every bench prompt), `prompt_tokens` makes a synthetic prompt of that length. Lines
with the same `conversation_id` are the turns of one conversation, in time order: each resends
the history with the server's replies, and waits for the previous turn's reply if that is still
coming (the wait shows as dispatch lag).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import ScenarioError
from bench.numbers import MAX_SECONDS


class TraceEntry(BaseModel):
    """One line of a trace file."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    timestamp: float | None = Field(None, ge=0)
    timestamp_ms: float | None = Field(None, ge=0)
    prompt: str | None = None
    prompt_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    conversation_id: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> TraceEntry:
        if self.timestamp is None and self.timestamp_ms is None:
            raise ValueError("needs a timestamp (seconds) or timestamp_ms")
        if self.prompt is None and self.prompt_tokens is None:
            raise ValueError("needs a prompt or prompt_tokens")
        return self

    @property
    def time_s(self) -> float:
        return float(self.timestamp if self.timestamp is not None else self.timestamp_ms / 1000)  # type: ignore[operator]


def read_trace(path: Path) -> list[TraceEntry]:
    """The trace's entries in time order; ScenarioError `FILE:LINE: problem` for a bad line."""
    from bench.inputs import MAX_DATA_BYTES, read_input_text

    text = read_input_text(path, MAX_DATA_BYTES, ScenarioError, "trace file")
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(TraceEntry.model_validate(json.loads(line)))
        except json.JSONDecodeError as error:
            raise ScenarioError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ScenarioError(f"{path}:{line_number}: {where + ': ' if where else ''}{message}") from None
    if not entries:
        raise ScenarioError(f"{path}:1: no requests in the trace")
    _check_span(path, entries)
    return sorted(entries, key=lambda entry: entry.time_s)


def _check_span(path: Path, entries: list[TraceEntry]) -> None:
    """A trace longer than MAX_SECONDS (a week, as every duration) is a typo or the wrong unit:
    refused, naming the line, rather than replayed as a run that never ends."""
    first_s = min(entry.time_s for entry in entries)
    for line_number, entry in enumerate(entries, start=1):
        if entry.time_s - first_s > MAX_SECONDS:
            raise ScenarioError(
                f"{path}:{line_number}: timestamp {entry.time_s:g} s is {entry.time_s - first_s:.3g} s after "
                f"the first request: more than {MAX_SECONDS:g} s (a week), the longest duration bench accepts"
                " (timestamp_ms for milliseconds)")
