"""The regression gate: compare a run with a baseline, cell by cell, noise-aware.

Cells are matched by their settings (bench.analysis.baseline.settings_key). For every cell and gated
metric the change from baseline to current gets a 95% bootstrap confidence interval computed
from the per-request samples (both sides resampled independently, seeded, numpy):

- latency percentiles (`ttft_p95`, `tpot_p50`, `itl_p99`, `e2e_p95`, `user_tps_p50`): the
  requests are resampled and the percentile recomputed; the change is relative (cur/base - 1).
  `itl_*` here are percentiles of each request's mean inter-token gap (the baseline stores one
  number per request, not every gap), so they differ slightly from the run summary's pooled ITL.
- throughput (`output_tps`, `rps`): the change is relative. Its interval resamples requests as
  (output tokens, end-to-end time) pairs and scales the observed change by the resampled ratio
  estimator sum(tokens)/sum(e2e). In a closed loop the throughput is concurrency x that ratio
  (Little's law), so request-to-request variation is what moves it; per-repeat values would
  give no interval at all with one or two repeats, which is what CI runs use.
- rates (`error_rate`, `rejection_rate`): the change is absolute (percentage points); requests
  are resampled as 0/1 outcomes.

Decision rule, applied to every gate: REGRESSION when the whole confidence interval of the
change lies beyond the allowed change in the bad direction (e.g. ttft_p95 allowed +10%: the
interval's lower bound is above +10%). A change whose point estimate is beyond the threshold but
whose interval reaches back inside it is reported as a warning, never a failure.

Intervals come from `scipy.stats.bootstrap` (percentile method, seeded; both sides resampled
independently). Below a minimum sample size per side (bench.analysis.samples: p95 needs 40
successful requests, p99 200, anything else 10) a gate gets no verdict: "not enough samples".
No p value is shown: a test of "no difference at all" answers another question than the verdict
("is the change beyond what is allowed?") and, beside it, reads as a contradiction.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from bench.analysis.baseline import Baseline, BaselineCell, load_baseline
from bench.analysis.rates import repeat_change_interval
from bench.analysis.samples import bootstrap_interval, min_samples_for, not_enough
from bench.errors import RunDirError, UsageError
from bench.plan import cell_label, varying_settings
from bench.analysis.metrics import METRIC_COLUMNS, METRIC_DIRECTIONS, PERCENTILES

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 20240607  # fixed: the same two runs always give the same intervals and verdicts

# Per-request sample column behind each percentile family.
_PERCENTILE_SAMPLES = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_mean_s", "e2e": "e2e_s"}
_THROUGHPUT = ("output_tps", "rps")
_RATES = ("rejection_rate", "error_rate")


def _gateable() -> tuple[str, ...]:
    names = [f"{base}_p{p}" for base in _PERCENTILE_SAMPLES for p in PERCENTILES]
    return (*names, "user_tps_p50", *_THROUGHPUT, *_RATES)


GATEABLE_METRICS: tuple[str, ...] = _gateable()

# Gates used when neither the command line nor the scenario (`gates:`) names any. Latency tails
# and throughput are what a slower model, server or config moves; errors catch a broken one.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ttft_p95": 0.10,
    "tpot_p95": 0.10,
    "e2e_p95": 0.10,
    "output_tps": -0.05,
    "error_rate": 0.01,
}

Verdict = Literal["pass", "warn", "fail", "skip"]


class CellMatchError(RunDirError):
    """A cell of one side has no counterpart (same settings) on the other side."""


# --- metric names and thresholds ---------------------------------------------------------------


def gate_metric_name(name: str) -> str:
    """The canonical gate name for `ttft_p95` (or its column `ttft_p95_s`); UsageError if unknown."""
    key = name.strip()
    if key not in METRIC_COLUMNS:
        key = next((m for m, column in METRIC_COLUMNS.items() if column == key), key)
    if key in GATEABLE_METRICS:
        return key
    if key in METRIC_COLUMNS:
        raise UsageError(f"metric {name!r} cannot be gated (a baseline keeps no samples of it); "
                         f"gateable: {', '.join(GATEABLE_METRICS)}")
    raise UsageError(f"unknown metric {name!r}; valid: {', '.join(GATEABLE_METRICS)}")


def is_rate(metric: str) -> bool:
    return metric in _RATES


def lower_is_better(metric: str) -> bool:
    return METRIC_DIRECTIONS[metric] == "lower"


_PCT_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*%\s*$")


def parse_threshold(metric: str, text: str | float) -> float:
    """`10%` -> 0.10 for `ttft_p95`; `-5%` -> -0.05 for `output_tps`.

    The number is the change allowed in the bad direction, with that direction's sign: positive
    for lower-is-better metrics (latency, rates), negative for higher-is-better ones
    (throughput). The other sign is a UsageError, not a silent reinterpretation: `output_tps=5%`
    would otherwise read as "fail unless it got 5% faster". For rates the percent is absolute
    (`error_rate=1%`: at most one percentage point more errors).
    """
    canonical = gate_metric_name(metric)
    match = _PCT_RE.match(str(text))
    if match is None:
        raise UsageError(f"{metric}={text}: expected a percentage like 10% or -5%")
    value = float(match.group(1)) / 100.0
    _check_sign(canonical, value, f"{metric}={text}")
    return value


def _check_sign(metric: str, value: float, written: str) -> None:
    if lower_is_better(metric) and value < 0:
        raise UsageError(f"{written}: lower {metric} is better, so the allowed regression "
                         f"is an increase; write {metric}={abs(value) * 100:g}%")
    if not lower_is_better(metric) and value > 0:
        raise UsageError(f"{written}: higher {metric} is better, so the allowed regression "
                         f"is a drop; write {metric}=-{value * 100:g}%")


def parse_gate_options(options: Iterable[str]) -> dict[str, float]:
    """`["ttft_p95=10%", "output_tps=-5%"]` -> {"ttft_p95": 0.10, "output_tps": -0.05}."""
    thresholds: dict[str, float] = {}
    for option in options:
        metric, sep, value = option.partition("=")
        if not sep or not metric.strip():
            raise UsageError(f"--max-regression {option!r}: expected METRIC=PCT, e.g. ttft_p95=10%")
        thresholds[gate_metric_name(metric)] = parse_threshold(metric, value)
    return thresholds


def parse_gates(gates: Mapping[str, str | float]) -> dict[str, float]:
    """A scenario's `gates:` mapping ({ttft_p95: "10%"}) as thresholds."""
    return {gate_metric_name(metric): parse_threshold(metric, value) for metric, value in gates.items()}


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    """One cell x metric gate."""

    cell_label: str
    settings: dict[str, object]
    metric: str
    threshold: float  # allowed change, signed (relative, or absolute for rates)
    baseline_value: float
    current_value: float
    change: float  # relative (cur/base - 1), or absolute (cur - base) for rates
    ci_low: float
    ci_high: float
    baseline_n: int
    current_n: int
    verdict: Verdict
    note: str = ""
    # "requests", or "requests + 3/3 repeats" when run-to-run variation widened the interval.
    interval_basis: str = "requests"

    @property
    def relative(self) -> bool:
        return not is_rate(self.metric)


