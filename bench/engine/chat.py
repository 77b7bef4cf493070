"""Ollama v0.33's native chat path: the /v1/chat/completions request it sends llama-server and the
native metrics it takes from the final chunk (llm/llama_server.go Chat 1885-2081,
llamaServerChatRequest 2120-2170, llamaServerChatResponseFormat).

Taken when Ollama does not render the prompt itself (OLLAMA_GO_TEMPLATE=false, or a GGUF with only
a Jinja `tokenizer.chat_template`): llama-server applies the model's own template. Unlike the
/completion path there is no token-repeat guard; the final chunk (`finish_reason` set) carries
llama-server's `timings`, mapped as on /completion (prompt_eval_count = cache_n + prompt_n, ...).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from bench.engine.binary import EngineError
from bench.engine.completion import CompletionChunk, CompletionDone, EngineTimings, SamplingOptions, bounded_num_predict
from bench.engine.process import LlamaServer


def response_format(json_format: Any) -> dict[str, Any] | None:
    """llamaServerChatResponseFormat: "json" → json_object, a schema object → json_schema."""
    if json_format in (None, ""):
        return None
    if json_format == "json":
        return {"type": "json_object"}
    if isinstance(json_format, dict):
        return {"type": "json_schema", "json_schema": {"name": "schema", "schema": json_format}}
    raise EngineError(f'invalid format: {json_format!r}; expected "json" or a valid JSON Schema object')


def chat_body(
    messages: Sequence[dict[str, Any]], options: SamplingOptions, num_ctx: int, json_format: Any = None
) -> dict[str, Any]:
    """The JSON body of POST /v1/chat/completions, field for field as Ollama builds it.

    Unlike /completion, every option is sent (a Go map, no omitempty): `stop` is null when unset.
    """
    body: dict[str, Any] = {
        "messages": [{"role": m.get("role", "user"), "content": m.get("content", "")} for m in messages],
        "stream": True,
        "cache_prompt": True,
        "n_predict": bounded_num_predict(options.num_predict, num_ctx),
        "n_keep": options.num_keep,
        "temperature": options.temperature,
        "top_k": options.top_k,
        "top_p": options.top_p,
        "min_p": options.min_p,
        "stop": list(options.stop) or None,
        "repeat_penalty": options.repeat_penalty,
        "repeat_last_n": options.repeat_last_n,
        "frequency_penalty": options.frequency_penalty,
        "presence_penalty": options.presence_penalty,
        "typical_p": options.typical_p,
        "seed": options.seed,
    }
    formatted = response_format(json_format)
    if formatted is not None:
        body["response_format"] = formatted
    return body


async def stream_chat(server: LlamaServer, body: dict[str, Any]) -> AsyncIterator[CompletionChunk | CompletionDone]:
    """Yield each non-empty content delta, then one CompletionDone from the chunk with finish_reason."""
    async for event in server.stream_json("/v1/chat/completions", body):
        choices = event.get("choices") or []
        if not choices:
            continue
        choice = choices[0]
        content = str((choice.get("delta") or {}).get("content") or "")
        finish_reason = choice.get("finish_reason")
        if finish_reason is not None:
            # Ollama sends the final chunk's own text with its done line; llama-server's is empty.
            timings = EngineTimings.from_json(event.get("timings") or {})
            yield CompletionDone(timings, "length" if finish_reason == "length" else "stop", content, event)
            return
        if content:
            yield CompletionChunk(content)
