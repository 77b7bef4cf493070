"""When a cell knows enough: confidence intervals of its key metrics against a `stop_when` rule.

Pure functions on a cell's measured records (the request_metrics columns); bench.run.adaptive
calls them between requests and stops the cell's load once the rule is met.

Intervals come from scipy.stats.bootstrap (percentile method, fixed seed): percentiles of the
per-request values for latency metrics; for output_tps and rps a paired bootstrap of the
requests' (tokens, e2e) with the mean number of requests in flight (Little's law: the requests'
summed e2e over the window) held fixed. Its point value is exactly the cell's output_tps
(tokens over the measurement window). A closed loop far past saturation whose cell is still
in its start-up transient (the first wave of queued requests) has e2e from one service time
to `concurrency` of them: that spread is real uncertainty about the steady state, and such a
cell runs to its maximum. (Resampling the gaps between completions instead was tried: batched
completions make most gaps zero and the interval meaningless.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.analysis.metrics import request_metrics
from bench.analysis.samples import MIN_SAMPLES, min_samples_for, percentile_interval

BOOTSTRAP_RESAMPLES = 999
BOOTSTRAP_SEED = 19
_PERCENTILE_METRIC = re.compile(r"^(ttft|tpot|e2e|itl|queue_wait)_p(\d{1,2})$")
_RATE_METRICS = ("output_tps", "rps")
_REQUEST_COLUMN = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "itl": "itl_mean_s",
                   "queue_wait": "queue_wait_s"}

StopKind = Literal["met", "max", "interrupted", "skipped"]


@dataclass(frozen=True)
class StopRule:
    """A scenario's stop_when, resolved: relative half-widths per metric and the cell's bounds."""

    within: dict[str, float]  # metric -> largest allowed deviation of the interval, fraction of the value
    confidence: float = 0.95
    min_requests: int = 20
    max_requests: int | None = None
    min_s: float | None = None
    max_s: float | None = None

    @classmethod
    def from_scenario(cls, stop_when: Any) -> StopRule:
        """From the scenario model's `stop_when` block (bench.scenario.StopWhen)."""
        return cls(within=dict(stop_when.within_fractions()), confidence=stop_when.confidence,
                   min_requests=stop_when.min_requests, max_requests=stop_when.max_requests,
                   min_s=stop_when.min_s, max_s=stop_when.max_s)

    def min_requests_for_metrics(self) -> int:
        """The fewest requests at which every metric has an interval (ttft_p95: 40)."""
        return max([self.min_requests, *(min_samples_for(metric) for metric in self.within)])

    def describe(self) -> str:
        wanted = ", ".join(f"{metric} ±{fraction:.0%}" for metric, fraction in self.within.items())
        return f"{self.confidence:.0%} intervals of {wanted}"


@dataclass(frozen=True)
class Interval:
    """A metric's point value and its confidence interval."""

    metric: str
    value: float
    lo: float
    hi: float

    @property
    def deviation(self) -> float:
        """The interval's farther end from the value, as a fraction of the value (inf: unknown)."""
        if not all(math.isfinite(x) for x in (self.value, self.lo, self.hi)) or self.value == 0:
            return math.inf
        return max(self.value - self.lo, self.hi - self.value) / abs(self.value)

    def to_json(self) -> dict[str, Any]:
        return {"value": _finite(self.value), "lo": _finite(self.lo), "hi": _finite(self.hi),
                "deviation": _finite(round(self.deviation, 4) if math.isfinite(self.deviation) else math.inf)}


@dataclass(frozen=True)
class StopVerdict:
    """Why a cell stopped (or whether it may stop now)."""

    kind: StopKind
    met: bool
    requests: int  # successful measured requests the intervals came from
    elapsed_s: float
    intervals: tuple[Interval, ...] = ()
    detail: str = ""

    @property
    def reason(self) -> str:
        widths = ", ".join(f"{i.metric} ±{_percent(i.deviation)}" for i in self.intervals)
        base = f"after {self.requests} requests, {self.elapsed_s:.1f} s"
        if self.kind == "met":
            return f"stop_when met: {widths} {base}"
        if self.kind == "max":
            return f"stop_when not met by the maximum ({self.detail}): {widths or 'no data'} {base}"
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "met": self.met, "reason": self.reason, "requests": self.requests,
                "elapsed_s": round(self.elapsed_s, 3),
                "intervals": {i.metric: i.to_json() for i in self.intervals}}


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _percent(fraction: float) -> str:
    return f"{fraction:.1%}" if math.isfinite(fraction) else "n/a"


