"""The /completion request Ollama v0.33 sends and the native metrics it derives from `timings`.

Request (`llamaServerCompletionRequest`, llm/llama_server.go): stream true, cache_prompt true,
n_predict bounded to 10 × num_ctx when open-ended, n_keep, and the sampling options. Final event:
prompt_eval_count = cache_n + prompt_n, prompt_eval_duration = prompt_ms, eval_count =
predicted_n, eval_duration = predicted_ms; done_reason "length" iff stop_type is "limit".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench.engine.process import LlamaServer

OPEN_ENDED_CONTEXT_MULTIPLIER = 10


@dataclass(frozen=True, slots=True)
class SamplingOptions:
    """Ollama's api.DefaultOptions() for the fields it forwards to llama-server."""

    num_predict: int = -1
    num_keep: int = 4
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    stop: tuple[str, ...] = ()
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    typical_p: float = 1.0
    seed: int = -1

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> SamplingOptions:
        """Pick the known fields out of a request's `options` (unknown ones are Ollama's to ignore)."""
        given = {key: value for key, value in (options or {}).items() if key in cls.__dataclass_fields__}
        if "stop" in given:
            stop = given["stop"]
            given["stop"] = (stop,) if isinstance(stop, str) else tuple(stop or ())
        return cls(**given)


def bounded_num_predict(num_predict: int, num_ctx: int) -> int:
    """Ollama's boundedNumPredict: −1 or anything above 10 × num_ctx becomes 10 × num_ctx."""
    if num_ctx <= 0:
        return num_predict
    limit = OPEN_ENDED_CONTEXT_MULTIPLIER * num_ctx
    return limit if num_predict < 0 or num_predict > limit else num_predict


def completion_body(prompt: str | list[int], options: SamplingOptions, num_ctx: int) -> dict[str, Any]:
    """The JSON body of POST /completion, field for field as Ollama builds it."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "stream": True,
        "cache_prompt": True,
        "n_predict": bounded_num_predict(options.num_predict, num_ctx),
        "temperature": options.temperature,
        "top_k": options.top_k,
        "top_p": options.top_p,
        "min_p": options.min_p,
        "repeat_penalty": options.repeat_penalty,
        "repeat_last_n": options.repeat_last_n,
        "frequency_penalty": options.frequency_penalty,
        "presence_penalty": options.presence_penalty,
        "seed": options.seed,
    }
    # Go's omitempty drops zero values of these three.
    if options.num_keep:
        body["n_keep"] = options.num_keep
    if options.stop:
        body["stop"] = list(options.stop)
    if options.typical_p:
        body["typical_p"] = options.typical_p
    return body


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """llama-server's `timings` object on the final event."""

    cache_n: int
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float

    @classmethod
    def from_json(cls, timings: dict[str, Any]) -> EngineTimings:
        return cls(
            cache_n=int(timings.get("cache_n") or 0),
            prompt_n=int(timings.get("prompt_n") or 0),
            prompt_ms=float(timings.get("prompt_ms") or 0.0),
            predicted_n=int(timings.get("predicted_n") or 0),
            predicted_ms=float(timings.get("predicted_ms") or 0.0),
        )

    @property
    def prompt_eval_count(self) -> int:
        return self.cache_n + self.prompt_n

    @property
    def prompt_eval_duration_ns(self) -> int:
        return round(self.prompt_ms * 1e6)

    @property
    def eval_count(self) -> int:
        return self.predicted_n

    @property
    def eval_duration_ns(self) -> int:
        return round(self.predicted_ms * 1e6)


def done_reason(stop_type: str | None) -> str:
    """llama-server's stop_type → Ollama's done_reason ("limit" → "length", else "stop")."""
    return "length" if stop_type == "limit" else "stop"


@dataclass(frozen=True, slots=True)
class CompletionChunk:
    """One streamed piece of text (one token with bench's models)."""

    content: str


@dataclass(frozen=True, slots=True)
class CompletionDone:
    """The final event: timings and why generation stopped."""

    timings: EngineTimings
    done_reason: str
    content: str = ""  # text on the final event (empty with streaming)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


async def stream_completion(
    server: LlamaServer, body: dict[str, Any]
) -> AsyncIterator[CompletionChunk | CompletionDone]:
    """Yield each non-empty text chunk, then one CompletionDone."""
    async for event in server.stream_json("/completion", body):
        if event.get("stop"):
            yield CompletionDone(
                EngineTimings.from_json(event.get("timings") or {}),
                done_reason(event.get("stop_type")),
                str(event.get("content") or ""),
                event,
            )
            return
        content = event.get("content")
        if content:
            yield CompletionChunk(str(content))
