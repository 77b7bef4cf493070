"""Probes of the HTTP surface: /api/version, error statuses and bodies, stream shapes.

Compared exactly: status codes, error texts, key sets and JSON types, the order of stream event
kinds, done_reason / finish_reason and token counts a client can set (num_predict). Not
compared: generated text, durations, ids, timestamps (reduced to their JSON type).
"""

from __future__ import annotations

from typing import Any

import httpx

from bench.conformance.checks import Check, exact, shape_of
from bench.conformance.session import ProbeSession, Streamed

MISSING = "no-such-model"
USER_HI = [{"role": "user", "content": "hi"}]


def body_of(response: httpx.Response) -> Any:
    """The JSON body, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text.strip()


async def probe_version(session: ProbeSession) -> dict[str, Check]:
    response = await session.get("/api/version")
    root = await session.get("/")
    return {
        "version status": exact(response.status_code), "version": exact(body_of(response)),
        "GET / status": exact(root.status_code), "GET / body": exact(root.text),
    }


async def _status_and_body(session: ProbeSession, label: str, path: str, body: Any) -> dict[str, Check]:
    response = await session.post(path, body)
    return {f"{label} status": exact(response.status_code), f"{label} body": exact(body_of(response))}


async def probe_unknown_model(session: ProbeSession) -> dict[str, Check]:
    requests = (
        ("generate", "/api/generate", {"model": MISSING, "prompt": "hi"}),
        ("chat", "/api/chat", {"model": MISSING, "messages": USER_HI}),
        ("embed", "/api/embed", {"model": MISSING, "input": "hi"}),
        ("show", "/api/show", {"model": MISSING}),
        ("v1 chat", "/v1/chat/completions", {"model": MISSING, "messages": USER_HI}),
        ("v1 embeddings", "/v1/embeddings", {"model": MISSING, "input": "hi"}),
        ("chat no model", "/api/chat", {"messages": USER_HI}),
    )
    checks: dict[str, Check] = {}
    for label, path, body in requests:
        checks.update(await _status_and_body(session, label, path, body))
    return checks


async def probe_bad_request(session: ProbeSession) -> dict[str, Check]:
    """Bad options, bad keep_alive, a capability the model lacks, a malformed body."""
    chat, embed = session.models.chat, session.models.embed
    requests = (
        ("num_ctx 'abc'", "/api/generate", {"model": chat, "prompt": "hi", "options": {"num_ctx": "abc"}}),
        ("unknown option", "/api/generate",
         {"model": chat, "prompt": "hi", "stream": False, "options": {"no_such_option": 1, "num_predict": 1}}),
        ("keep_alive '300'", "/api/generate", {"model": chat, "prompt": "hi", "keep_alive": "300"}),
        ("keep_alive true", "/api/generate", {"model": chat, "prompt": "hi", "keep_alive": True}),
        ("generate on embed model", "/api/generate", {"model": embed, "prompt": "hi"}),
        ("empty messages v1", "/v1/chat/completions", {"model": chat, "messages": []}),
    )
    checks: dict[str, Check] = {}
    for label, path, body in requests:
        checks.update(await _status_and_body(session, label, path, body))
    broken = await session.client.post("/api/generate", content=b"{", headers={"content-type": "application/json"})
    empty = await session.client.post("/api/generate", content=b"")
    checks.update({
        "malformed JSON status": exact(broken.status_code), "malformed JSON body": exact(body_of(broken)),
        "empty body status": exact(empty.status_code), "empty body body": exact(body_of(empty)),
    })
    unknown_option = checks.pop("unknown option body")
    checks["unknown option eval_count"] = exact(unknown_option.value.get("eval_count")
                                                if isinstance(unknown_option.value, dict) else None)
    return checks


def _stream_checks(streamed: Streamed, final_of: Any) -> dict[str, Check]:
    events = [event for event in streamed.events if isinstance(event, dict)]
    content = [event for event in events if not event.get("done")]
    final = events[-1] if events else {}
    shapes = sorted({repr(shape_of(event)) for event in content})
    return {
        "status": exact(streamed.status), "content-type": exact(streamed.content_type),
        "chunk shapes": exact(shapes), "final shape": exact(shape_of(final)),
        "final done_reason": exact(final.get("done_reason")), "final eval_count": exact(final.get("eval_count")),
        "all lines JSON": exact(len(events) == len(streamed.events)),
        **final_of(final),
    }


async def probe_ndjson(session: ProbeSession) -> dict[str, Check]:
    model, options = session.models.chat, {"num_predict": 4}
    generate = await session.stream("/api/generate", {"model": model, "prompt": "count", "options": options})
    chat = await session.stream("/api/chat", {"model": model, "messages": USER_HI, "options": options})
    checks = {f"generate {k}": v for k, v in _stream_checks(generate, lambda final: {}).items()}
    checks.update({f"chat {k}": v for k, v in _stream_checks(chat, lambda final: {
        "final message": exact(final.get("message", {}).get("role") if isinstance(final.get("message"), dict) else None),
    }).items()})
    plain = await session.post("/api/chat", {"model": model, "messages": USER_HI, "stream": False, "options": options})
    checks["chat stream:false shape"] = exact(shape_of(body_of(plain)))
    return checks


def sse_kind(event: Any) -> str:
    """What an OpenAI stream event is: role / content / finish / usage / [DONE]."""
    if event == "[DONE]":
        return "[DONE]"
    if not isinstance(event, dict):
        return "other"
    choices = event.get("choices")
    if choices == [] and event.get("usage"):
        return "usage"
    choice = choices[0] if choices else {}
    delta = choice.get("delta") or {}
    if delta.get("role"):
        return "role"
    if choice.get("finish_reason"):
        return "finish"
    return "content"


def _collapsed(kinds: list[str]) -> str:
    out: list[str] = []
    for kind in kinds:
        if not out or out[-1] != kind:
            out.append(kind)
    return " ".join(out)


def _sse_checks(streamed: Streamed) -> dict[str, Check]:
    kinds = [sse_kind(event) for event in streamed.events]
    by_kind: dict[str, Any] = {}
    for kind, event in zip(kinds, streamed.events):
        by_kind.setdefault(kind, event)
    checks = {
        "status": exact(streamed.status), "content-type": exact(streamed.content_type),
        "event order": exact(_collapsed(kinds)),
        "role chunks": exact(kinds.count("role")),
        "data: prefix on every line": exact(all(line.startswith("data: ") for line in streamed.raw_lines)),
    }
    for kind in ("role", "content", "finish", "usage"):
        checks[f"{kind} shape"] = exact(shape_of(by_kind.get(kind), depth=4))
    finish = by_kind.get("finish") or {}
    choice = (finish.get("choices") or [{}])[0] if isinstance(finish, dict) else {}
    checks["finish_reason"] = exact(choice.get("finish_reason"))
    checks["finish delta"] = exact(choice.get("delta", "absent"))
    usage = (by_kind.get("usage") or {}).get("usage") if isinstance(by_kind.get("usage"), dict) else None
    checks["usage completion_tokens"] = exact((usage or {}).get("completion_tokens"))
    return checks


async def probe_sse(session: ProbeSession) -> dict[str, Check]:
    model = session.models.chat
    stream_options = {"include_usage": True}
    chat = await session.stream("/v1/chat/completions", {
        "model": model, "messages": USER_HI, "max_tokens": 4, "stream": True, "stream_options": stream_options})
    completions = await session.stream("/v1/completions", {
        "model": model, "prompt": "count", "max_tokens": 4, "stream": True, "stream_options": stream_options})
    plain = await session.post("/v1/chat/completions", {"model": model, "messages": USER_HI, "max_tokens": 4})
    checks = {f"chat {k}": v for k, v in _sse_checks(chat).items()}
    checks.update({f"completions {k}": v for k, v in _sse_checks(completions).items()})
    plain_body = body_of(plain)
    checks["chat stream:false shape"] = exact(shape_of(plain_body, depth=4))
    if isinstance(plain_body, dict):
        checks["chat stream:false finish_reason"] = exact((plain_body.get("choices") or [{}])[0].get("finish_reason"))
    return checks
