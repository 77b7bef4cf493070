"""The scenario file: pydantic model, YAML loading with line numbers, JSON Schema.

Every user mistake in a scenario becomes one ScenarioError line `FILE:LINE: field.path: message`.
Fields marked as axes accept a single value or a list; a list makes a matrix axis (bench.plan).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    PrivateAttr,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bench.endpoints import base_url_of, resolve_ollama_host  # noqa: F401 - resolve_ollama_host re-exported
from bench.errors import ScenarioError, UsageError
from bench.escape import plain_terminal
from bench.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_CONCURRENCY,
    MAX_COUNT,
    MAX_RATE_RPS,
    MAX_SECONDS,
    MAX_YAML_NODES,
)


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
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


class _Strict(BaseModel):
    # No inf/nan: `rate_rps: .inf` would dispatch without end, `duration_s: .inf` never stop.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Distribution(_Strict):
    """A prompt-length distribution in tokens; draws are clipped to [min, max]."""

    distribution: Literal["uniform", "normal", "lognormal"]
    low: PositiveInt | None = Field(None, description="uniform: smallest length")
    high: PositiveInt | None = Field(None, description="uniform: largest length")
    mean: PositiveFloat | None = Field(None, description="normal: mean; lognormal: median")
    stddev: NonNegativeFloat | None = Field(None, description="normal: standard deviation")
    sigma: NonNegativeFloat | None = Field(None, description="lognormal: sigma of log-length")
    min: PositiveInt = 1
    max: PositiveInt = 32768

    @model_validator(mode="after")
    def _params_match_kind(self) -> Distribution:
        needed = {"uniform": ("low", "high"), "normal": ("mean", "stddev"),
                  "lognormal": ("mean", "sigma")}[self.distribution]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for a {self.distribution} distribution")
        if self.distribution == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("high: must be >= low")
        if self.min > self.max:
            raise ValueError("max: must be >= min")
        return self

    @property
    def mean_tokens(self) -> float:
        import math

        if self.distribution == "uniform":
            return (self.low + self.high) / 2  # type: ignore[operator]
        if self.distribution == "normal":
            return float(self.mean)  # type: ignore[arg-type]
        return float(self.mean) * math.exp(float(self.sigma) ** 2 / 2)  # type: ignore[arg-type]


class SecondsDistribution(_Strict):
    """A duration drawn per use, in seconds (think time between turns)."""

    distribution: Literal["uniform", "exponential"]
    low: NonNegativeFloat | None = Field(None, description="uniform: shortest")
    high: NonNegativeFloat | None = Field(None, description="uniform: longest")
    mean: NonNegativeFloat | None = Field(None, description="exponential: mean")

    @model_validator(mode="after")
    def _params_match_kind(self) -> SecondsDistribution:
        needed = {"uniform": ("low", "high"), "exponential": ("mean",)}[self.distribution]
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for a {self.distribution} distribution")
        if self.distribution == "uniform" and self.low > self.high:  # type: ignore[operator]
            raise ValueError("high: must be >= low")
        return self


PromptCache = Literal["reuse", "defeat"]


class PromptSpec(_Strict):
    """Synthetic prompts of `tokens` length (fixed, a list = axis, or a distribution), or a file."""

    tokens: _axis(PositiveInt) | Distribution | None = None  # type: ignore[valid-type]
    file: str | None = Field(
        None, description="JSONL with `prompt` or `messages`, or ShareGPT `conversations`"
    )
    system: str | None = None
    calibrate: bool = Field(True, description="fit chars-per-token from the server's counts")
    shared_prefix_tokens: _axis(NonNegativeInt) | None = Field(  # type: ignore[valid-type]
        None, description="a system prompt of this many tokens common to every request"
    )
    cache: _axis(PromptCache) = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["reuse"],
        description="reuse: requests share what they naturally share (system prompt, history); "
                    "defeat: a unique first token in every request, so no prefix is cached",
    )

    @model_validator(mode="after")
    def _one_source(self) -> PromptSpec:
        if self.tokens is not None and self.file is not None:
            raise ValueError("file: give either tokens or file, not both")
        if self.tokens is None and self.file is None:
            self.tokens = [128]
        return self


class ConversationSpec(_Strict):
    """Multi-turn conversations: each virtual user sends turn after turn of one conversation."""

    turns: _axis(PositiveInt) | Distribution | None = Field(  # type: ignore[valid-type]
        None,
        description="user turns per conversation (default 4; a file's conversations: all "
                    "their turns, or at most this many)",
    )
    think_time_s: NonNegativeFloat | SecondsDistribution = Field(
        0.0, description="pause between a reply and the next user turn"
    )


class Workload(_Strict):
    endpoint: _axis(EndpointName) = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["native/chat"], description="surface/endpoint, e.g. openai/chat"
    )
    model: _axis(str)  # type: ignore[valid-type]
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    max_tokens: _axis(PositiveInt | Literal["from_data"]) | Distribution = Field(  # type: ignore[valid-type]
        default_factory=lambda: [128],
        description="num_predict / max_tokens: tokens, a list (axis), a distribution drawn per "
                    "request, or from_data (each request: its reference answer's length in prompt.file)",
    )
    num_ctx: _axis(PositiveInt) | None = None  # type: ignore[valid-type]
    keep_alive: _axis(KeepAlive) | None = None  # type: ignore[valid-type]
    temperature: _axis(Annotated[float, Field(ge=0, le=100, strict=True)]) | None = None  # type: ignore[valid-type]
    seed: Int64 | None = None
    format: _axis(Literal["none", "json"] | dict[str, Any]) = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["none"], description="none, json, or a JSON schema object"
    )
    conversation: ConversationSpec | None = Field(
        None, description="multi-turn conversations (each turn resends the whole history)"
    )

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _max_tokens_words(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item != "from_data":
                raise ValueError(f"Input should be a valid integer, a distribution or from_data, not {item!r}")
        return value

    @model_validator(mode="after")
    def _from_data_needs_a_file(self) -> Workload:
        if isinstance(self.max_tokens, list) and "from_data" in self.max_tokens and self.prompt.file is None:
            raise ValueError("max_tokens: from_data takes each request's length from the reference "
                             "answers in prompt.file; give a file")
        return self

    @model_validator(mode="after")
    def _conversation_needs_chat_text(self) -> Workload:
        embeds = [e for e in self.endpoint if e.endswith(("embed", "embeddings"))]
        if self.conversation is not None and embeds:
            raise ValueError(f"conversation: {embeds[0]} takes no conversation (chat or generate only)")
        return self

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive_forms(cls, values: list[KeepAlive] | None) -> list[KeepAlive] | None:
        for value in values or []:
            if isinstance(value, str) and not _DURATION_RE.match(value.strip()):
                raise ValueError(f"{value!r} is not a duration like 5m, 1h30m, 300ms, 0 or -1")
        return values


class SweepSpec(_Strict):
    """A saturation sweep (GuideLLM's): synchronous, then maximum throughput, then rates between."""

    rates: Annotated[int, Field(ge=1, le=50)] = Field(
        6, description="rate steps between the synchronous rate and the maximum throughput"
    )
    max_concurrency: Annotated[int, Field(ge=1, le=4096)] = Field(
        32, description="requests in flight in the throughput step"
    )
    arrival: Literal["constant", "poisson"] = Field("constant", description="arrivals of rate steps")
    max_rate_factor: Annotated[float, Field(ge=1.0, le=10.0)] = Field(
        1.0, description="the last rate step offers this times the measured maximum (>1: overload)"
    )
    stop_at_slo: bool = Field(
        True, description="with slos: stop after the first rate step that breaks them"
    )


class TraceSpec(_Strict):
    """Replay a JSONL trace with its original timing (bench.trace)."""

    file: str = Field(description="JSONL: timestamp, prompt or prompt_tokens, max_tokens, conversation_id")
    time_scale: Annotated[float, Field(gt=0, le=1000)] = Field(
        1.0, description="multiply the trace's gaps: 0.5 replays twice as fast"
    )


class Load(_Strict):
    arrival: _axis(Arrival) = Field(default_factory=lambda: ["closed"])  # type: ignore[valid-type]
    concurrency: _axis(Concurrency) | None = Field(  # type: ignore[valid-type]
        None, description="closed loop: workers; open loop: cap on requests in flight"
    )
    rate_rps: _axis(Annotated[float, Field(gt=0, le=MAX_RATE_RPS, strict=True)]) | None = None  # type: ignore[valid-type]
    requests: _axis(PositiveInt) | None = None  # type: ignore[valid-type]
    duration_s: _axis(Seconds) | None = None  # type: ignore[valid-type]
    warmup_requests: NonNegativeInt = 1
    repeats: Annotated[int, Field(ge=1, le=1000, strict=True)] = 1
    timeout_s: Seconds = 300.0

    sweep: SweepSpec = Field(default_factory=SweepSpec, description="for arrival: sweep")
    trace: TraceSpec | None = Field(None, description="for arrival: trace")

    @model_validator(mode="after")
    def _consistent(self) -> Load:
        if "trace" in self.arrival and self.trace is None:
            raise ValueError("trace: required for arrival trace ({file: trace.jsonl})")
        open_loop = [a for a in self.arrival if a not in ("closed", "sweep", "trace")]
        if self.rate_rps is not None and not open_loop:
            raise ValueError("rate_rps: needs arrival constant or poisson (closed loop has no rate)")
        if open_loop and self.rate_rps is None:
            raise ValueError(f"rate_rps: required for arrival {open_loop[0]}")
        if self.requests is None and self.duration_s is None:
            self.requests = [32]
        return self


class Pace(_Strict):
    gap_s: _axis(NonNegativeSeconds) = Field(  # type: ignore[valid-type]
        default_factory=lambda: [0.0], description="idle seconds before each cell"
    )


class SimTarget(_Strict):
    """Settings of the embedded simulator for `target: sim`."""

    speed: Annotated[float, Field(gt=0, le=1e6, strict=True)] = 1.0
    gpu: str | None = None
    gpu_memory: str | None = None
    seed: Int64 | None = None
    ollama_version: Literal["0.33.0", "0.12.6"] | None = Field(
        None, description="the Ollama release the simulator behaves as (default 0.33.0)")
    env: dict[str, str | int | float] = Field(default_factory=dict)
    args: list[str] = Field(default_factory=list, description="more `bench sim` arguments")

    @field_validator("args")
    @classmethod
    def _loopback_only(cls, args: list[str]) -> list[str]:
        refuse_listen_args(args)
        return args

    @field_validator("env")
    @classmethod
    def _no_host(cls, env: dict[str, Any]) -> dict[str, Any]:
        if "OLLAMA_HOST" in env:
            raise ValueError("OLLAMA_HOST: bench sets it (the simulator listens on 127.0.0.1 only)")
        return env


class ServerBlock(_Strict):
    """A managed server: bench starts it per distinct env combination on a free loopback port."""

    command: list[str] | str = "ollama serve"
    env: dict[str, _axis(str | int | float)] = Field(default_factory=dict)  # type: ignore[valid-type]
    ready_timeout_s: Seconds = 120.0
    stop_grace_s: Annotated[float, Field(gt=0, le=3600, strict=True)] = 10.0

    @field_validator("command")
    @classmethod
    def _loopback_only(cls, command: list[str] | str) -> list[str] | str:
        import shlex

        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise ValueError("empty command")
        # A shell wrapper (`bash -c "bench sim --host 0.0.0.0"`) hides its arguments in one string.
        words = [word for arg in argv for word in _split_quietly(arg)]
        refuse_listen_args(words)
        return command

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in env.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if not values:
                raise ValueError(f"{name}: empty list")
            if name == "OLLAMA_HOST":
                # bench picks the address: a managed server listens on a free loopback port only.
                raise ValueError("OLLAMA_HOST: bench sets it (a managed server listens on 127.0.0.1 only)")
        return env

    @property
    def argv(self) -> list[str]:
        import shlex

        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)


