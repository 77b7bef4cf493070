"""Probes of what a runner is launched with and what it reports: context, batch, num_predict,
truncation, prompt-cache timings, embeddings.

Compared exactly: `-c` / `-np` / `-b` of the launch, /api/ps context_length, eval_count and
done_reason for a num_predict the client set, the relation between a first and a repeated
prompt's prompt_eval_count / prompt_eval_duration, embedding dimensions and key sets. Prompt
token counts depend on the tokenizer (the simulator counts, llama-server tokenises): recorded.
"""

from __future__ import annotations

import math
from typing import Any

from bench.conformance.checks import Check, exact, record, shape_of
from bench.conformance.probes_api import body_of
from bench.conformance.session import ProbeSession

SMALL_CTX = 64
LONG_PROMPT_WORDS = 400


def words(count: int, salt: str) -> str:
    """A prompt of `count` distinct words (a salt keeps it out of every earlier prompt cache)."""
    return " ".join(f"{salt}{index % 97}w{index}" for index in range(count))


async def _launch_after(session: ProbeSession, body: dict[str, Any], path: str = "/api/generate") -> dict[str, Check]:
    before = len(session.launches())
    response = await session.post(path, body)
    launches = session.launches()
    launch = launches[-1] if len(launches) > before else None
    entry = next((e for e in await session.ps() if e.get("name") == body["model"]), {})
    return {
        "status": exact(response.status_code),
        "-c (ctx × parallel)": exact(launch.ctx_total if launch else None),
        "-np": exact(launch.num_parallel if launch else None),
        "-b": exact(launch.num_batch if launch else None),
        "ps context_length": exact(entry.get("context_length")),
    }


async def probe_context(session: ProbeSession) -> dict[str, Check]:
    """Default context and batch on this machine; an explicit num_ctx past the training context."""
    await session.unload_all()
    chat, embed = session.models.chat, session.models.embed
    base = {"prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    checks = {f"default {k}": v for k, v in (await _launch_after(session, {"model": chat, **base})).items()}
    oversize = {"model": chat, **base, "options": {"num_predict": 1, "num_ctx": 1_000_000}}
    checks.update({f"num_ctx 1e6 {k}": v for k, v in (await _launch_after(session, oversize)).items()})
    embed_body = {"model": embed, "input": "hi"}
    checks.update({f"embed {k}": v for k, v in (await _launch_after(session, embed_body, "/api/embed")).items()})
    await session.unload_all()
    return checks


def _final_fields(response: Any) -> dict[str, Any]:
    body = body_of(response)
    return body if isinstance(body, dict) else {"error": body}


async def probe_num_predict(session: ProbeSession) -> dict[str, Check]:
    """num_predict set, 0, −1 and past 10 × num_ctx (boundedNumPredict), at num_ctx 64.

    A made model never stops by itself, so each stream is read to at most 10 × num_ctx + 60
    lines: one still going then is reported as "unbounded".
    """
    model = session.models.chat
    limit_lines = 10 * SMALL_CTX + 60
    checks: dict[str, Check] = {}
    for label in ("5", "0", "-1", "100000"):
        body = {"model": model, "prompt": "hi", "options": {"num_predict": int(label), "num_ctx": SMALL_CTX}}
        lines, final = await session.stream_until("/api/generate", body, limit_lines)
        checks[f"{label} eval_count"] = exact("unbounded" if final is None else final.get("eval_count", final.get("error")))
        checks[f"{label} done_reason"] = exact(None if final is None else final.get("done_reason"))
    return checks


async def probe_truncation(session: ProbeSession) -> dict[str, Check]:
    """A prompt far past num_ctx: kept to about half the context (shift on), 400 with shift off."""
    model = session.models.chat
    options = {"num_predict": 1, "num_ctx": SMALL_CTX}
    long_prompt = words(LONG_PROMPT_WORDS, "t")
    shifted = await session.post("/api/generate", {"model": model, "prompt": long_prompt, "stream": False, "options": options})
    unshifted = await session.post("/api/generate", {
        "model": model, "prompt": long_prompt, "stream": False, "options": options, "shift": False})
    chat = await session.post("/api/chat", {
        "model": model, "stream": False, "options": options,
        "messages": [{"role": "user", "content": words(60, f"m{i}")} for i in range(6)]})
    shifted_final, chat_final = _final_fields(shifted), _final_fields(chat)
    return {
        "shift on status": exact(shifted.status_code),
        "shift on prompt_eval_count": exact(shifted_final.get("prompt_eval_count")),
        "shift off status": exact(unshifted.status_code),
        "shift off body": exact(body_of(unshifted) if unshifted.status_code != 200 else "served"),
        "chat history status": exact(chat.status_code),
        "chat history fits": exact(int(chat_final.get("prompt_eval_count", 0) or 0) < SMALL_CTX),
        "chat history prompt_eval_count": record(chat_final.get("prompt_eval_count")),
    }


async def probe_prompt_cache(session: ProbeSession) -> dict[str, Check]:
    """The same long prompt twice: same prompt_eval_count, far less prompt_eval_duration."""
    model = session.models.chat
    body = {"model": model, "prompt": words(LONG_PROMPT_WORDS, "c"), "stream": False, "options": {"num_predict": 1}}
    first = _final_fields(await session.post("/api/generate", body))
    second = _final_fields(await session.post("/api/generate", body))
    first_ns, second_ns = first.get("prompt_eval_duration", 0) or 0, second.get("prompt_eval_duration", 0) or 0
    return {
        "repeat prompt_eval_count equal": exact(first.get("prompt_eval_count") == second.get("prompt_eval_count")),
        "repeat prompt_eval_duration < 1/2": exact(0 < second_ns < first_ns / 2 if first_ns else False),
        "first prompt_eval_count": record(first.get("prompt_eval_count")),
        "durations ms first/repeat": record(f"{first_ns / 1e6:.1f}/{second_ns / 1e6:.1f}"),
    }


def _norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


async def probe_embeddings(session: ProbeSession) -> dict[str, Check]:
    model = session.models.embed
    embed = body_of(await session.post("/api/embed", {"model": model, "input": ["one", "two three"]}))
    legacy = body_of(await session.post("/api/embeddings", {"model": model, "prompt": "one"}))
    openai = body_of(await session.post("/v1/embeddings", {"model": model, "input": ["one"]}))
    vectors = embed.get("embeddings", []) if isinstance(embed, dict) else []
    legacy_vector = legacy.get("embedding", []) if isinstance(legacy, dict) else []
    return {
        "embed shape": exact(shape_of(embed)), "embed count": exact(len(vectors)),
        "embed dims": exact(len(vectors[0]) if vectors else None),
        "embed unit norm": exact(bool(vectors) and abs(_norm(vectors[0]) - 1) < 1e-3),
        "embed prompt_eval_count": record(embed.get("prompt_eval_count") if isinstance(embed, dict) else None),
        "legacy shape": exact(shape_of(legacy)), "legacy dims": exact(len(legacy_vector)),
        "legacy unit norm": exact(bool(legacy_vector) and abs(_norm(legacy_vector) - 1) < 1e-3),
        "v1 shape": exact(shape_of(openai, depth=4)),
    }