@dataclass(frozen=True)
class Comparison:
    baseline_source: str
    current_source: str
    thresholds: dict[str, float]
    gates: list[GateResult]
    confidence: float = CONFIDENCE
    environment_notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.verdict == "fail"]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)


# --- the statistics --------------------------------------------------------------------------


def _change_interval(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], confidence: float,
                     resamples: int, seed: int) -> tuple[float, float]:
    """Bootstrap interval of a change statistic of (baseline..., current...) samples."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return bootstrap_interval(samples, statistic, confidence=confidence, resamples=resamples, seed=seed)


@dataclass(frozen=True)
class _Estimate:
    baseline_value: float
    current_value: float
    change: float
    ci_low: float
    ci_high: float
    baseline_n: int
    current_n: int
    note: str = ""
    interval_basis: str = "requests"


def _skip(note: str, base_n: int = 0, current_n: int = 0, base_value: float = math.nan,
          current_value: float = math.nan) -> _Estimate:
    nan = math.nan
    change = current_value / base_value - 1.0 if base_value and np.isfinite(base_value) else nan
    return _Estimate(base_value, current_value, change, nan, nan, base_n, current_n, note)


def _too_few(metric: str, base_n: int, current_n: int) -> str | None:
    needed = min_samples_for(metric)
    smaller = min(base_n, current_n)
    return None if smaller >= needed else not_enough(smaller, needed)


def _percentile_change(metric: str, base: np.ndarray, current: np.ndarray, percentile: float,
                       confidence: float, resamples: int, seed: int) -> _Estimate:
    base, current = base[np.isfinite(base)], current[np.isfinite(current)]
    if not len(base) or not len(current):
        return _skip("no successful request on one side", len(base), len(current))
    base_value = float(np.percentile(base, percentile))
    current_value = float(np.percentile(current, percentile))
    too_few = _too_few(metric, len(base), len(current))
    if too_few is not None:
        return _skip(too_few, len(base), len(current), base_value, current_value)
    if base_value <= 0:
        return _skip("baseline value is 0: no relative change", len(base), len(current))

    def relative_change(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray(np.percentile(c, percentile, axis=axis) / np.percentile(b, percentile, axis=axis) - 1.0)

    low, high = _change_interval((base, current), relative_change, confidence, resamples, seed)
    return _Estimate(base_value, current_value, current_value / base_value - 1.0, low, high,
                     len(base), len(current))


def _throughput_change(base_cell: BaselineCell, current_cell: BaselineCell, metric: str,
                       confidence: float, resamples: int, seed: int) -> _Estimate:
    base_value = base_cell.aggregates[metric]
    current_value = current_cell.aggregates[metric]

    def pairs(cell: BaselineCell) -> tuple[np.ndarray, np.ndarray]:
        e2e = cell.samples["e2e_s"]
        tokens = cell.samples["output_tokens_used"] if metric == "output_tps" else np.ones(len(e2e))
        keep = np.isfinite(e2e) & np.isfinite(tokens) & (e2e > 0)
        return tokens[keep], e2e[keep]

    base_tokens, base_e2e = pairs(base_cell)
    current_tokens, current_e2e = pairs(current_cell)
    n_base, n_current = len(base_e2e), len(current_e2e)
    if not (np.isfinite(base_value) and np.isfinite(current_value)) or not n_base or not n_current:
        return _skip("no successful request on one side", n_base, n_current)
    too_few = _too_few(metric, n_base, n_current)
    if too_few is not None:
        return _skip(too_few, n_base, n_current, base_value, current_value)
    if base_value <= 0:
        return _skip("baseline value is 0: no relative change", n_base, n_current)
    ratio_base = base_tokens.sum() / base_e2e.sum()
    ratio_current = current_tokens.sum() / current_e2e.sum()
    observed = current_value / base_value

    # Requests are resampled as (tokens, e2e) pairs: the bootstrap resamples request indices.
    def scaled_change(base_idx: np.ndarray, current_idx: np.ndarray, axis: int = -1) -> np.ndarray:
        base_idx, current_idx = base_idx.astype(int), current_idx.astype(int)
        resampled_base = base_tokens[base_idx].sum(axis=axis) / base_e2e[base_idx].sum(axis=axis)
        resampled_current = current_tokens[current_idx].sum(axis=axis) / current_e2e[current_idx].sum(axis=axis)
        # The resampled ratio estimators, relative to their observed values, scale the observed change.
        return np.asarray(observed * (resampled_current / ratio_current) / (resampled_base / ratio_base) - 1.0)

    low, high = _change_interval((np.arange(n_base, dtype=float), np.arange(n_current, dtype=float)),
                                 scaled_change, confidence, resamples, seed)
    # With --repeats on both sides, run-to-run variation (AIPerf's multi-run confidence) is noise
    # request resampling cannot see: the verdict needs the change beyond both intervals.
    base_runs, current_runs = base_cell.per_repeat.get(metric, []), current_cell.per_repeat.get(metric, [])
    between_runs = repeat_change_interval(base_runs, current_runs, confidence)
    if between_runs is None:
        return _Estimate(base_value, current_value, observed - 1.0, low, high, n_base, n_current)
    return _Estimate(base_value, current_value, observed - 1.0, min(low, between_runs[0]),
                     max(high, between_runs[1]), n_base, n_current,
                     interval_basis=f"requests + {len(base_runs)}/{len(current_runs)} repeats")


def _rate_change(base_cell: BaselineCell, current_cell: BaselineCell, metric: str,
                 confidence: float, resamples: int, seed: int) -> _Estimate:
    def outcomes(cell: BaselineCell) -> np.ndarray:
        hits = cell.rejected if metric == "rejection_rate" else cell.errors
        return np.concatenate([np.ones(hits), np.zeros(cell.requests - hits)])

    base, current = outcomes(base_cell), outcomes(current_cell)
    if not len(base) or not len(current):
        return _skip("no requests", len(base), len(current))
    base_value, current_value = float(base.mean()), float(current.mean())
    change = current_value - base_value
    too_few = _too_few(metric, len(base), len(current))
    if too_few is not None:
        return _Estimate(base_value, current_value, change, math.nan, math.nan, len(base), len(current),
                         too_few)
    if base.min() == base.max() and current.min() == current.max():
        low = high = change  # no failure on either side (or only failures): nothing to resample
    else:
        def difference(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.asarray(c.mean(axis=axis) - b.mean(axis=axis))

        low, high = _change_interval((base, current), difference, confidence, resamples, seed)
    return _Estimate(base_value, current_value, change, low, high, len(base), len(current))


def _estimate(base_cell: BaselineCell, current_cell: BaselineCell, metric: str,
              confidence: float, resamples: int, seed: int) -> _Estimate:
    if metric in _THROUGHPUT:
        return _throughput_change(base_cell, current_cell, metric, confidence, resamples, seed)
    if metric in _RATES:
        return _rate_change(base_cell, current_cell, metric, confidence, resamples, seed)
    family, _, percentile = metric.rpartition("_p")
    column = "user_tps" if family == "user_tps" else _PERCENTILE_SAMPLES[family]
    return _percentile_change(metric, base_cell.samples[column], current_cell.samples[column],
                              float(percentile), confidence, resamples, seed)


def _verdict(metric: str, threshold: float, estimate: _Estimate) -> Verdict:
    if estimate.note or not np.isfinite(estimate.change) or not np.isfinite(estimate.ci_low):
        return "skip"
    if lower_is_better(metric):
        if estimate.ci_low > threshold:
            return "fail"
        return "warn" if estimate.change > threshold else "pass"
    if estimate.ci_high < threshold:
        return "fail"
    return "warn" if estimate.change < threshold else "pass"


# --- matching cells --------------------------------------------------------------------------


def _describe_settings(settings: dict[str, object]) -> str:
    """Every setting under its own name: an error must identify the cell, not label it."""
    shown = {k: v for k, v in settings.items() if v is not None}
    return "{" + ", ".join(f"{k}={v}" for k, v in shown.items()) + "}"


def _index(baseline: Baseline, side: str) -> dict[str, BaselineCell]:
    cells: dict[str, BaselineCell] = {}
    for cell in baseline.cells:
        if cell.match_key in cells:
            raise CellMatchError(
                f"{side} {baseline.source}: two cells have the same settings apart from the amount "
                f"measured: {_describe_settings(cell.settings)}"
            )
        cells[cell.match_key] = cell
    return cells


def _closest_difference(cell: BaselineCell, others: Iterable[BaselineCell]) -> str:
    """`concurrency 4 vs 8` for the other side's cell that differs in the fewest settings."""
    best: list[str] | None = None
    for other in others:
        keys = sorted(set(cell.settings) | set(other.settings))
        differing = [f"{k} {cell.settings.get(k)!r} vs {other.settings.get(k)!r}" for k in keys
                     if cell.settings.get(k) != other.settings.get(k)]
        if best is None or len(differing) < len(best):
            best = differing
    return f"; closest differs in {', '.join(best)}" if best else ""