class Matrix(_Strict):
    zip: list[list[str]] = Field(default_factory=list, description="axes that move together")


class AbortOn(_Strict):
    error_rate: Annotated[float, Field(gt=0, le=1, strict=True)] | None = None
    consecutive_failures: PositiveInt | None = None
    min_requests: PositiveInt = Field(20, description="error_rate is checked after this many")


_STOP_METRIC_RE = re.compile(r"^((ttft|tpot|e2e|itl|queue_wait)_p([1-9][0-9]?)|output_tps|rps)$")
_FRACTION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class StopWhen(_Strict):
    """Adaptive cells: stop a cell's load once its key metrics are known well enough."""

    within: dict[str, str | float] = Field(
        description="metric -> largest deviation of its interval from the value: 5% or 0.05")
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    min_requests: PositiveInt = Field(20, description="never stop before this many measured requests")
    max_requests: PositiveInt | None = Field(None, description="stop here even if not met (default: the cell's requests)")
    min_s: PositiveFloat | None = None
    max_s: PositiveFloat | None = Field(None, description="stop here even if not met (default: the cell's duration_s)")

    @field_validator("within")
    @classmethod
    def _within(cls, within: dict[str, str | float]) -> dict[str, str | float]:
        if not within:
            raise ValueError("name at least one metric, e.g. {ttft_p95: 5%, output_tps: 5%}")
        for metric, value in within.items():
            if not _STOP_METRIC_RE.match(metric):
                raise ValueError(f"{metric!r}: stop_when judges latency percentiles (ttft_p95, tpot_p50, "
                                 "e2e_p99, ...), output_tps and rps")
            fraction = _fraction(value)
            if fraction is None or not 0 < fraction < 1:
                raise ValueError(f"{metric}: {value!r} is not a fraction like 5% or 0.05")
        return within

    @model_validator(mode="after")
    def _bounds(self) -> StopWhen:
        if self.max_requests is not None and self.max_requests < self.min_requests:
            raise ValueError("max_requests: smaller than min_requests")
        if self.max_s is not None and self.min_s is not None and self.max_s < self.min_s:
            raise ValueError("max_s: smaller than min_s")
        return self

    def within_fractions(self) -> dict[str, float]:
        return {metric: float(_fraction(value) or 0.0) for metric, value in self.within.items()}


