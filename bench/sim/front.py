"""Turning an API request into scheduler and runner requests, as Ollama's routes.go does.

Shared by the native (/api/*) and OpenAI (/v1/*) surfaces: option decoding, keep_alive, the
automatic num_ctx/num_batch flags, prompt truncation and the num_predict bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.sim import context, textgen, tokens
from bench.sim.backend import CompletionRequest, LoadFailed
from bench.sim.catalog import ModelSpec
from bench.sim.durations import NEVER_S, parse_go_duration_s
from bench.sim.options import OptionTypeError, RunnerOptions, decode_options
from bench.sim.scheduler import LoadedModel, ScheduleRequest
from bench.sim.state import Simulator

MAX_EMBED_BATCH = 2048


class FrontError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_keep_alive(value: Any) -> float | None:
    """api.Duration.UnmarshalJSON (api/types.go 1243-1271); None when absent or null.

    A JSON number is seconds; a string must be a Go duration ("5m", "0", "-1s": "300" fails with
    400); anything negative means forever.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        kind = "bool" if isinstance(value, bool) else "map[string]interface {}" if isinstance(value, dict) else "[]interface {}"
        raise FrontError(400, f"Unsupported type: '{kind}'")
    if isinstance(value, str):
        try:
            seconds = parse_go_duration_s(value)
        except ValueError:
            raise FrontError(400, f'time: missing unit in duration "{value}"' if value.strip().lstrip("+-").replace(".", "", 1).isdigit()
                             else f'time: invalid duration "{value}"') from None
    else:
        seconds = float(value)
    return NEVER_S if seconds < 0 else seconds


def decoded_options(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw request options, typed options); a wrong type is Ollama's 500 from scheduleRunner."""
    raw = body.get("options") or {}
    if not isinstance(raw, dict):
        raise FrontError(400, "json: cannot unmarshal options into Go struct field of type map[string]interface {}")
    try:
        return raw, decode_options(raw)
    except OptionTypeError as error:
        raise FrontError(500, str(error)) from None


def schedule_request(sim: Simulator, spec: ModelSpec, raw: dict[str, Any], options: dict[str, Any],
                     keep_alive_s: float | None, shift: bool | None = None) -> ScheduleRequest:
    """modelOptions + getRunner's normalisation (routes.go 126-190, sched.go 169-177)."""
    config = sim.config
    num_ctx = options.get("num_ctx", config.default_num_ctx)
    num_ctx = max(4, num_ctx)
    num_ctx_auto = "num_ctx" not in raw and config.context_length == 0 and config.rules.tiered_default_ctx
    num_batch_auto = "num_batch" not in raw
    num_batch = options.get("num_batch", 512)
    if spec.embedding_only and num_batch_auto and config.rules.llama_server_memory:
        num_batch = min(MAX_EMBED_BATCH, num_ctx)  # WithDefaultEmbeddingNumBatch
    runner_options = RunnerOptions(
        num_ctx=num_ctx, num_batch=num_batch, num_gpu=options.get("num_gpu", -1), main_gpu=options.get("main_gpu"),
        use_mmap=options.get("use_mmap"), num_thread=options.get("num_thread", 0),
        # Forced to 0 unless set: no catalog model ships a draft layer (routes.go 154-156).
        draft_num_predict=options.get("draft_num_predict", 0),
    )
    return ScheduleRequest(
        model=spec, options=runner_options, num_ctx_auto=num_ctx_auto, num_batch_auto=num_batch_auto,
        keep_alive_s=keep_alive_s, shift=shift,
    )


@dataclass(frozen=True)
class Prompt:
    text: str
    sample_key: str  # what the simulated output is seeded by


async def trim_chat(loaded: LoadedModel, messages: list[dict[str, Any]], num_ctx: int) -> list[dict[str, Any]]:
    """chatPrompt (server/prompt.go 23-92): drop the oldest non-system messages until the rendered
    prompt fits, counting with the runner's /tokenize (at least one call per request, as Ollama)."""
    assert loaded.runner is not None
    template = loaded.model.chat_template
    kept = list(messages)
    while await loaded.runner.count_tokens(tokens.render_chat(kept, template)) > num_ctx:
        droppable = [i for i, m in enumerate(kept[:-1]) if m.get("role") != "system"]
        if not droppable:
            break
        del kept[droppable[0]]
    return kept


