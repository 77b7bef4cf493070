"""Scenario field types: matrix axes, bounded numbers, endpoint names, durations and units,
thresholds, and the loopback-only check on server arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from bench.errors import ScenarioError
from bench.numbers import (
    INT64_MAX,
    INT64_MIN,
    MAX_CONCURRENCY,
    MAX_COUNT,
    MAX_SECONDS,
)
from bench.processes import is_loopback


def _as_list(value: Any) -> Any:
    # A scalar is a one-value axis; None stays None so "not given" is distinguishable.
    if value is None or isinstance(value, list):
        return value
    return [value]


def _axis(item_type: Any) -> Any:
    """A field that takes one value or a list of values (a matrix axis); stored as a list."""
    return Annotated[
        list[item_type],
        BeforeValidator(_as_list, json_schema_input_type=item_type | list[item_type]),
        Field(min_length=1),  # `model: []` would plan zero cells and "succeed"
    ]


# strict: `concurrency: true` is not 1, `requests: "4"` is not 4 (YAML already typed them).
PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Concurrency = Annotated[int, Field(ge=1, le=MAX_CONCURRENCY, strict=True)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX, strict=True)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, strict=True)]
NonNegativeSeconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, le=1e9, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=1e9, strict=True)]

# Endpoint names a user writes: "surface/endpoint". `embeddings` is accepted for the OpenAI name.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "native/chat": ("native", "chat"),
    "native/generate": ("native", "generate"),
    "native/embed": ("native", "embed"),
    "openai/chat": ("openai", "chat"),
    "openai/completions": ("openai", "completions"),
    "openai/embeddings": ("openai", "embed"),
    "openai/embed": ("openai", "embed"),
}
EndpointName = Literal[
    "native/chat",
    "native/generate",
    "native/embed",
    "openai/chat",
    "openai/completions",
    "openai/embeddings",
    "openai/embed",
]
Arrival = Literal["closed", "constant", "poisson", "sweep", "trace"]
# A keep_alive as Ollama takes it: "5m", "1h30m", "300ms", seconds, 0 or negative.
KeepAlive = str | int | float
_DURATION_RE = re.compile(r"^(-?\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
_SLO_VALUE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_METRIC_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# k6-style threshold: "<500ms", "<=2s", ">20", "<1%" (a percentage of a rate that is a fraction).
_THRESHOLD_RE = re.compile(r"^\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|%)?\s*$")
# A metric of a threshold may name any percentile: ttft_p99.9.
_THRESHOLD_METRIC_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[0-9]+)?$")
DEFAULT_PERCENTILES: tuple[float, ...] = (50, 90, 95, 99)
DEFAULT_TURNS = 4  # user turns of a synthetic conversation when the scenario does not say


_LISTEN_FLAGS = ("--host", "--bind", "--listen")


def _split_quietly(arg: str) -> list[str]:
    import shlex

    try:
        return shlex.split(arg)
    except ValueError:  # unbalanced quotes: judge the raw words
        return arg.split()


def _is_loopback(host_port: str) -> bool:
    host = host_port.rsplit("://", 1)[-1]
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    return bool(host) and is_loopback(host)


def refuse_listen_args(words: list[str]) -> None:
    """ValueError when arguments would make a server listen beyond loopback (0.0.0.0, a LAN IP)."""
    for index, word in enumerate(words):
        value: str | None = None
        if word in _LISTEN_FLAGS:
            value = words[index + 1] if index + 1 < len(words) else ""
        elif word.startswith(tuple(f"{flag}=" for flag in _LISTEN_FLAGS)) or "OLLAMA_HOST=" in word:
            value = word.split("=", 1)[1]
        elif "0.0.0.0" in word or word.strip("[]") == "::":
            value = word
        if value is not None and not _is_loopback(value.strip("\"'")):
            raise ValueError(f"{word!r}: bench's servers listen on loopback (127.0.0.1) only")


_SECONDS_PER_UNIT = {None: 1.0, "s": 1.0, "ms": 1e-3, "m": 60.0, "h": 3600.0}


def seconds_of(value: str | float) -> float:
    """`2s`, `100ms`, `1.5` (seconds), `10m`, `1h` -> seconds; ValueError otherwise.

    The one reader of a duration a user writes (SLOs, thresholds, `--slo`, soak flags); Ollama's
    Go-style keep_alive strings (`1h30m`) are checked by the model and read by the server.
    """
    if not isinstance(value, str):
        return float(value)
    match = _SLO_VALUE_RE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a number or a duration like 2s, 100ms, 10m or 1h")
    return float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]


def parse_slo_value(value: str | float) -> float:
    try:
        return seconds_of(value)
    except ValueError:
        raise ScenarioError(f"{value!r} is not a number or a duration") from None


@dataclass(frozen=True)
class Threshold:
    """`metric op limit`, e.g. ttft_p95 < 0.5 (seconds) or error_rate < 0.01."""

    metric: str
    op: str  # <, <=, >, >=
    limit: float
    text: str  # as the user wrote it, for the verdict line

    def holds(self, value: float) -> bool:
        return {"<": value < self.limit, "<=": value <= self.limit,
                ">": value > self.limit, ">=": value >= self.limit}[self.op]


def parse_threshold(metric: str, text: str) -> Threshold:
    match = _THRESHOLD_RE.match(text)
    if match is None:
        raise ScenarioError(f"thresholds.{metric}: {text!r} is not a limit like \"<500ms\"")
    op, number, unit = match.group(1), float(match.group(2)), match.group(3)
    scale = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0, "%": 0.01}[unit]
    return Threshold(metric=metric, op=op, limit=number * scale, text=text.strip())


def refuse_impossible_threshold(threshold: Threshold) -> None:
    """ValueError for a limit no run can meet or fail: every metric bench computes is 0 or more,
    and a rate (`error_rate`, `rejection_rate`) is a fraction of the requests, at most 100%."""
    where = f"{threshold.metric}: {threshold.text!r}"
    if threshold.limit < 0 or (threshold.limit == 0 and threshold.op == "<"):
        raise ValueError(f"{where}: no metric is below 0, so this limit can never hold")
    if threshold.metric.endswith("_rate") and threshold.limit > 1:
        raise ValueError(f"{where}: a rate is at most 100% (1.0)")