def _fraction(value: str | float) -> float | None:
    if isinstance(value, str):
        match = _FRACTION_RE.match(value)
        return float(match.group(1)) / 100 if match else None
    return float(value)


class Prune(_Strict):
    """Pruned studies: skip cells that cannot win (bench.analysis.pruning)."""

    knee_growth: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.05, description="throughput growing less than this fraction over the lower concurrency is flat")


class Placement(_Strict):
    """What a node must have to run one server group under `bench run --ray`."""

    resources: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Ray resources per group, e.g. {GPU: 1} or {L4: 1}")
    num_cpus: Annotated[float, Field(gt=0)] = 1.0


class Scenario(_Strict):
    """A benchmark scenario: what to hit, with which requests, at which load, over which matrix."""

    name: str = "scenario"
    description: str = ""
    target: str | None = Field(None, description="base URL, or `sim`; default from OLLAMA_HOST")
    sim: SimTarget = Field(default_factory=SimTarget)
    server: ServerBlock | None = None
    api_key_env: str | None = Field(None, description="name of the env var holding an API key")
    workload: Workload
    load: Load = Field(default_factory=Load)
    matrix: Matrix = Field(default_factory=Matrix)
    pace: Pace = Field(default_factory=Pace)
    slos: dict[str, str | float] = Field(default_factory=dict)
    gates: dict[str, str] = Field(default_factory=dict)
    thresholds: dict[str, str] = Field(
        default_factory=dict,
        description='absolute pass/fail limits, e.g. {ttft_p95: "<500ms", error_rate: "<1%"}: '
                    "bench run exits 1 when one is broken",
    )
    percentiles: list[Annotated[float, Field(gt=0, lt=100)]] | None = Field(
        None, description="percentiles of every latency in summaries (default 50, 90, 95, 99)"
    )
    store_text: bool = False
    abort_on: AbortOn = Field(default_factory=AbortOn)
    stop_when: StopWhen | None = None
    prune: Prune | bool = False
    placement: Placement = Field(default_factory=Placement)
    targets: list[str] | None = Field(
        None, description="several existing servers (base URLs) measured side by side: a target axis, "
                          "one group of cells per server")

    # Where the scenario came from, so later checks (bench.plan) can name FILE:LINE too.
    _source: str = PrivateAttr(default="<scenario>")
    _root: Any = PrivateAttr(default=None)

    def where(self, *loc: str | int) -> str:
        """`FILE:LINE: dotted.path` of a field, for error messages raised after loading."""
        line, path = _line_for(self._root, loc)
        return f"{self._source}:{line}: {'.'.join(str(p) for p in loc)}"

    @field_validator("slos")
    @classmethod
    def _slo_values(cls, slos: dict[str, str | float]) -> dict[str, str | float]:
        for metric, value in slos.items():
            if not _METRIC_NAME_RE.match(metric):
                raise ValueError(f"{metric!r} is not a metric name like ttft_p95")
            if isinstance(value, str) and not _SLO_VALUE_RE.match(value):
                raise ValueError(f"{metric}: {value!r} is not a number or a duration like 2s, 100ms")
        return slos

    @field_validator("target")
    @classmethod
    def _target_url(cls, target: str | None) -> str | None:
        if target is not None and target not in ("sim", "managed"):
            base_url_of(target)  # ValueError: one line at the target's line
        return target

    @field_validator("thresholds")
    @classmethod
    def _threshold_forms(cls, thresholds: dict[str, str]) -> dict[str, str]:
        for metric, limit in thresholds.items():
            if not _THRESHOLD_METRIC_RE.match(metric):
                raise ValueError(f"{metric!r} is not a metric name like ttft_p95")
            if not isinstance(limit, str) or not _THRESHOLD_RE.match(limit):
                raise ValueError(f"{metric}: {limit!r} is not a limit like \"<500ms\", \">20\", \"<1%\"")
        return thresholds

    @field_validator("percentiles")
    @classmethod
    def _distinct_percentiles(cls, values: list[float] | None) -> list[float] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("give at least one percentile")
        if len(set(values)) != len(values):
            raise ValueError("a percentile is listed twice")
        return sorted(values)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if name is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise ValueError("must be the NAME of an environment variable, not a key")
        return name

    @field_validator("targets")
    @classmethod
    def _target_urls(cls, targets: list[str] | None) -> list[str] | None:
        if targets is not None:
            if not targets:
                raise ValueError("name at least one base URL")
            for url in targets:
                base_url_of(url)  # ValueError: one line at the targets' line
            if len(set(targets)) != len(targets):
                raise ValueError("a URL is listed twice")
        return targets

    @model_validator(mode="after")
    def _target_vs_server(self) -> Scenario:
        if self.server is not None and self.target not in (None, "managed"):
            raise ValueError("target: leave it out when a server: block manages the server")
        if self.targets is not None and (self.server is not None or self.target is not None):
            raise ValueError("targets: a list of servers replaces target: and server:, give only one")
        return self

    @model_validator(mode="after")
    def _conversations_are_closed_loop(self) -> Scenario:
        # A virtual user waits for a reply before its next turn: only the closed loop has users.
        open_loop = [a for a in self.load.arrival if a != "closed"]
        if self.workload.conversation is not None and "sweep" in self.load.arrival:
            raise ValueError("load: arrival sweep cannot drive conversations (its rate steps are "
                             "open loop); use arrival: closed")
        open_loop = [a for a in open_loop if a not in ("sweep", "trace")]
        if self.workload.conversation is not None and open_loop:
            raise ValueError(f"load: arrival {open_loop[0]} cannot drive conversations "
                             "(each user waits for its reply); use arrival: closed")
        return self

    def percentile_values(self) -> tuple[float, ...]:
        """The percentiles summaries compute: the scenario's (else p50/p90/p95/p99), plus any a
        threshold or SLO names (`ttft_p99.9`), so every limit has its column."""
        chosen = list(self.percentiles) if self.percentiles else list(DEFAULT_PERCENTILES)
        for metric in [*self.thresholds, *self.slos]:
            match = re.search(r"_p(\d+(?:\.\d+)?)$", metric.removesuffix("_s"))
            if match is not None and 0 < float(match.group(1)) < 100:
                chosen.append(float(match.group(1)))
        return tuple(sorted({float(p) for p in chosen}))

    def threshold_limits(self) -> list[Threshold]:
        """The thresholds as comparisons: durations in seconds, percentages as fractions."""
        return [parse_threshold(metric, limit) for metric, limit in self.thresholds.items()]

    def slo_values(self) -> dict[str, float]:
        """SLOs as numbers: durations in seconds, rates as given."""
        return {metric: parse_slo_value(value) for metric, value in self.slos.items()}


