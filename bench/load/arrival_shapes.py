"""Open-loop arrival shapes beyond a steady rate: bursty arrivals, ramp-up, and k6-style stages.

The same knobs their users know, with the same meanings:
- `burstiness` (`vllm bench serve --burstiness`): gaps are gamma-distributed with shape
  `burstiness` and mean 1/rate. 1 is Poisson; below 1 requests come in bursts with lulls between;
  above 1 they come more evenly than Poisson (a constant rate is the limit).
- `ramp_up` (`vllm bench serve --ramp-up-strategy linear|exponential --ramp-up-start-rps
  --ramp-up-end-rps`): the rate moves from start to end over the cell — by request index when the
  cell has a request count (as vllm does), else over its duration — linearly, or geometrically
  (start × (end/start)^progress).
- `stages` (k6's ramping-arrival-rate executor): a list of (duration, target rate); the rate moves
  linearly from the previous stage's target (the first from `rate_rps`, else 0) to each target over
  that stage's duration, and holds the last target after the stages end.

Pure and self-contained: an `ArrivalShape` and a seeded `random.Random` give the arrival offsets;
the load engine only iterates them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bench.records.cell_settings import CellSettings
    from bench.scenario.blocks import Load

RampStrategy = Literal["linear", "exponential"]
# A stage that ramps from 0 would ask for an infinite first gap; this floor (one request per
# 1000 s) lets the schedule move on to where the rate has grown.
_MIN_RATE_RPS = 1e-3
_STEP_S = 0.05  # integration step of a time-varying rate: 50 ms moves a stage's rate by little


@dataclass(frozen=True)
class Stage:
    duration_s: float
    target_rps: float


@dataclass(frozen=True)
class ArrivalShape:
    """How an open loop's arrivals are spaced. The default is the steady rate `rate_rps`."""

    arrival: Literal["constant", "poisson"] = "poisson"
    rate_rps: float | None = None
    burstiness: float = 1.0  # gamma shape of the gaps (poisson only): 1 = Poisson
    ramp_strategy: RampStrategy | None = None
    ramp_start_rps: float | None = None
    ramp_end_rps: float | None = None
    stages: tuple[Stage, ...] = ()
    requests: int | None = None  # the cell's request count: ramp progress by index when known
    duration_s: float | None = None  # else by time over this

    def rate_at(self, index: int, offset_s: float) -> float:
        """The rate the schedule asks for at the `index`-th arrival, `offset_s` into the cell."""
        if self.stages:
            return max(_MIN_RATE_RPS, _stage_rate(self.stages, self.rate_rps or 0.0, offset_s))
        if self.ramp_strategy is not None and self.ramp_start_rps is not None and self.ramp_end_rps is not None:
            progress = _progress(index, offset_s, self.requests, self.duration_s)
            start, end = self.ramp_start_rps, self.ramp_end_rps
            if self.ramp_strategy == "exponential":
                return float(start * (end / start) ** progress)
            return start + (end - start) * progress
        if self.rate_rps is None:
            raise ValueError("an arrival shape needs rate_rps, ramp_up or stages")
        return self.rate_rps

    def _unit_gap(self, rng: random.Random) -> float:
        """A gap at rate 1 (the time-rescaling theorem: a gap at rate r is this / r)."""
        if self.arrival == "constant":
            return 1.0
        if self.burstiness == 1.0:
            return rng.expovariate(1.0)  # Poisson: the draws bench always made, rescaled
        # Gamma with shape k and scale 1/k: mean 1, coefficient of variation 1/√k.
        return rng.gammavariate(self.burstiness, 1.0 / self.burstiness)

    def _varies_in_time(self) -> bool:
        return bool(self.stages) or (self.ramp_strategy is not None and not (self.requests and self.requests > 1))

    def _next_offset(self, index: int, offset_s: float, unit_gap: float) -> float:
        """Where a gap of `unit_gap` at rate 1 ends when the rate varies: the rate is integrated
        in short steps (its midpoint each), so a ramp from 0 does not wait out its first rate."""
        if not self._varies_in_time():
            return offset_s + unit_gap / self.rate_at(index, offset_s)
        left = unit_gap
        while True:
            rate = max(_MIN_RATE_RPS, self.rate_at(index, offset_s + _STEP_S / 2))
            if left / rate <= _STEP_S:
                return offset_s + left / rate
            offset_s += _STEP_S
            left -= rate * _STEP_S

    def offsets_s(self, rng: random.Random) -> Iterator[float]:
        """Endless arrival times, seconds from the cell's start (the first at 0)."""
        offset = 0.0
        index = 0
        while True:
            yield offset
            index += 1
            offset = self._next_offset(index, offset, self._unit_gap(rng))


def _progress(index: int, offset_s: float, requests: int | None, duration_s: float | None) -> float:
    if requests is not None and requests > 1:
        return min(1.0, index / (requests - 1))
    if duration_s:
        return min(1.0, offset_s / duration_s)
    return 1.0


def _stage_rate(stages: tuple[Stage, ...], initial_rps: float, offset_s: float) -> float:
    begin_s, begin_rps = 0.0, initial_rps
    for stage in stages:
        end_s = begin_s + stage.duration_s
        if offset_s < end_s:
            share = (offset_s - begin_s) / stage.duration_s if stage.duration_s > 0 else 1.0
            return begin_rps + (stage.target_rps - begin_rps) * share
        begin_s, begin_rps = end_s, stage.target_rps
    return begin_rps


def shape_for(settings: CellSettings, load: Load) -> ArrivalShape | None:
    """An open-loop cell's shape from the scenario's burstiness, ramp_up or stages; None when steady."""
    arrival = settings.arrival
    if (arrival != "constant" and arrival != "poisson") or not (load.burstiness or load.ramp_up or load.stages):
        return None
    ramp = load.ramp_up
    return ArrivalShape(
        arrival=arrival, rate_rps=settings.rate_rps, burstiness=load.burstiness or 1.0,
        ramp_strategy=ramp.strategy if ramp else None, ramp_start_rps=ramp.start_rps if ramp else None,
        ramp_end_rps=ramp.end_rps if ramp else None,
        stages=tuple(Stage(stage.duration_s, stage.target_rps) for stage in load.stages or ()),
        requests=settings.requests, duration_s=settings.duration_s)
