"""One observed field of a probe, and the rule that says when two servers agree on it.

Probes decide per field what is compared: the exact value (status codes, error bodies, key
sets, done_reason), a value within a tolerance (counts that a scheduler race may move by one,
expiry deltas measured on two clocks), or nothing at all but a record (durations, ids and
timestamps legitimately differ; they are reduced to a shape or a relation before comparison).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSONValue = Any  # a JSON-serialisable value

EXACT, APPROX, RECORD = "exact", "approx", "record"


@dataclass(frozen=True)
class Check:
    """An observed value; `rule` exact | approx (|a−b| ≤ tolerance) | record (shown, never compared)."""

    value: JSONValue
    rule: str = EXACT
    tolerance: float = 0.0

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"value": self.value, "rule": self.rule}
        if self.rule == APPROX:
            out["tolerance"] = self.tolerance
        return out

    @classmethod
    def from_json(cls, raw: dict[str, JSONValue]) -> Check:
        return cls(value=raw.get("value"), rule=str(raw.get("rule", EXACT)), tolerance=float(raw.get("tolerance", 0.0)))


def exact(value: JSONValue) -> Check:
    return Check(value)


def approx(value: float | None, tolerance: float) -> Check:
    return Check(value, APPROX, tolerance)


def record(value: JSONValue) -> Check:
    return Check(value, RECORD)


def agree(sim: Check | None, real: Check | None) -> bool:
    """Whether two observations of one field agree under the real server's rule."""
    if sim is None or real is None:
        return sim is None and real is None
    if real.rule == RECORD:
        return True
    if real.rule == APPROX:
        if not isinstance(sim.value, (int, float)) or not isinstance(real.value, (int, float)):
            return sim.value == real.value
        return abs(float(sim.value) - float(real.value)) <= real.tolerance
    return bool(sim.value == real.value)


def json_type(value: JSONValue) -> str:
    """The JSON type name: Go writes 3.0 as 3, so every number is one type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def shape_of(value: JSONValue, depth: int = 3) -> JSONValue:
    """Keys and JSON types, recursively (lists by their first element): what a client parses."""
    if isinstance(value, dict) and depth > 0:
        return {key: shape_of(value[key], depth - 1) for key in sorted(value)}
    if isinstance(value, list) and value and depth > 0:
        return [shape_of(value[0], depth - 1)]
    return json_type(value)


def keys_of(value: JSONValue) -> list[str]:
    """Sorted top-level keys of a JSON object (empty for anything else)."""
    return sorted(value) if isinstance(value, dict) else []
