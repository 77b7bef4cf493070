"""Client health: what the load engine observed of itself per cell (dispatch lag, CPU time), and
whether the client rather than the server was the bottleneck.

The client is flagged `saturated` when lag p99 exceeds SATURATION_LAG_P99_S or its CPU time exceeds
SATURATION_CPU_FRACTION of wall time: then the numbers describe the client, not the server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

SATURATION_LAG_P99_S = 0.05  # a loop this late means arrivals are no longer what was asked
SATURATION_CPU_FRACTION = 0.8  # of one core: past this, the client competes for its own loop
# Dispatch lags kept per cell: a uniform sample of this many (reservoir sampling), so an hour at
# hundreds of requests per second holds the client's memory flat; p99 of 10k draws is within a
# fraction of a percentile of the exact one.
LAG_SAMPLE_SIZE = 10_000


@dataclass
class CellOutcome:
    """What the load engine observed for one cell (the records went to the sink)."""

    complete: bool
    dispatched: int = 0
    completed: int = 0
    dispatch_lags_s: list[float] = field(default_factory=list)  # all, or a uniform sample
    cpu_s: float = 0.0
    wall_s: float = 0.0
    lags_seen: int = 0
    _lag_rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False)

    def add_lag(self, lag_s: float) -> None:
        """Keep a dispatch lag: every one up to LAG_SAMPLE_SIZE, then a uniform sample (Algorithm R)."""
        self.lags_seen += 1
        if len(self.dispatch_lags_s) < LAG_SAMPLE_SIZE:
            self.dispatch_lags_s.append(lag_s)
            return
        slot = self._lag_rng.randrange(self.lags_seen)
        if slot < LAG_SAMPLE_SIZE:
            self.dispatch_lags_s[slot] = lag_s


@dataclass(frozen=True)
class ClientHealth:
    cpu_s: float
    wall_s: float
    dispatch_lag_p99_s: float | None
    saturated: bool


def client_health(outcomes: list[CellOutcome]) -> ClientHealth:
    """Was the load generator itself the bottleneck? (see SATURATION_* above)"""
    lags = [lag for outcome in outcomes for lag in outcome.dispatch_lags_s]
    cpu_s = sum(outcome.cpu_s for outcome in outcomes)
    wall_s = sum(outcome.wall_s for outcome in outcomes)
    lag_p99_s = float(np.percentile(lags, 99)) if lags else None
    saturated = (lag_p99_s is not None and lag_p99_s > SATURATION_LAG_P99_S) or (
        wall_s > 1.0 and cpu_s / wall_s > SATURATION_CPU_FRACTION
    )
    return ClientHealth(cpu_s=round(cpu_s, 3), wall_s=round(wall_s, 3),
                        dispatch_lag_p99_s=lag_p99_s, saturated=saturated)
