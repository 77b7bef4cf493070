"""JSON a server sends, read bounded and typed: the one reader for every answer outside the
per-chunk hot path (/api/show, /api/ps, /api/version, /v1/models, /props).

A server under test is other people's code: an /api/ps of 100,000 nested arrays made Python's
json raise RecursionError and killed the telemetry thread; an /api/show of the same ended the run
with exit 70; `model_info` arrived as a list. Here a body is at most MAX_SERVER_JSON_BYTES, at most
MAX_SERVER_JSON_DEPTH deep (orjson stops at 1024 levels by itself, without recursion in Python),
and the caller says which JSON type it expects; anything else is a ServerJSONError naming the URL.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_SERVER_JSON_BYTES = 16 * 2**20  # an /api/show of a large model is ~1 MB (its tokenizer lists)
MAX_SERVER_JSON_DEPTH = 32  # Ollama's deepest answer (/api/show model_info arrays) is 3 levels


class ServerJSONError(ValueError):
    """A server's answer is not the JSON bench can read; str() is one line naming where."""


def _depth_over(value: Any, limit: int) -> bool:
    """Is `value` nested deeper than `limit`? Iterative: a deep value must not recurse here."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, (dict, list)))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def server_json(body: bytes | str, where: str) -> Any:
    """The parsed body; ServerJSONError when it is too big, not JSON or nested too deeply."""
    if len(body) > MAX_SERVER_JSON_BYTES:
        raise ServerJSONError(f"{where}: an answer of {len(body):,} bytes, over the "
                              f"{MAX_SERVER_JSON_BYTES:,} bench reads")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ServerJSONError(f"{where}: answered with something other than JSON ({str(error)[:120]})") from None
    if _depth_over(value, MAX_SERVER_JSON_DEPTH):
        raise ServerJSONError(f"{where}: JSON nested more than {MAX_SERVER_JSON_DEPTH} levels deep")
    return value


def server_object(body: bytes | str, where: str) -> dict[str, Any]:
    """server_json, and it must be a JSON object."""
    value = server_json(body, where)
    if not isinstance(value, dict):
        raise ServerJSONError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def object_field(value: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`value[key]` as an object ({} when absent or null); ServerJSONError when it is another type."""
    field = value.get(key)
    if field is None:
        return {}
    if not isinstance(field, dict):
        raise ServerJSONError(f"{where}: {key} is a {type(field).__name__}, not a JSON object")
    return field
