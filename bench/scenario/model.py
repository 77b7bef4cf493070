"""The scenario model (pydantic): the top-level `Scenario` and its cross-field checks."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import PrivateAttr, Field, field_validator, model_validator

from bench.endpoints import base_url_of
from bench.scenario.blocks import (
    AbortOn,
    Load,
    Matrix,
    Pace,
    Placement,
    Prune,
    ServerBlock,
    SimTarget,
    StopWhen,
    Workload,
    _Strict,
)
from bench.scenario.fields import (
    _METRIC_NAME_RE,
    _SLO_VALUE_RE,
    _THRESHOLD_METRIC_RE,
    _THRESHOLD_RE,
    DEFAULT_PERCENTILES,
    Threshold,
    parse_slo_value,
    parse_threshold,
    refuse_impossible_threshold,
)
from bench.scenario.yaml_lines import _line_for


class Scenario(_Strict):
    """A benchmark scenario: what to hit, with which requests, at which load, over which matrix."""

    name: str = "scenario"
    description: str = ""
    target: str | None = Field(None, description="base URL, `sim`, or `ollama` (a managed real Ollama that "
                                                  "`bench ollama build` built); default from OLLAMA_HOST")
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
            if not parse_slo_value(value) > 0:  # also NaN; a limit of 0 or less is met by nothing
                raise ValueError(f"{metric}: {value!r}: an SLO is a limit above 0")
        return slos

    @field_validator("target")
    @classmethod
    def _target_url(cls, target: str | None) -> str | None:
        if target is not None and target not in ("sim", "managed", "ollama"):
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
            refuse_impossible_threshold(parse_threshold(metric, limit))
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
        if self.server is not None and self.target not in (None, "managed", "ollama"):
            raise ValueError("target: leave it out when a server: block manages the server")
        if self.server is not None and self.target == "ollama" and self.server.argv != ["ollama", "serve"]:
            # target: ollama runs the Ollama `bench ollama build` made; the block gives its env only.
            raise ValueError("target: ollama runs bench's built `ollama serve`; leave server.command out")
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
