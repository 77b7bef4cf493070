"""Click parameter types that bound every number a flag takes (finite, in range), so a typo is
a one-line usage error before anything runs: `--duration inf` would never end, `--requests`
past 64 bits would overflow NumPy, `--port 99999` cannot be bound."""

from __future__ import annotations

import math
from typing import Any

import click

from bench.numbers import MAX_CONCURRENCY, MAX_COUNT, MAX_SECONDS


class BoundedFloat(click.ParamType):
    """A finite float in [low, high] (low excluded when low_open)."""

    name = "number"

    def __init__(self, low: float, high: float, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r}: must be a finite number", param, ctx)
        too_low = number <= self.low if self.low_open else number < self.low
        if too_low or number > self.high:
            bracket = "(" if self.low_open else "["
            self.fail(f"{value!r} is not in the range {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return number


COUNT = click.IntRange(1, MAX_COUNT)
COUNT_OR_ZERO = click.IntRange(0, MAX_COUNT)
REPEATS = click.IntRange(1, 1000)
CONCURRENCY = click.IntRange(1, MAX_CONCURRENCY)
LISTEN_PORT = click.IntRange(0, 65535)  # 0: any free port
SEED = click.IntRange(0, 2**63 - 1)
SECONDS = BoundedFloat(0.0, MAX_SECONDS, low_open=True)
SECONDS_OR_ZERO = BoundedFloat(0.0, MAX_SECONDS)
SPEED = BoundedFloat(0.0, 1e6, low_open=True)
FRACTION = BoundedFloat(0.0, 1.0)
