"""The scenario's arrival-shape fields of `load:` (pydantic): ramp-up and k6-style stages, and the
checks that tie them and `burstiness` to an open loop. The schedule itself: bench.load.arrival_shapes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bench.numbers import MAX_RATE_RPS
from bench.scenario.fields import Seconds

Rate = Annotated[float, Field(ge=0, le=MAX_RATE_RPS, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RampUp(_Strict):
    """`vllm bench serve --ramp-up-strategy/--ramp-up-start-rps/--ramp-up-end-rps`."""

    strategy: Literal["linear", "exponential"] = Field(description="how the rate moves from start to end")
    start_rps: Rate = Field(description="the rate at the cell's first request")
    end_rps: Annotated[float, Field(gt=0, le=MAX_RATE_RPS, strict=True)] = Field(
        description="the rate at its last request (or at the end of duration_s)")

    @model_validator(mode="after")
    def _exponential_from_above_zero(self) -> RampUp:
        if self.strategy == "exponential" and self.start_rps <= 0:
            raise ValueError("start_rps: an exponential ramp multiplies the rate, so it must start above 0")
        return self


class StageSpec(_Strict):
    """One k6 stage: the rate moves linearly to `target_rps` over `duration_s`."""

    duration_s: Seconds
    target_rps: Rate


class ShapeFields(_Strict):
    """The arrival-shape fields of `load:` (the Load block inherits them)."""

    burstiness: Annotated[float, Field(gt=0, le=1000, strict=True)] | None = Field(
        None, description="arrival poisson: gamma shape of the gaps (vllm --burstiness): 1 = Poisson, <1 bursty")
    ramp_up: RampUp | None = Field(None, description="open loop: the rate moves from start_rps to end_rps")
    stages: list[StageSpec] | None = Field(
        None, min_length=1, description="open loop, k6 style: [{duration_s, target_rps}], from rate_rps (or 0)")


def check_shape(arrivals: list[str], rate_rps: list[float] | None, burstiness: float | None,
                ramp_up: RampUp | None, stages: list[StageSpec] | None) -> None:
    """One-line errors for shapes the arrivals cannot take (raised as ValueError for pydantic)."""
    open_loop = [a for a in arrivals if a in ("constant", "poisson")]
    if burstiness is not None and "poisson" not in arrivals:
        raise ValueError("burstiness: needs arrival poisson (its gaps become gamma-distributed; 1 = Poisson)")
    for name, given in (("ramp_up", ramp_up), ("stages", stages)):
        if given is not None and not open_loop:
            raise ValueError(f"{name}: needs arrival constant or poisson (a closed loop has no rate to shape)")
    if ramp_up is not None and stages is not None:
        raise ValueError("ramp_up and stages: give one of them (both shape the rate)")
    if ramp_up is not None and rate_rps is not None:
        raise ValueError("rate_rps: ramp_up sets the rate (start_rps to end_rps); drop rate_rps")
    if stages is not None and rate_rps is not None and len(rate_rps) > 1:
        raise ValueError("rate_rps: with stages it is the one starting rate, not an axis")
    if stages is not None and not any(stage.target_rps > 0 for stage in stages):
        raise ValueError("stages: every target_rps is 0, so no request would ever be sent")
