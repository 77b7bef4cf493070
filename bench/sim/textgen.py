"""Deterministic text: seeded output tokens, schema-conforming JSON, embeddings.

Prompt tokenization lives in tokens.py (token identity, for the prompt cache).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterator
from typing import Any

CHARS_PER_TOKEN = 4
MIN_NATURAL_TOKENS = 150
MAX_NATURAL_TOKENS = 900

_WORDS = (
    "the model a of and to in is that it for on with as this was at by be from are an or which "
    "one all have has can will more time data system value first result each process when other "
    "memory token cache batch layer request server queue latency throughput context weight speed "
    "simple measure query answer number point light water river mountain city music story garden "
    "quick bright careful steady gentle clear open small large early later often rarely always"
).split()


def stable_int(*parts: object) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def natural_length(sim_seed: int, prompt_key: str) -> int:
    """How many tokens the "model" wants to say for this prompt: independent of temperature/seed."""
    rng = random.Random(stable_int("length", sim_seed, prompt_key))
    return rng.randint(MIN_NATURAL_TOKENS, MAX_NATURAL_TOKENS)


def endless_prose(rng: random.Random, count: int) -> Iterator[str]:
    """`count` prose tokens (count < 0: without end), made as they are read."""
    words = prose_tokens(rng, 256)
    emitted = 0
    while count < 0 or emitted < count:
        yield words[emitted % len(words)]
        emitted += 1


def prose_tokens(rng: random.Random, count: int) -> list[str]:
    pieces: list[str] = []
    for index in range(count):
        word = rng.choice(_WORDS)
        if index == 0:
            pieces.append(word.capitalize())
        elif index % 13 == 12:
            pieces.append(".")
        else:
            pieces.append(" " + word)
    return pieces


def chunk_text(text: str) -> list[str]:
    """Split text into ~4-character tokens (how structured output is streamed)."""
    return [text[i : i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)] or [""]


def _resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def schema_instance(schema: Any, rng: random.Random, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A value conforming to a JSON schema subset: type, enum, const, object/properties/required,
    array/items/minItems/maxItems, string/minLength/maxLength, number/integer bounds, boolean, null,
    anyOf/oneOf/allOf (first branch), $ref into $defs/definitions."""
    if not isinstance(schema, dict):
        return {}
    root = root if root is not None else schema
    schema = _resolve_ref(schema, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            branches = [b for b in schema[combinator] if not (isinstance(b, dict) and b.get("type") == "null")]
            return schema_instance((branches or schema[combinator])[0], rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        if depth > 8:
            return {}
        return {name: schema_instance(sub, rng, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        low = int(schema.get("minItems", 1))
        high = int(schema.get("maxItems", max(low, 3)))
        count = rng.randint(low, max(low, min(high, low + 2)))
        return [schema_instance(schema.get("items", {}), rng, root, depth + 1) for _ in range(count)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = schema.get("maximum", schema.get("exclusiveMaximum", low + 100))
        if kind == "integer":
            low_i = math.floor(low) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
            high_i = math.ceil(high) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
            return rng.randint(min(low_i, high_i), max(low_i, high_i))
        return round(rng.uniform(low, high), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    words = " ".join(rng.choice(_WORDS) for _ in range(3))
    min_length = int(schema.get("minLength", 0))
    max_length = int(schema.get("maxLength", max(min_length, 40)))
    words = (words + " x" * min_length)[: max(min_length, min(max_length, len(words)))]
    return words.ljust(min_length, "x")


def structured_text(format_spec: Any, rng: random.Random) -> str:
    """The whole JSON document the model "emits" for format "json" or a schema."""
    if isinstance(format_spec, dict):
        return json.dumps(schema_instance(format_spec, rng))
    return json.dumps({"answer": " ".join(rng.choice(_WORDS) for _ in range(6)), "confidence": round(rng.random(), 2)})


def embedding_vector(text: str, dimensions: int, sim_seed: int) -> list[float]:
    """A unit-length vector determined by the text (Ollama's /api/embed normalises)."""
    rng = random.Random(stable_int("embed", sim_seed, text))
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [v / norm for v in raw]
