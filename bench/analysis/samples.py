"""How many samples a figure needs before bench states it, and the bootstrap intervals it shows.

Below these minimums bench says "not enough samples" instead of drawing an interval or giving a
gate verdict: a p95 from six requests is the second-largest of six numbers, and its bootstrap
interval only reshuffles those six (issue 16: two back-to-back 6-request runs were called a
regression). Intervals come from `scipy.stats.bootstrap` (percentile method, seeded).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

# No interval and no verdict from fewer samples than this, whatever the statistic.
MIN_SAMPLES = 10
# A percentile is a measurement when at least this many samples lie beyond it (p95 of 40
# requests has two above it); fewer, and it is the maximum in disguise.
SAMPLES_BEYOND_PERCENTILE = 2
CONFIDENCE = 0.95


def min_samples_for_percentile(percentile: float) -> int:
    """Samples needed before the `percentile`-th percentile is shown as a measurement (p95: 40).

    A percentile is below 100 (the scenario, --slo and metric names refuse others): p100 is the
    maximum, which no number of samples makes a measured percentile, so it is a ValueError here."""
    tail = 1.0 - float(percentile) / 100.0
    if tail <= 0:
        raise ValueError(f"p{percentile:g}: a percentile bench states is below 100 (p100 is the maximum)")
    return max(MIN_SAMPLES, math.ceil(SAMPLES_BEYOND_PERCENTILE / tail - 1e-9))


def min_samples_for(metric: str) -> int:
    """The minimum for a metric name: `ttft_p95` → 40, `ttft_p99.9` → 2,000; means, rates and
    throughputs → MIN_SAMPLES."""
    family, sep, tail = metric.removesuffix("_s").rpartition("_p")
    try:
        percentile = float(tail)  # 95, or 99.9 (a threshold may name any percentile)
    except ValueError:
        return MIN_SAMPLES
    if sep and family and 0 < percentile < 100:
        return min_samples_for_percentile(percentile)
    return MIN_SAMPLES


def not_enough(n: int, needed: int) -> str:
    """The phrase bench shows instead of a figure: `not enough samples (n=6, needs ≥40)`."""
    return f"not enough samples (n={n}, needs ≥{needed})"


def _finite(values: Any) -> np.ndarray:
    data = np.asarray(values, dtype=float).ravel()
    return np.asarray(data[np.isfinite(data)])


def bootstrap_interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], *,
                       confidence: float = CONFIDENCE, resamples: int = 1000, seed: int = 0,
                       ) -> tuple[float, float]:
    """`scipy.stats.bootstrap` percentile interval of `statistic(*samples, axis=-1)` (vectorized).

    Several samples are resampled independently (two runs are not paired). Callers check the
    minimum sample size first; a degenerate distribution (every resample equal) gives that value
    as both ends.
    """
    from scipy import stats  # imported here: `bench --help` must not pay for scipy

    batch = max(1, min(resamples, 4_000_000 // max(1, max(len(s) for s in samples))))
    result = stats.bootstrap(samples, statistic, n_resamples=resamples, batch=batch, vectorized=True,
                             paired=False, confidence_level=confidence, method="percentile",
                             random_state=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        # scipy returns NaN when every resample gives the same value: the interval is that value.
        value = float(statistic(*samples, axis=-1))
        return value, value
    return low, high


def percentile_interval(values: Any, percentile: float, *, confidence: float = CONFIDENCE,
                        resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval of one sample's percentile; None below min_samples_for_percentile."""
    data = _finite(values)
    if len(data) < min_samples_for_percentile(percentile):
        return None

    def statistic(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.percentile(sample, percentile, axis=axis))

    return bootstrap_interval((data,), statistic, confidence=confidence, resamples=resamples, seed=seed)


def percentile_change_interval(base: Any, current: Any, percentile: float, *, confidence: float = CONFIDENCE,
                               resamples: int = 1000, seed: int = 0) -> tuple[float, float] | None:
    """Bootstrap interval of the relative change of a percentile, current against base (two
    independent samples); None below min_samples_for_percentile on either side."""
    base_data, current_data = _finite(base), _finite(current)
    needed = min_samples_for_percentile(percentile)
    if len(base_data) < needed or len(current_data) < needed or np.percentile(base_data, percentile) <= 0:
        return None

    def relative_change(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.percentile(c, percentile, axis=axis) / np.percentile(b, percentile, axis=axis) - 1.0)

    with np.errstate(divide="ignore", invalid="ignore"):
        return bootstrap_interval((base_data, current_data), relative_change, confidence=confidence,
                                  resamples=resamples, seed=seed)
