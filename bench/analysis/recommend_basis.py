"""What a NUM_PARALLEL recommendation rests on: requests per cell, the winner's and runner-up's
throughput intervals and the interval of their ratio, and whether they tie or the samples are too few (provisional).

Pure functions on a loaded run's records; bench.analysis.recommend calls them for the chosen cell
and the runner-up. The throughput interval is bench.analysis.stopping's (a paired bootstrap of
(tokens, e2e) with the mean in-flight requests held fixed), so the interval that stops a cell is
the interval that judges it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.samples import CONFIDENCE, MIN_SAMPLES, min_samples_for


# Throughputs within this fraction of each other are a tie whatever their intervals: a person picks
# the smaller setting (less KV memory) rather than a higher one that gains only noise.
TIE_FRACTION = 0.05
RESAMPLES = 2000
SEED = 20261207  # fixed: the same run always gives the same tie verdict


@dataclass(frozen=True)
class CellBasis:
    """One cell's sample basis: successful measured requests and its output tok/s interval."""

    cell_id: str
    ok: int
    output_tps_low: float
    output_tps_high: float
    # Per successful request (output tokens, e2e s) and the requests in flight on average: what
    # the throughput ratio between two cells is resampled from.
    tokens: tuple[float, ...] = ()
    e2e_s: tuple[float, ...] = ()
    in_flight: float = math.nan

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.output_tps_low) and math.isfinite(self.output_tps_high)

    def interval_text(self) -> str:
        if not self.has_interval:
            return "no interval"
        return f"95% CI {self.output_tps_low:.0f}–{self.output_tps_high:.0f}"

    def to_json(self) -> dict[str, Any]:
        finite = self.has_interval
        return {"cell_id": self.cell_id, "ok": self.ok,
                "output_tps_ci95": [self.output_tps_low, self.output_tps_high] if finite else None}


def cell_basis(requests: pd.DataFrame, cell_id: str) -> CellBasis:
    """The basis of one cell from a run's request records (warm-up excluded)."""
    from bench.analysis.metrics import request_metrics
    from bench.analysis.stopping import metric_interval

    cell = requests[requests["cell_id"] == cell_id]
    if "phase" in cell:
        cell = cell[cell["phase"].fillna("measure") == "measure"]
    if cell.empty:
        return CellBasis(cell_id, 0, math.nan, math.nan)
    frame = request_metrics(cell)
    ok = frame[frame["error_class"].isna()] if "error_class" in frame else frame
    interval = metric_interval("output_tps", ok, CONFIDENCE)
    tokens, e2e = ok["output_tokens_used"].to_numpy(float), ok["e2e_s"].to_numpy(float)
    keep = np.isfinite(tokens) & np.isfinite(e2e) & (e2e > 0)
    in_flight = math.nan
    if interval.value > 0 and keep.any():
        # Little's law, as stopping.metric_interval: rate = in_flight x sum(tokens) / sum(e2e).
        in_flight = interval.value * float(e2e[keep].sum()) / float(tokens[keep].sum())
    return CellBasis(cell_id, len(ok), interval.lo, interval.hi, tuple(tokens[keep]), tuple(e2e[keep]), in_flight)


def needed_samples(slo_metrics: list[str]) -> tuple[int, str]:
    """The most requests any SLO's percentile needs (ttft_p95: 40), and which metric asks for it."""
    if not slo_metrics:
        return min_samples_for("output_tps"), "output_tps"
    metric = max(slo_metrics, key=min_samples_for)
    return min_samples_for(metric), metric


def ratio_interval(chosen: CellBasis, other: CellBasis) -> tuple[float, float] | None:
    """95% bootstrap interval of other's output tok/s over chosen's, minus 1 (None: too few samples).

    Each cell's requests are resampled as (tokens, e2e) pairs with its in-flight mean held
    fixed (bench.analysis.stopping's rate interval), the two cells independently.
    """
    if min(len(chosen.tokens), len(other.tokens)) < MIN_SAMPLES or not (
            math.isfinite(chosen.in_flight) and math.isfinite(other.in_flight)):
        return None
    rng = np.random.default_rng(SEED)

    def rates(basis: CellBasis) -> np.ndarray:
        tokens, e2e = np.asarray(basis.tokens), np.asarray(basis.e2e_s)
        picks = rng.integers(0, len(tokens), size=(RESAMPLES, len(tokens)))
        return np.asarray(basis.in_flight * tokens[picks].sum(axis=1) / e2e[picks].sum(axis=1))

    change = rates(other) / rates(chosen) - 1.0
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.percentile(change, tail)), float(np.percentile(change, 100 - tail))


def tied(chosen: CellBasis, other: CellBasis) -> bool:
    """Whether two settings' throughputs cannot be told apart: the ratio's interval holds 1."""
    interval = ratio_interval(chosen, other)
    return interval is not None and interval[0] <= 0.0 <= interval[1]


def basis_text(bases: list[tuple[int, CellBasis]], needed: int, metric: str) -> str:
    """`samples: NP=4 n=45, NP=8 n=44 (ttft_p95 needs ≥40)`."""
    cells = ", ".join(f"NP={num_parallel} n={basis.ok}" for num_parallel, basis in bases)
    return f"samples: {cells} ({metric} needs ≥{needed})"


@dataclass(frozen=True)
class SampleBasis:
    """The chosen and runner-up cells' n and intervals, and what they make of the answer."""

    cells: tuple[tuple[int, CellBasis], ...]
    needed: int
    needed_by: str
    tie: bool

    @classmethod
    def of(cls, run: Any, chosen: Any, runner_up: Any, slos: tuple[Any, ...]) -> SampleBasis:
        needed, needed_by = needed_samples([slo.metric for slo in slos])
        cells = tuple((c.num_parallel, cell_basis(run.requests, c.cell_id))
                      for c in (chosen, runner_up) if c is not None and c.cell_id is not None)
        tie = False
        if chosen is not None and runner_up is not None and len(cells) == 2:
            close = abs(runner_up.output_tps - chosen.output_tps) <= TIE_FRACTION * max(
                chosen.output_tps, runner_up.output_tps)
            tie = close or tied(cells[0][1], cells[1][1])
        return cls(cells, needed, needed_by, tie)

    @property
    def provisional(self) -> bool:
        return any(basis.ok < self.needed for _, basis in self.cells)

    def framed(self, verdict: str, chosen: Any, runner_up: Any) -> str:
        """The verdict with its basis: `tie: ...`, the samples, and `provisional` first when thin."""
        if self.tie and runner_up is not None and len(self.cells) == 2:
            (_, mine), (_, theirs) = self.cells
            ratio = ratio_interval(mine, theirs)
            between = "" if ratio is None else f"; NP={runner_up.num_parallel} {ratio[0]:+.1%} to {ratio[1]:+.1%}"
            verdict += (f"; tie: NP={chosen.num_parallel} or NP={runner_up.num_parallel}, pick the smaller "
                        f"for memory ({chosen.output_tps:.1f} tok/s, {mine.interval_text()}, vs "
                        f"{runner_up.output_tps:.1f}, {theirs.interval_text()}{between})")
        verdict += "; " + basis_text(list(self.cells), self.needed, self.needed_by)
        if self.provisional:
            thin = min(basis.ok for _, basis in self.cells)
            verdict = (f"provisional (n={thin} where {self.needed_by} needs ≥{self.needed}: rerun with more "
                       f"requests per cell): {verdict}")
        return verdict

    def to_json(self) -> dict[str, Any]:
        return {"needed": self.needed, "needed_by": self.needed_by,
                "cells": {str(num_parallel): basis.to_json() for num_parallel, basis in self.cells}}