async def completion_request(sim: Simulator, loaded: LoadedModel, prompt: Prompt, options: dict[str, Any],
                             json_schema: Any) -> CompletionRequest:
    """completionPromptForRequest + boundedNumPredict for the loaded runner's context."""
    assert loaded.runner is not None
    num_ctx = loaded.options.num_ctx
    num_keep = options.get("num_keep", 4)
    prompt_value: str | list[int] = prompt.text
    # Ollama only tokenises when the prompt could be too long (len(bytes) >= num_ctx).
    if len(prompt.text.encode()) >= num_ctx:
        prompt_tokens = await loaded.runner.tokenize(prompt.text)
        if len(prompt_tokens) > num_ctx - 1:
            try:
                prompt_value = context.truncate_prompt(prompt_tokens, num_ctx, num_keep, loaded.context_shift)
            except context.PromptTooLong as error:
                raise FrontError(400, str(error)) from None
    n_predict = context.bounded_num_predict(options.get("num_predict", -1), num_ctx, sim.config.rules.bounded_num_predict)
    sampling = {key: options[key] for key in ("temperature", "seed", "top_k", "top_p", "min_p", "stop") if key in options}
    return CompletionRequest(
        prompt=prompt_value, n_predict=n_predict, n_keep=num_keep, options=sampling, json_schema=json_schema,
        sample_key=prompt.sample_key,
    )


def native_chat(sim: Simulator) -> bool:
    """chatModeForModel: Ollama leaves chat to llama-server's Jinja template when it does not render
    it itself (OLLAMA_GO_TEMPLATE=false; every catalog model otherwise has a Go TEMPLATE)."""
    return not sim.config.go_template


async def trim_native_chat(loaded: LoadedModel, messages: list[dict[str, Any]], num_ctx: int) -> list[dict[str, Any]]:
    """truncateNativeChatMessages (routes.go 3040-3097): drop leading messages (keeping earlier system
    ones) until the runner's own template renders a prompt of at most num_ctx tokens.

    One /apply-template + /tokenize per candidate history, only for more than one message.
    """
    assert loaded.runner is not None
    if num_ctx <= 0 or len(messages) <= 1:
        return messages
    keep_from = len(messages) - 1
    try:
        for start in range(len(messages)):
            system = [m for m in messages[:start] if m.get("role") == "system"]
            rendered = await loaded.runner.apply_template(system + messages[start:])
            if await loaded.runner.count_tokens(rendered) <= num_ctx:
                keep_from = start
                break
    except LoadFailed as error:  # handleNativeChat: "chat template prompt error" → 500
        raise FrontError(500, str(error)) from None
    return [m for m in messages[:keep_from] if m.get("role") == "system"] + messages[keep_from:]


async def native_chat_request(sim: Simulator, loaded: LoadedModel, messages: list[dict[str, Any]], prompt: Prompt,
                              options: dict[str, Any], json_schema: Any, truncate: bool) -> CompletionRequest:
    """handleNativeChat → llamaServerRunner.Chat: the messages themselves go to the runner, with
    the num_predict bound of the loaded runner's context and no prompt truncation of its own."""
    num_ctx = loaded.options.num_ctx
    if truncate:
        messages = await trim_native_chat(loaded, messages, num_ctx)
    n_predict = context.bounded_num_predict(options.get("num_predict", -1), num_ctx, sim.config.rules.bounded_num_predict)
    sampling = {key: options[key] for key in ("temperature", "seed", "top_k", "top_p", "min_p", "stop") if key in options}
    return CompletionRequest(
        prompt=tokens.render_chat(messages, loaded.model.chat_template), n_predict=n_predict, n_keep=options.get("num_keep", 4), options=sampling,
        json_schema=json_schema, sample_key=prompt.sample_key, messages=tuple(messages),
    )


async def native_generate_prompt(loaded: LoadedModel, prompt_text: str, system: str, truncate: bool) -> str:
    """/api/generate on the native path (routes.go 556-597): the runner's template renders the
    system and user messages (/apply-template), then the prompt goes to /completion as usual."""
    assert loaded.runner is not None
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt_text}]
    if truncate:
        messages = await trim_native_chat(loaded, messages, loaded.options.num_ctx)
    try:
        return await loaded.runner.apply_template(messages)
    except LoadFailed as error:
        raise FrontError(500, str(error)) from None


def fault_token_budget(sim: Simulator, prompt: Prompt, options: dict[str, Any]) -> int:
    """How many tokens a request is expected to produce: where injected faults may land."""
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and num_predict > 0:
        return num_predict
    return textgen.natural_length(sim.config.seed, prompt.sample_key)
