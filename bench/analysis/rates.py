"""Per-cell token rates and the load a cell actually held, as GuideLLM and `vllm bench serve`
report them, and run-to-run intervals over a cell's repeats (AIPerf's multi-run confidence).

Pure functions on the frames bench.analysis.metrics hands over (request_metrics columns).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
# The per-repeat figures that get a run-to-run interval: the throughput and the latency tails a
# user gates on. Column in cell_summary -> how it is computed per repeat.
REPEAT_METRICS: tuple[str, ...] = ("output_tps", "ttft_p95_s", "tpot_p95_s")


def repeat_interval_columns() -> tuple[str, ...]:
    """`output_tps_repeats_ci_lo`, `ttft_p95_repeats_ci_hi_s`, ... (units stay at the end)."""
    columns = []
    for metric in REPEAT_METRICS:
        stem, unit = (metric[:-2], "_s") if metric.endswith("_s") else (metric, "")
        columns += [f"{stem}_repeats_ci_lo{unit}", f"{stem}_repeats_ci_hi{unit}"]
    return tuple(columns)


def _repeat_windows(cell: pd.DataFrame) -> list[tuple[int, pd.DataFrame, float]]:
    """(repeat index, its requests, last end − first send) per repeat of the cell."""
    repeats = cell["repeat"].fillna(0) if "repeat" in cell.columns else pd.Series(0, index=cell.index)
    windows = []
    for repeat, group in cell.groupby(repeats, sort=True):
        sent = pd.to_numeric(group["sent_s"], errors="coerce")
        end = pd.to_numeric(group["end_s"], errors="coerce")
        window = float(end.max()) - float(sent.min()) if sent.notna().any() and end.notna().any() else math.nan
        windows.append((int(repeat), group, max(0.0, window) if math.isfinite(window) else math.nan))
    return windows


def token_rates(good: pd.DataFrame, window_s: float) -> dict[str, float]:
    """input_tps and total_tps: prompt tokens (the server's count) of the successful requests over
    the window, and prompt + output tokens over it (`vllm bench serve`'s "Total Token throughput").

    A cell whose server reported no prompt count (an OpenAI surface without usage) has NaN for both.
    """
    prompt = pd.to_numeric(good["prompt_tokens"], errors="coerce") if "prompt_tokens" in good else None
    output = float(np.nansum(good["output_tokens_used"].to_numpy(float))) if len(good) else 0.0
    if prompt is None or not prompt.notna().any() or not window_s > 0:
        return {"input_tps": math.nan, "total_tps": math.nan}
    input_tokens = float(prompt.sum())
    return {"input_tps": input_tokens / window_s, "total_tps": (input_tokens + output) / window_s}


def inflight_mean(cell: pd.DataFrame, window_s: float) -> float:
    """Time-weighted mean of requests in flight over the measurement window.

    The integral of "requests in flight" over time is the sum of every request's time in flight
    (send to end, failures included: they held a connection), so dividing by the window gives the
    time-weighted mean exactly (Little's law without its steady-state assumption). An open loop at
    a rate the server cannot follow shows here as in-flight far above what a closed loop offered.
    """
    if not window_s > 0:
        return math.nan
    sent = pd.to_numeric(cell["sent_s"], errors="coerce").to_numpy(float)
    end = pd.to_numeric(cell["end_s"], errors="coerce").to_numpy(float)
    busy = end - sent
    return float(np.nansum(np.where(busy > 0, busy, 0.0))) / window_s


def _per_repeat(cell: pd.DataFrame, ok: np.ndarray) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {metric: [] for metric in REPEAT_METRICS}
    good_index = set(cell.index[ok])
    for _, group, window in _repeat_windows(cell):
        good = group[group.index.isin(good_index)]
        tokens = float(np.nansum(good["output_tokens_used"].to_numpy(float)))
        values["output_tps"].append(tokens / window if window > 0 else math.nan)
        for metric, column in (("ttft_p95_s", "ttft_s"), ("tpot_p95_s", "tpot_s")):
            data = good[column].to_numpy(float)
            data = data[np.isfinite(data)]
            values[metric].append(float(np.percentile(data, 95)) if len(data) else math.nan)
    return values


def t_interval(values: list[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean of a few run-level values; (nan, nan) below two values.

    With two or three repeats this interval is wide (t = 12.7 at two): that is the honest answer
    about run-to-run noise from so few runs, not a flaw to hide.
    """
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data)]
    if len(data) < 2:
        return math.nan, math.nan
    # Imported only here, after the check: a run of one repeat (most) never pays for scipy.
    from scipy import stats

    mean = float(data.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, len(data) - 1)) * float(data.std(ddof=1)) / math.sqrt(len(data))
    return mean - half, mean + half


def repeat_intervals(cell: pd.DataFrame, ok: np.ndarray) -> dict[str, float]:
    """`repeats` and, with two or more, a 95% t-interval over the per-repeat values of each
    REPEAT_METRICS figure (NaN with one repeat)."""
    per_repeat = _per_repeat(cell, ok)
    row: dict[str, float] = {"repeats": len(per_repeat["output_tps"])}
    for (metric, values), (lo_name, hi_name) in zip(per_repeat.items(), _pairs(repeat_interval_columns())):
        row[lo_name], row[hi_name] = t_interval(values)
    return row


def _pairs(columns: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(columns[i], columns[i + 1]) for i in range(0, len(columns), 2)]


def repeat_change_interval(base_values: list[float], current_values: list[float],
                           confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Welch interval of the relative change of the mean of per-repeat values (current / base − 1),
    the baseline mean taken as fixed; None unless both sides have two or more finite values."""
    from scipy import stats

    base = np.asarray(base_values, dtype=float)
    current = np.asarray(current_values, dtype=float)
    base, current = base[np.isfinite(base)], current[np.isfinite(current)]
    if len(base) < 2 or len(current) < 2 or base.mean() <= 0:
        return None
    var_base, var_current = base.var(ddof=1) / len(base), current.var(ddof=1) / len(current)
    spread = var_base + var_current
    if spread == 0:
        change = float(current.mean() / base.mean() - 1.0)
        return change, change
    # Welch–Satterthwaite degrees of freedom: unequal variances, few runs on each side.
    dof = spread**2 / (var_base**2 / (len(base) - 1) + var_current**2 / (len(current) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(spread)
    difference = float(current.mean() - base.mean())
    return (difference - half) / float(base.mean()), (difference + half) / float(base.mean())
