"""The scenario's blocks (pydantic): prompts, workload, load, simulator and server, stop rules."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.numbers import MAX_RATE_RPS
from bench.scenario.arrivals import ShapeFields, check_shape
from bench.scenario.fields import (
    _DURATION_RE,
    Arrival,
    Concurrency,
    EndpointName,
    Int64,
    KeepAlive,
    NonNegativeFloat,
    NonNegativeInt,
    NonNegativeSeconds,
    PositiveFloat,
    PositiveInt,
    Seconds,
    _axis,
    _split_quietly,
    refuse_listen_args,
)


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
    low: NonNegativeSeconds | None = Field(None, description="uniform: shortest")
    high: NonNegativeSeconds | None = Field(None, description="uniform: longest")
    mean: NonNegativeSeconds | None = Field(None, description="exponential: mean")

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
    think_time_s: NonNegativeSeconds | SecondsDistribution = Field(
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
    """Replay a JSONL trace with its original timing (bench.workload.trace)."""

    file: str = Field(description="JSONL: timestamp, prompt or prompt_tokens, max_tokens, conversation_id")
    time_scale: Annotated[float, Field(gt=0, le=1000)] = Field(
        1.0, description="multiply the trace's gaps: 0.5 replays twice as fast"
    )


class Load(ShapeFields):  # burstiness, ramp_up, stages: bench.scenario.arrivals
    arrival: _axis(Arrival) = Field(default_factory=lambda: ["closed"])  # type: ignore[valid-type]
    concurrency: _axis(Concurrency) | None = Field(  # type: ignore[valid-type]
        None, description="closed loop: workers; open loop: cap on requests in flight"
    )
    rate_rps: _axis(Annotated[float, Field(gt=0, le=MAX_RATE_RPS, strict=True)]) | None = None  # type: ignore[valid-type]
    requests: _axis(PositiveInt) | None = None  # type: ignore[valid-type]
    duration_s: _axis(Seconds) | None = None  # type: ignore[valid-type]
    warmup_requests: NonNegativeInt = 1
    repeats: Annotated[int, Field(ge=1, le=1000, strict=True)] = 1
    timeout_s: Seconds = Field(300.0, description="give up on a request when no byte arrives for this long")
    request_deadline_s: Seconds | None = Field(
        None, description="give up on a whole request after this long (default: timeout_s plus one "
                          "second per max_tokens token; a server that streams forever ends here)")

    sweep: SweepSpec = Field(default_factory=SweepSpec, description="for arrival: sweep")
    trace: TraceSpec | None = Field(None, description="for arrival: trace")

    @model_validator(mode="after")
    def _consistent(self) -> Load:
        if "trace" in self.arrival and self.trace is None:
            raise ValueError("trace: required for arrival trace ({file: trace.jsonl})")
        open_loop = [a for a in self.arrival if a not in ("closed", "sweep", "trace")]
        check_shape(self.arrival, self.rate_rps, self.burstiness, self.ramp_up, self.stages)
        shaped = self.ramp_up is not None or self.stages is not None
        if self.rate_rps is not None and not open_loop:
            raise ValueError("rate_rps: needs arrival constant or poisson (closed loop has no rate)")
        if open_loop and self.rate_rps is None and not shaped:
            raise ValueError(f"rate_rps: required for arrival {open_loop[0]} (or ramp_up:, stages:)")
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
    calibrate: str | None = Field(
        None, description="a run directory measured at concurrency 1 on a real server: its prefill and decode "
                          "rates become the GPU profile (bench sim --calibrate)")
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

    @model_validator(mode="after")
    def _one_profile(self) -> SimTarget:
        if self.gpu and self.calibrate:
            raise ValueError("gpu and calibrate: the calibration is the GPU profile; give one of them")
        return self


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
        default=0.05, description="throughput growing less than this fraction over the lower concurrency is flat")


class Placement(_Strict):
    """What a node must have to run one server group under `bench run --ray`."""

    resources: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="Ray resources per group, e.g. {GPU: 1} or {L4: 1}")
    num_cpus: Annotated[float, Field(gt=0)] = 1.0