def _bootstrap(samples: tuple[np.ndarray, ...], statistic: Any, confidence: float) -> tuple[float, float]:
    if len(samples[0]) < 2 or all(np.all(sample == sample[0]) for sample in samples):
        # Identical values: the interval is that value (scipy would warn about a degenerate sample).
        value = float(statistic(*samples, axis=-1))
        return value, value
    from scipy import stats  # here: `bench run` imports this module; only adaptive cells need scipy

    result = stats.bootstrap(samples, statistic, confidence_level=confidence, paired=len(samples) > 1,
                             vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                             random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def metric_interval(metric: str, ok: pd.DataFrame, confidence: float) -> Interval:
    """One metric's interval from a cell's successful measured requests (request_metrics columns)."""
    match = _PERCENTILE_METRIC.match(metric)
    if match is not None:
        q = int(match.group(2))
        values = ok[_REQUEST_COLUMN[match.group(1)]].to_numpy(float)
        values = values[np.isfinite(values)]
        value = float(np.percentile(values, q)) if len(values) else math.nan
        # Below bench.analysis.samples' minimum (p95: 40) there is no interval: never "tight".
        interval = percentile_interval(values, q, confidence=confidence, resamples=BOOTSTRAP_RESAMPLES,
                                       seed=BOOTSTRAP_SEED)
        return Interval(metric, value, *(interval or (math.nan, math.nan)))
    e2e = ok["e2e_s"].to_numpy(float)
    tokens = ok["output_tokens_used"].to_numpy(float) if metric == "output_tps" else np.ones(len(ok))
    keep = np.isfinite(e2e) & np.isfinite(tokens) & (e2e > 0)
    window_s = _window_s(ok)
    if keep.sum() < MIN_SAMPLES or window_s <= 0:
        return Interval(metric, math.nan, math.nan, math.nan)
    e2e, tokens = e2e[keep], tokens[keep]
    # Little's law: requests in flight on average over the window; the rate is that many
    # requests each producing tokens/e2e, so resampling (tokens, e2e) moves only the ratio.
    in_flight = float(e2e.sum()) / window_s

    def rate(tok: np.ndarray, lat: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(in_flight * tok.sum(axis=axis) / lat.sum(axis=axis))

    # Paired: a request's tokens and its e2e belong together (bench.analysis.samples resamples
    # independent samples, for comparing two runs).
    lo, hi = _bootstrap((tokens, e2e), rate, confidence)
    return Interval(metric, float(tokens.sum()) / window_s, lo, hi)


def _window_s(ok: pd.DataFrame) -> float:
    """Sum over repeats of (last end - first send), as bench.analysis.metrics measures a cell."""
    repeats = ok["repeat"].fillna(0) if "repeat" in ok else pd.Series(0, index=ok.index)
    return float(sum(max(0.0, float(group["end_s"].max()) - float(group["sent_s"].min()))
                     for _, group in ok.groupby(repeats)))


def cell_intervals(records: pd.DataFrame, rule: StopRule) -> tuple[int, tuple[Interval, ...]]:
    """(successful measured requests, one interval per stop_when metric) of a cell's records."""
    measured = records[records["phase"] == "measure"] if "phase" in records else records
    if measured.empty:
        return 0, tuple(Interval(m, math.nan, math.nan, math.nan) for m in rule.within)
    frame = request_metrics(measured)
    ok = frame[frame["error_class"].isna()] if "error_class" in frame else frame
    return len(ok), tuple(metric_interval(m, ok, rule.confidence) for m in rule.within)


def judge(records: pd.DataFrame, rule: StopRule, elapsed_s: float) -> StopVerdict:
    """May the cell stop now? `met` once every interval is within its bound and the minimums passed."""
    count, intervals = cell_intervals(records, rule)
    minimums = count >= rule.min_requests and (rule.min_s is None or elapsed_s >= rule.min_s)
    tight = all(i.deviation <= rule.within[i.metric] for i in intervals)
    met = minimums and tight
    return StopVerdict("met" if met else "max", met, count, elapsed_s, intervals)


def final_verdict(records: pd.DataFrame, rule: StopRule, elapsed_s: float, ended_by: str) -> StopVerdict:
    """The verdict of a cell whose load ended without the rule being met: `ended_by` says which
    limit ended it ('max_requests 200', 'max_s 60', 'interrupted')."""
    verdict = judge(records, rule, elapsed_s)
    if verdict.met:
        return verdict
    kind: StopKind = "interrupted" if ended_by.startswith("interrupted") else "max"
    return StopVerdict(kind, False, verdict.requests, elapsed_s, verdict.intervals, ended_by)


def next_check(count: int, min_requests: int) -> int:
    """The request count at which to judge again: at the minimum, then every ~10% more requests,
    so a cell of n requests costs O(log n) bootstraps instead of n."""
    return max(min_requests, count + max(1, math.ceil(count * 0.1)))