def _match(baseline: Baseline, current: Baseline) -> list[tuple[BaselineCell, BaselineCell]]:
    base_cells, current_cells = _index(baseline, "baseline"), _index(current, "current")
    # The likeliest counterpart of an unmatched cell is an unmatched cell of the other side.
    spare_current = [c for k, c in current_cells.items() if k not in base_cells]
    spare_base = [c for k, c in base_cells.items() if k not in current_cells]
    for cell in spare_base:
        raise CellMatchError(
            f"baseline cell {_describe_settings(cell.settings)} has no match in "
            f"{current.source}{_closest_difference(cell, spare_current or current_cells.values())}"
        )
    for cell in spare_current:
        raise CellMatchError(
            f"current cell {_describe_settings(cell.settings)} has no match in baseline "
            f"{baseline.source}{_closest_difference(cell, base_cells.values())}"
        )
    return [(cell, current_cells[key]) for key, cell in base_cells.items()]


# What else two runs must share for a change to mean a regression, as the notes name it.
_LIKE_FOR_LIKE = {"sim_speed": "simulator speed", "sim_engine": "simulator engine", "target_kind": "server kind",
                  "target_server": "server", "target_version": "server version", "gpu": "GPU",
                  "bench_version": "bench version"}


def _environment_notes(baseline: Baseline, current: Baseline) -> list[str]:
    """One line per difference between the runs beyond their cells' settings (those must match)."""
    notes = []
    for key, name in _LIKE_FOR_LIKE.items():
        before, after = baseline.environment.get(key), current.environment.get(key)
        if key in baseline.environment and key in current.environment and before != after:
            notes.append(f"unlike runs: {name} differs (baseline {before}, current {after}); a change here "
                         "may be that difference, not a regression")
    return notes