_MODEL_NAMES = {"Distribution", "PromptSpec", "Workload", "Load", "Pace", "SimTarget", "ServerBlock",
                "Matrix", "AbortOn", "Scenario"}


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


# --- loading with line numbers ---------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """SafeLoader (no arbitrary objects) that also exposes the composed node tree."""


def _compose_and_construct(text: str, source: str) -> tuple[Any, yaml.Node | None, list[str]]:
    """(data, root node, duplicate-key problems); ScenarioError for YAML that cannot be read."""
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None, []
        _refuse_alias_bombs(node, source)
        duplicates = _duplicate_keys(node, source)
        return loader.construct_document(node), node, duplicates
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = error.problem or error.context or "invalid YAML"
        raise ScenarioError(f"{source}:{line}: YAML syntax error: {problem}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, max(0, error.position)) + 1
        raise ScenarioError(
            f"{source}:{line}: YAML syntax error: character #x{error.character:04x} is not allowed"
        ) from None
    except yaml.YAMLError as error:
        summary = str(error).replace("\n", " ")
        raise ScenarioError(f"{source}:1: YAML error: {summary}") from None
    except RecursionError:
        raise ScenarioError(f"{source}:1: YAML error: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _refuse_alias_bombs(root: yaml.Node, source: str) -> None:
    """Aliases share nodes: count the document as expanded (memoised per node, so the count
    itself is linear in the file) and refuse a recursive alias or a "billion laughs"."""
    expanded: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: a deep document must not hit Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            expanded[key] = 1 + sum(expanded[id(child)] for child in _children(node))
            if expanded[key] > MAX_YAML_NODES:
                raise ScenarioError(
                    f"{source}:{node.start_mark.line + 1}: YAML aliases expand to more than "
                    f"{MAX_YAML_NODES} values (an alias bomb?)"
                )
            continue
        if key in expanded:
            continue
        if key in on_path:
            raise ScenarioError(f"{source}:{node.start_mark.line + 1}: YAML alias refers to itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in expanded)


def _duplicate_keys(root: yaml.Node, source: str) -> list[str]:
    # yaml.safe_load keeps the last of two equal keys silently; a benchmark must not guess.
    # A node shared by aliases is checked once (its duplicates are the same wherever it is used).
    problems: list[str] = []
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                field_path = f"{path}.{key}" if path else key
                if key in seen:
                    problems.append(f"{source}:{key_node.start_mark.line + 1}: "
                                    f"{plain_terminal(field_path)}: duplicate key")
                seen.add(key)
                children.append((value_node, field_path))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        stack.extend(reversed(children))  # document order: a shared node is named where first written
    return problems


def _line_number(problem: str) -> int:
    match = re.search(r":(\d+): ", problem)
    return int(match.group(1)) if match else 0


def _line_for(root: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int, list[str]]:
    """Follow a pydantic error location through the YAML nodes; return (line, readable path).

    Union branch names and list-wrapping indexes that have no node are skipped, so the line is
    that of the deepest node the location reaches.
    """
    if root is None:
        return 1, [str(part) for part in loc if isinstance(part, (str, int))]
    node = root
    line = node.start_mark.line + 1
    path: list[str] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                if str(key_node.value) == part:
                    path.append(part)
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                if _is_field_name(part):
                    # A missing required field: report it at the mapping that lacks it.
                    path.append(part)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                path.append(f"[{part}]")
                node = node.value[part]
                line = node.start_mark.line + 1
    return line, path


def _is_field_name(part: str) -> bool:
    # pydantic's union-branch tags look like "list[int]" or "function-after[...]"; field names don't.
    return re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", part) is not None and part not in {
        "str", "int", "float", "bool", "dict", "list", "none", "literal",
    }


def _located(error: dict[str, Any], root: yaml.Node | None) -> tuple[int, list[str], str]:
    message: str = error["msg"]
    message = message.removeprefix("Value error, ")
    loc = tuple(error["loc"])
    # Cross-field checks name the field they blame: "rate_rps: ...". Point at that field's line.
    named = re.match(r"^([A-Za-z_][A-Za-z0-9_]*): (.*)$", message)
    if named is not None and error["type"] == "value_error":
        loc = loc + (named.group(1),)
        message = named.group(2)
    if error["type"] == "extra_forbidden":
        message = "unknown field" + _did_you_mean(loc)
    line, path = _line_for(root, loc)
    return line, path, message


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """` (did you mean concurrency?)` for a misspelt field name, else ""."""
    model: Any = Scenario
    for part in loc[:-1]:
        field_info = model.model_fields.get(part) if isinstance(part, str) else None
        if field_info is None:
            continue  # a list index or a union tag: stay at this model
        nested = _model_in(field_info.annotation)
        if nested is None:
            return ""
        model = nested
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The scenario model inside an annotation such as `ServerBlock | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _is_union_tag(part: Any) -> bool:
    # pydantic names union branches "list[int]", "function-after[...]", "str", "Distribution".
    return isinstance(part, str) and (
        "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none"}
        or part in _MODEL_NAMES
    )


def _problem_key(error: dict[str, Any]) -> tuple[Any, ...]:
    """Errors of one mistake share this key: the location up to the first union branch."""
    key: list[Any] = []
    for part in error["loc"]:
        if _is_union_tag(part):
            break
        key.append(part)
    return tuple(key)


def _format_errors(errors: list[dict[str, Any]], root: yaml.Node | None, source: str) -> list[str]:
    """One line per mistake, in file order.

    For union fields pydantic reports one error per branch. The branch whose location goes
    deepest into the user's YAML, and that is not a mere type mismatch, explains it best.
    """
    by_mistake: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for error in errors:
        by_mistake.setdefault(_problem_key(error), []).append(error)

    def score(error: dict[str, Any]) -> tuple[int, int]:
        _, path, _ = _located(error, root)
        return (len(path), 0 if error["type"].endswith("_type") else 1)

    lines: list[tuple[int, str]] = []
    for candidates in by_mistake.values():
        line, path, message = _located(max(candidates, key=score), root)
        dotted = ".".join(path).replace(".[", "[") or "(top level)"
        # Keys are the user's text: a newline or an escape in one must not break the line.
        problem = f"{source}:{line}: {plain_terminal(dotted)}: {plain_terminal(message)}"
        if problem not in (text for _, text in lines):
            lines.append((line, problem))
    return [text for _, text in sorted(lines, key=lambda pair: pair[0])]


def parse_scenario(text: str, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Parse scenario YAML text; raises ScenarioError, one line `SOURCE:LINE: field: message`
    per problem found (all of them, in file order)."""
    data, root, problems = _compose_and_construct(text, source)
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: (top level): a scenario must be a mapping of fields")
    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        problems += _format_errors(error.errors(include_url=False), root, source)
    except RecursionError:
        problems.append(f"{source}:1: (top level): nested too deeply")
    if scenario is None or problems:
        raise ScenarioError("\n".join(sorted(problems, key=_line_number)))
    scenario._source, scenario._root = source, root
    prompt_file = scenario.workload.prompt.file
    if prompt_file is not None and base_dir is not None and not Path(prompt_file).is_absolute():
        scenario.workload.prompt.file = str((base_dir / prompt_file).resolve())
    if scenario.workload.prompt.file is not None and not Path(scenario.workload.prompt.file).is_file():
        line, _ = _line_for(root, ("workload", "prompt", "file"))
        raise ScenarioError(
            f"{source}:{line}: workload.prompt.file: no such file {scenario.workload.prompt.file}"
        )
    trace = scenario.load.trace
    if trace is not None:
        if base_dir is not None and not Path(trace.file).is_absolute():
            trace.file = str((base_dir / trace.file).resolve())
        if not Path(trace.file).is_file():
            line, _ = _line_for(root, ("load", "trace", "file"))
            raise ScenarioError(f"{source}:{line}: load.trace.file: no such file {trace.file}")
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    scenario_path = Path(path)
    try:
        text = scenario_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{scenario_path}: no such file") from None
    except IsADirectoryError:
        raise ScenarioError(f"{scenario_path}: is a directory, not a scenario file") from None
    except UnicodeDecodeError as error:
        raise ScenarioError(f"{scenario_path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ScenarioError(f"{scenario_path}: cannot read ({error.strerror or error})") from None
    return parse_scenario(text, str(scenario_path), scenario_path.parent)


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema of the scenario file, for editors (yaml-language-server)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bench scenario"
    return schema


# --- scenarios from command-line flags, and back to YAML ---------------------------------------


# Scenario fields -> the `bench run` flag that sets them, for errors of a flag-only run.
_FLAG_OF_FIELD = {
    "workload.model": "--model", "workload.endpoint": "--endpoint",
    "workload.prompt.tokens": "--prompt-tokens", "workload.prompt.file": "--prompt-file",
    "workload.prompt.shared_prefix_tokens": "--shared-prefix-tokens",
    "workload.prompt.cache": "--prompt-cache", "workload.max_tokens": "--max-tokens",
    "workload.num_ctx": "--num-ctx", "workload.conversation.turns": "--turns",
    "workload.conversation.think_time_s": "--think-time", "load.rate_rps": "--rate",
    "load.arrival": "--arrival", "load.concurrency": "--concurrency", "slos": "--slo",
    "thresholds": "--threshold", "percentiles": "--percentiles", "sim.env": "--sim-env",
}


def _dict_error(errors: list[dict[str, Any]], source: str, flags: bool) -> str:
    """One line for a scenario given as a dict: the field path (or the flag that set it)."""
    _, located_path, message = _located(errors[0], None)
    path = [f"[{part}]" if isinstance(part, int) else part for part in errors[0]["loc"]
            if isinstance(part, int) or _is_field_name(str(part))]
    if located_path and located_path[-1] not in path and _is_field_name(located_path[-1]):
        path.append(located_path[-1])  # a cross-field check names the field it blames
    dotted = ".".join(path).replace(".[", "[") or "(top level)"
    if flags:
        for field_path, flag in _FLAG_OF_FIELD.items():
            if dotted == field_path or dotted.startswith((field_path + ".", field_path + "[")):
                return f"{flag}: {message}"
    return f"{source}: {dotted}: {message}"


def scenario_from_dict(data: dict[str, Any], source: str = "<scenario>",
                       flags: bool = False) -> Scenario:
    """Validate a scenario given as a Python dict (the Python API, flag-only runs)."""
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(_dict_error(error.errors(include_url=False), source, flags)) from None
    scenario._source = source
    prompt_file = scenario.workload.prompt.file
    if prompt_file is not None and not Path(prompt_file).is_file():
        raise ScenarioError(f"{source}: workload.prompt.file: no such file {prompt_file}")
    if scenario.load.trace is not None and not Path(scenario.load.trace.file).is_file():
        raise ScenarioError(f"{source}: load.trace.file: no such file {scenario.load.trace.file}")
    return scenario


def scenario_to_yaml(scenario: Scenario) -> str:
    """The scenario as YAML that loads back into the same scenario (defaults left out)."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def with_run_settings(scenario: Scenario, *, target: str | None = None,
                      sim_speed: float | None = None, requests: int | None = None,
                      duration_s: float | None = None, warmup_requests: int | None = None,
                      repeats: int | None = None) -> Scenario:
    """The scenario with command-line settings written into it: what the run really ran.

    Requests or a duration replace both (as bench.plan's overrides do), so the same cells plan.
    """
    data = scenario.model_dump(mode="json")
    load = data["load"]
    if requests is not None or duration_s is not None:
        load["requests"] = [requests] if requests is not None else None
        load["duration_s"] = [duration_s] if duration_s is not None else None
    if warmup_requests is not None:
        load["warmup_requests"] = warmup_requests
    if repeats is not None:
        load["repeats"] = repeats
    if target is not None and data.get("server") is None:
        data["target"] = target
    if sim_speed is not None:
        data["sim"]["speed"] = sim_speed
    resolved = Scenario.model_validate(data)
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved


def with_sim_engine(scenario: Scenario, engine: str, target: str | None = None) -> Scenario:
    """The scenario with the embedded simulator's engine set (`bench run --sim-engine`).

    Replaces any `--engine` in `sim.args`, so the same file runs on the simulated engine and on
    llama-server unchanged; UsageError when the target is not the embedded simulator.
    """
    if scenario.server is not None or (target or scenario.target) != "sim":
        raise UsageError(f"--sim-engine {engine}: only for target: sim (the embedded simulator)")
    data = scenario.model_dump(mode="json")
    kept: list[str] = []
    skip = False
    for arg in data["sim"]["args"]:
        if skip:
            skip = False
        elif arg == "--engine":
            skip = True
        elif not arg.startswith("--engine="):
            kept.append(arg)
    data["sim"]["args"] = [*kept, "--engine", engine]
    resolved = Scenario.model_validate(data)
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved


def flag_scenario(*, model: list[str], target: str | None = None, name: str = "flags",
                  endpoint: list[str] | None = None, prompt_tokens: list[int] | None = None,
                  prompt_file: str | None = None, max_tokens: list[int] | None = None,
                  num_ctx: list[int] | None = None, temperature: float | None = None,
                  seed: int | None = None, arrival: list[str] | None = None,
                  concurrency: list[int] | None = None, rate_rps: list[float] | None = None,
                  requests: int | None = None, duration_s: float | None = None,
                  warmup_requests: int | None = None, repeats: int | None = None,
                  turns: list[int] | None = None, think_time_s: float | None = None,
                  shared_prefix_tokens: list[int] | None = None,
                  prompt_cache: list[str] | None = None, sim_gpu: str | None = None,
                  sim_env: dict[str, str] | None = None, slos: dict[str, str] | None = None,
                  thresholds: dict[str, str] | None = None,
                  percentiles: list[float] | None = None) -> Scenario:
    """A scenario from `bench run` flags alone (no file); unset flags keep the scenario defaults."""
    if prompt_file is not None:
        prompt_file = str(Path(prompt_file).resolve())  # the stored scenario.yaml may move
    prompt: dict[str, Any] = {"tokens": prompt_tokens, "file": prompt_file,
                              "shared_prefix_tokens": shared_prefix_tokens, "cache": prompt_cache}
    workload: dict[str, Any] = {
        "model": model, "endpoint": endpoint, "max_tokens": max_tokens, "num_ctx": num_ctx,
        "temperature": temperature, "seed": seed,
        "prompt": {k: v for k, v in prompt.items() if v is not None},
    }
    if turns is not None or think_time_s is not None:
        workload["conversation"] = {k: v for k, v in
                                    {"turns": turns, "think_time_s": think_time_s}.items()
                                    if v is not None}
    load = {"arrival": arrival, "concurrency": concurrency, "rate_rps": rate_rps,
            "requests": requests, "duration_s": duration_s, "warmup_requests": warmup_requests,
            "repeats": repeats}
    sim = {"gpu": sim_gpu, "env": sim_env}
    data = {
        "name": name, "target": target,
        "sim": {k: v for k, v in sim.items() if v is not None},
        "workload": {k: v for k, v in workload.items() if v is not None},
        "load": {k: v for k, v in load.items() if v is not None},
        "slos": slos or {}, "thresholds": thresholds or {}, "percentiles": percentiles,
    }
    return scenario_from_dict(data, source="command line", flags=True)


def with_outputs(scenario: Scenario, *, percentiles: list[float] | None = None,
                 thresholds: dict[str, str] | None = None) -> Scenario:
    """The scenario with --percentiles replacing its percentiles and --threshold added to its own."""
    if not percentiles and not thresholds:
        return scenario
    data = scenario.model_dump(mode="json")
    if percentiles:
        data["percentiles"] = percentiles
    if thresholds:
        data["thresholds"] = {**data["thresholds"], **thresholds}
    try:
        resolved = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(_dict_error(error.errors(include_url=False), "command line", True)) from None
    resolved._source, resolved._root = scenario._source, scenario._root
    return resolved