def compare(baseline: Baseline, current: Baseline, thresholds: dict[str, float] | None = None,
            *, confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
            seed: int = SEED) -> Comparison:
    """Gate `current` against `baseline`: every matched cell x every threshold's metric.

    `thresholds` maps gate names to the allowed signed change (0.10 = +10%; -0.05 = -5% for a
    higher-is-better metric; absolute for rates); None means DEFAULT_THRESHOLDS. Unknown metrics
    raise UsageError, unmatched cells CellMatchError (both exit 2 in the CLI).
    """
    chosen = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    if not chosen:
        raise UsageError("no gates to check: give --max-regression METRIC=PCT or scenario gates:")
    normalized: dict[str, float] = {}
    for metric, threshold in chosen.items():
        name = gate_metric_name(metric)
        _check_sign(name, float(threshold), f"{metric}={threshold * 100:g}%")
        normalized[name] = float(threshold)
    pairs = _match(baseline, current)
    varying = varying_settings([base.settings for base, _ in pairs])
    gates: list[GateResult] = []
    for base_cell, current_cell in pairs:
        label = cell_label(base_cell.settings, varying)
        for metric, threshold in normalized.items():
            estimate = _estimate(base_cell, current_cell, metric, confidence, resamples, seed)
            gates.append(GateResult(
                cell_label=label, settings=base_cell.settings, metric=metric, threshold=threshold,
                baseline_value=estimate.baseline_value, current_value=estimate.current_value,
                change=estimate.change, ci_low=estimate.ci_low, ci_high=estimate.ci_high,
                baseline_n=estimate.baseline_n,
                current_n=estimate.current_n, verdict=_verdict(metric, threshold, estimate),
                note=estimate.note, interval_basis=estimate.interval_basis,
            ))
    return Comparison(baseline.source, current.source, normalized, gates, confidence,
                      _environment_notes(baseline, current))


def thresholds_for(options: Iterable[str], current: Baseline, baseline: Baseline) -> dict[str, float] | None:
    """--max-regression options, else the current run's scenario `gates:`, else the baseline's,
    else None (DEFAULT_THRESHOLDS)."""
    options = list(options)
    if options:
        return parse_gate_options(options)
    for side in (current, baseline):
        gates = side.environment.get("gates")
        if gates:
            return parse_gates(gates)
    return None


def compare_paths(baseline_path: str | Path, current_path: str | Path,
                  max_regression: Iterable[str] = ()) -> Comparison:
    """`bench compare` as a function (also for `bench run --baseline`): paths are run
    directories or baseline files; thresholds as in thresholds_for."""
    return compare_baselines(load_baseline(baseline_path), load_baseline(current_path), max_regression)


def compare_baselines(baseline: Baseline, current: Baseline, max_regression: Iterable[str] = ()) -> Comparison:
    """compare_paths of runs already reduced (`bench run --baseline`: the run it just analysed)."""
    return compare(baseline, current, thresholds_for(max_regression, current, baseline))
