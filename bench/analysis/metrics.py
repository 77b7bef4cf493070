"""Per-request and per-cell statistics from request records (pure functions on DataFrames).

Inputs are `Run.requests` frames (one row per RequestRecord, bench.records). Nothing here does
I/O. The definitions are in README_SECTION (docs/metrics.md, "Metrics: definitions").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from bench.analysis import rates
from bench.errors import UsageError

PERCENTILES = (50, 90, 95, 99)
LATENCY_BASES = ("ttft", "tpot", "itl", "e2e", "queue_wait")
CI_BASES = ("ttft", "tpot")  # metrics whose p50 and p95 carry bootstrap intervals
CI_PERCENTILES = (50, 95)
CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601  # fixed: the same records always give the same intervals

# Ollama's load_duration is the time scheduleRunner took (server/routes.go): on a warm runner a
# scheduler hand-off of well under a few tens of ms (often ~1-30 ms on real servers, ~0 on the
# simulator); an actual load reads GBs of weights and takes hundreds of ms or more. 100 ms sits
# between the two, so scheduler jitter is not called a cold start and a real load always is.
COLD_LOAD_THRESHOLD_NS = 100_000_000

Direction = Literal["lower", "higher"]


def percentile_label(p: float) -> str:
    """`p95`, `p99.9`: how a percentile appears in metric and column names."""
    return f"p{float(p):g}"


def _metric_table() -> dict[str, tuple[str, Direction]]:
    table: dict[str, tuple[str, Direction]] = {}
    for base in LATENCY_BASES:
        for p in PERCENTILES:
            table[f"{base}_p{p}"] = (f"{base}_p{p}_s", "lower")
        table[f"{base}_mean"] = (f"{base}_mean_s", "lower")
        table[f"{base}_std"] = (f"{base}_std_s", "lower")
    table.update({
        "output_tps": ("output_tps", "higher"),
        "input_tps": ("input_tps", "higher"),
        "total_tps": ("total_tps", "higher"),
        "user_tps_p50": ("user_tps_p50", "higher"),
        "rps": ("rps", "higher"),
        "goodput_rps": ("goodput_rps", "higher"),
        "rejection_rate": ("rejection_rate", "lower"),
        "error_rate": ("error_rate", "lower"),
        "load_mean": ("load_s_mean", "lower"),
        "prefill_mean": ("prefill_s_mean", "lower"),
    })
    return table


_METRICS = _metric_table()
# User-facing metric name (what gates and SLOs are written with) -> cell_summary column.
METRIC_COLUMNS: dict[str, str] = {name: column for name, (column, _) in _METRICS.items()}
# User-facing metric name -> "lower" (lower is better) or "higher" (higher is better).
METRIC_DIRECTIONS: dict[str, Direction] = {name: d for name, (_, d) in _METRICS.items()}

# Per-request columns that SLO names map to for goodput (`ttft_p95` -> ttft_s, ...).
_GOODPUT_REQUEST_COLUMNS = {
    "ttft": "ttft_s", "tpot": "tpot_s", "itl": "itl_mean_s", "e2e": "e2e_s",
    "queue_wait": "queue_wait_s",
}


def parse_metric_name(name: str) -> str:
    """The summary column for a user-facing metric name (`ttft_p95` -> `ttft_p95_s`).

    The column name itself is accepted too. Raises UsageError listing the valid names.
    """
    key = name.strip()
    if key in METRIC_COLUMNS:
        return METRIC_COLUMNS[key]
    if key in METRIC_COLUMNS.values():
        return key
    chosen = _chosen_percentile(key.removesuffix("_s"))
    if chosen is not None:
        base, p = chosen
        return f"{base}_{percentile_label(p)}_s"
    raise UsageError(f"unknown metric {name!r}; valid: {', '.join(METRIC_COLUMNS)}, or any "
                     "percentile of a latency like ttft_p99.9")


def _chosen_percentile(name: str) -> tuple[str, float] | None:
    """(`ttft`, 99.9) for `ttft_p99.9`: a latency at a percentile outside the default set."""
    base, _, p_text = name.rpartition("_p")
    if base not in LATENCY_BASES:
        return None
    try:
        p = float(p_text)
    except ValueError:
        return None
    return (base, p) if 0 < p < 100 else None


def higher_is_better(name: str) -> bool:
    """Whether a larger value of this metric (name or column) is an improvement."""
    column = parse_metric_name(name)
    if _chosen_percentile(column.removesuffix("_s")) is not None:
        return False  # a latency
    for metric, metric_column in METRIC_COLUMNS.items():
        if metric_column == column:
            return METRIC_DIRECTIONS[metric] == "higher"
    raise AssertionError(column)  # parse_metric_name only returns known columns


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return np.asarray(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float))


def _chunk_times(value: Any) -> np.ndarray:
    # JSONL gives lists, parquet gives numpy arrays, a missing value is None/NaN.
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.empty(0)
    return np.asarray(value, dtype=float)


def request_metrics(requests: pd.DataFrame) -> pd.DataFrame:
    """The records with derived per-request columns added (a copy; see README_SECTION).

    Added: ttft_s, tpot_s, itl_mean_s, e2e_s, user_tps, load_s, prefill_s, queue_wait_s,
    slot_wait_s, prefill_s_per_prompt_token, prefix_cache_hit, dispatch_lag_s, cold,
    output_tokens_used. Values that cannot be measured are NaN (e.g. TPOT
    of a request with fewer than two text chunks, queue wait on the OpenAI surface).
    """
    frame = requests.copy()
    sent = _float_column(frame, "sent_s")
    first = _float_column(frame, "first_token_s")
    end = _float_column(frame, "end_s")
    scheduled = _float_column(frame, "scheduled_s")
    server_tokens = _float_column(frame, "output_tokens")
    chunk_series = frame["chunk_times_s"] if "chunk_times_s" in frame.columns else [None] * len(frame)
    chunks = [_chunk_times(v) for v in chunk_series]
    chunk_count = np.array([len(c) for c in chunks], dtype=float)
    last_chunk = np.array([c[-1] if len(c) else np.nan for c in chunks])
    first_chunk = np.array([c[0] if len(c) else np.nan for c in chunks])

    # Server counts beat chunk counts (a chunk usually, not always, carries one token).
    tokens = np.where(np.isnan(server_tokens), chunk_count, server_tokens)
    with np.errstate(divide="ignore", invalid="ignore"):
        decode_span = last_chunk - first
        measurable = (chunk_count >= 2) & (tokens >= 2)
        tpot = np.where(measurable, decode_span / (tokens - 1), np.nan)
        itl_mean = np.where(chunk_count >= 2, (last_chunk - first_chunk) / (chunk_count - 1),
                            np.nan)
        generating = end - first
        user_tps = np.where((generating > 0) & (tokens > 0), tokens / generating, np.nan)

    ttft = first - sent
    # Ollama v0.33 meanings (bench.analysis.ollama_semantics): load_duration = the scheduler's
    # pending-queue wait + any cold load; prompt_eval_duration = prefill of the tokens outside
    # llama-server's prompt cache only; the wait for a runner slot is in neither, but in
    # total − load − prompt_eval − eval (server-side, so free of network and client time).
    load = _float_column(frame, "load_duration_ns") / 1e9
    prefill = _float_column(frame, "prompt_eval_duration_ns") / 1e9
    total = _float_column(frame, "total_duration_ns") / 1e9
    decode = _float_column(frame, "eval_duration_ns") / 1e9
    native = (frame["surface"] == "native").to_numpy() if "surface" in frame.columns else False
    queue_wait = np.where(native, np.clip(ttft - load - prefill, 0.0, None), np.nan)
    slot_wait = np.where(native, np.clip(total - load - prefill - decode, 0.0, None), np.nan)
    prompt_tokens = _float_column(frame, "prompt_tokens")
    with np.errstate(divide="ignore", invalid="ignore"):
        prefill_per_token = np.where(prompt_tokens > 0, prefill / prompt_tokens, np.nan)

    frame["output_tokens_used"] = tokens
    frame["ttft_s"] = ttft
    frame["tpot_s"] = tpot
    frame["itl_mean_s"] = itl_mean
    frame["e2e_s"] = end - sent
    frame["user_tps"] = user_tps
    frame["load_s"] = load
    frame["prefill_s"] = prefill
    frame["queue_wait_s"] = queue_wait
    frame["slot_wait_s"] = slot_wait
    frame["prefill_s_per_prompt_token"] = prefill_per_token
    frame["prefix_cache_hit"] = _prefix_cache_hits(frame, prefill_per_token)
    frame["dispatch_lag_s"] = sent - scheduled
    frame["cold"] = _float_column(frame, "load_duration_ns") > COLD_LOAD_THRESHOLD_NS
    return frame


# A prefill this many times faster per prompt token than its cell's median was mostly served
# from llama-server's prompt cache (prompt_eval_count counts cached tokens, the duration does not).
PREFIX_CACHE_SPEEDUP = 4.0


def _prefix_cache_hits(frame: pd.DataFrame, prefill_per_token: np.ndarray) -> np.ndarray:
    """True where a request's prefill per prompt token is far below its cell's median."""
    hits = np.zeros(len(frame), dtype=bool)
    if "cell_id" not in frame.columns or not len(frame):
        return hits
    per_token = pd.Series(prefill_per_token, index=frame.index)
    medians = per_token.groupby(frame["cell_id"]).transform("median").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        hits = (prefill_per_token > 0) & (prefill_per_token * PREFIX_CACHE_SPEEDUP < medians)
    return np.asarray(hits, dtype=bool)


def _ok_mask(frame: pd.DataFrame) -> np.ndarray:
    if "error_class" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return np.asarray(frame["error_class"].isna().to_numpy(), dtype=bool)


def itl_gaps(requests: pd.DataFrame) -> np.ndarray:
    """Every gap between consecutive text chunks of every successful request, pooled."""
    if "chunk_times_s" not in requests.columns or requests.empty:
        return np.empty(0)
    ok = _ok_mask(requests)
    gaps = [np.diff(_chunk_times(v)) for v, good in zip(requests["chunk_times_s"], ok) if good]
    gaps = [g for g in gaps if len(g)]
    return np.concatenate(gaps) if gaps else np.empty(0)


def _percentiles(values: np.ndarray, percentiles: Iterable[float] = PERCENTILES) -> list[float]:
    percentiles = list(percentiles)
    values = values[~np.isnan(values)]
    if not len(values):
        return [float("nan")] * len(percentiles)
    return [float(v) for v in np.percentile(values, percentiles)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1); nan where there are too few values."""
    values = values[~np.isnan(values)]
    mean = float(np.mean(values)) if len(values) else float("nan")
    std = float(np.std(values, ddof=1)) if len(values) >= 2 else float("nan")
    return mean, std


def bootstrap_ci(values: Iterable[float], percentile: float,
                 resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% bootstrap interval of a percentile (scipy.stats.bootstrap, seeded).

    Fewer values than bench.analysis.samples.min_samples_for_percentile give (nan, nan): the
    report then says "not enough samples" instead of drawing an interval.
    """
    from bench.analysis.samples import percentile_interval

    data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
    interval = percentile_interval(data, percentile, resamples=resamples, seed=seed)
    return (float("nan"), float("nan")) if interval is None else interval


def _slo_columns(slos: dict[str, float] | None) -> dict[str, float]:
    """Per-request column -> threshold, from SLO names like `ttft_p95` or `tpot`."""
    thresholds: dict[str, float] = {}
    for name, threshold in (slos or {}).items():
        base = name.removesuffix("_s")
        chosen = _chosen_percentile(base)
        if chosen is not None:
            base = chosen[0]
        for suffix in ("_mean", "_std"):
            base = base.removesuffix(suffix)
        if base in _GOODPUT_REQUEST_COLUMNS:
            thresholds[_GOODPUT_REQUEST_COLUMNS[base]] = float(threshold)
        elif name not in METRIC_COLUMNS:
            raise UsageError(
                f"unknown SLO metric {name!r}; valid: "
                f"{', '.join(sorted(set(_GOODPUT_REQUEST_COLUMNS) | set(METRIC_COLUMNS)))}"
            )
        # Cell-level names (error_rate, output_tps, ...) are for gates, not per-request goodput.
    return thresholds


def _window_s(cell: pd.DataFrame) -> float:
    """Sum over repeats of (last end - first send) of the cell's measured requests."""
    total = 0.0
    repeats = cell["repeat"] if "repeat" in cell.columns else pd.Series(0, index=cell.index)
    for _, group in cell.groupby(repeats.fillna(0)):
        sent = pd.to_numeric(group["sent_s"], errors="coerce")
        end = pd.to_numeric(group["end_s"], errors="coerce")
        if sent.notna().any() and end.notna().any():
            total += max(0.0, float(end.max()) - float(sent.min()))
    return total


def _latency_statistics(samples: dict[str, np.ndarray], extra_percentiles: tuple[float, ...]) -> dict[str, float]:
    """Percentiles, mean and standard deviation of each latency's samples."""
    row: dict[str, float] = {}
    for base, values in samples.items():
        values = np.asarray(values, float)
        for p, value in zip(PERCENTILES, _percentiles(values)):
            row[f"{base}_p{p}_s"] = value
        row[f"{base}_mean_s"], row[f"{base}_std_s"] = _mean_std(values)
        for extra, value in zip(extra_percentiles, _percentiles(values, extra_percentiles)):
            row[f"{base}_{percentile_label(extra)}_s"] = value
    return row


def _summarize_cell(cell: pd.DataFrame, slo_columns: dict[str, float],
                    extra_percentiles: tuple[float, ...] = ()) -> dict[str, float]:
    ok = _ok_mask(cell)
    good = cell[ok]
    total = len(cell)
    rejected = int((cell["error_class"] == "rejected").sum()) if "error_class" in cell else 0
    errors = total - int(ok.sum()) - rejected
    window = _window_s(cell)
    row: dict[str, float] = {
        "requests": total, "ok": int(ok.sum()), "rejected": rejected, "errors": errors,
        "rejection_rate": rejected / total if total else float("nan"),
        "error_rate": errors / total if total else float("nan"),
    }
    samples = {
        "ttft": good["ttft_s"].to_numpy(float), "tpot": good["tpot_s"].to_numpy(float),
        "itl": itl_gaps(good), "e2e": good["e2e_s"].to_numpy(float),
        "queue_wait": good["queue_wait_s"].to_numpy(float),
    }
    row.update(_latency_statistics(samples, extra_percentiles))
    row["load_s_mean"] = float(good["load_s"].mean()) if good["load_s"].notna().any() else np.nan
    row["prefill_s_mean"] = (
        float(good["prefill_s"].mean()) if good["prefill_s"].notna().any() else np.nan
    )
    output_tokens = float(np.nansum(good["output_tokens_used"].to_numpy(float)))
    row["output_tps"] = output_tokens / window if window > 0 else np.nan
    user_tps = _percentiles(good["user_tps"].to_numpy(float))
    row["user_tps_p50"] = user_tps[0]
    row["rps"] = len(good) / window if window > 0 else np.nan
    meets = np.ones(len(good), dtype=bool)
    for column, threshold in slo_columns.items():
        values = good[column].to_numpy(float)
        # A metric that does not apply to a request (TPOT of a one-token answer) does not fail it.
        meets &= np.isnan(values) | (values <= threshold)
    row["goodput_rps"] = int(meets.sum()) / window if window > 0 else np.nan
    row["window_s"] = window
    row.update(rates.token_rates(good, window))
    row["inflight_mean"] = rates.inflight_mean(cell, window)
    row["itl_gaps"] = len(samples["itl"])  # the n behind itl_p*: gaps pooled, not requests
    row.update(rates.repeat_intervals(cell, ok))
    for base in CI_BASES:
        for p in CI_PERCENTILES:
            lo, hi = bootstrap_ci(samples[base], p)
            row[f"{base}_p{p}_ci_lo_s"] = lo
            row[f"{base}_p{p}_ci_hi_s"] = hi
    return row


SUMMARY_COLUMNS: tuple[str, ...] = (
    "requests", "ok", "rejected", "errors", "rejection_rate", "error_rate",
    *(f"{base}_p{p}_s" for base in LATENCY_BASES for p in PERCENTILES),
    *(f"{base}_{stat}_s" for base in LATENCY_BASES for stat in ("mean", "std")),
    "load_s_mean", "prefill_s_mean", "output_tps", "user_tps_p50", "rps", "goodput_rps",
    "window_s", "input_tps", "total_tps", "inflight_mean", "repeats", "itl_gaps",
    *(f"{base}_p{p}_ci_{side}_s" for base in CI_BASES for p in CI_PERCENTILES
      for side in ("lo", "hi")),
    *rates.repeat_interval_columns(),
)


# The record columns cell_summary reads (request_metrics and _summarize_cell): a run's end reads
# only these back from requests.parquet, not the stored text and error messages.
SUMMARY_INPUT_COLUMNS: tuple[str, ...] = (
    "cell_id", "phase", "repeat", "surface", "error_class", "scheduled_s", "sent_s",
    "first_token_s", "end_s", "chunk_times_s", "output_tokens", "load_duration_ns",
    "prompt_eval_duration_ns", "prompt_tokens",
)


def summary_columns(percentiles: Iterable[float] | None = None) -> tuple[str, ...]:
    """SUMMARY_COLUMNS plus a column per latency for each chosen percentile not among them."""
    extra = _extra_percentiles(percentiles)
    return SUMMARY_COLUMNS + tuple(f"{base}_{percentile_label(p)}_s"
                                   for base in LATENCY_BASES for p in extra)


def _extra_percentiles(percentiles: Iterable[float] | None) -> tuple[float, ...]:
    return tuple(p for p in (percentiles or ()) if float(p) not in {float(d) for d in PERCENTILES})


def cell_summary(requests: pd.DataFrame, slos: dict[str, float] | None = None,
                 percentiles: Iterable[float] | None = None) -> pd.DataFrame:
    """One row per cell (index cell_id) over its measure-phase requests; see README_SECTION.

    `slos` maps metric names to thresholds in seconds (`{"ttft_p95": 0.5, "tpot_p95": 0.05}`);
    goodput counts the successful requests whose own TTFT/TPOT/... are within every threshold.
    `percentiles` adds columns for percentiles beyond p50/p90/p95/p99 (`ttft_p99.9_s`).
    """
    slo_columns = _slo_columns(slos)
    extra = _extra_percentiles(percentiles)
    columns = list(summary_columns(percentiles))
    if requests.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="cell_id"))
    frame = requests
    if "phase" in frame.columns:
        frame = frame[frame["phase"].fillna("measure") == "measure"]
    frame = request_metrics(frame)
    rows = {cell_id: _summarize_cell(cell, slo_columns, extra)
            for cell_id, cell in frame.groupby("cell_id", sort=False)}
    summary = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    summary.index.name = "cell_id"
    for column in ("requests", "ok", "rejected", "errors"):
        summary[column] = summary[column].astype(int)
    return summary


def metrics_readme() -> str:
    """The "Metrics: definitions" section of docs/metrics.md (Markdown)."""
    return README_SECTION


README_SECTION = """\
## Metrics: definitions

All times are measured by bench's client on a monotonic clock, stamped when the bytes arrive.
Latency statistics use the successful requests of the measure phase (warmup excluded); rates
count over the measurement window.

| Metric | Definition |
|---|---|
| `ttft_s` | Time to first token: first chunk carrying generated text (answer *or* thinking) minus the time the request was handed to the connection. A role-only or empty chunk is not a token. With `stream: false` the whole text arrives at once, so TTFT = end-to-end. |
| `tpot_s` | Time per output token, first token excluded: (arrival of the last text chunk - first token) / (output tokens - 1). Output tokens are the server's count (`eval_count`, `usage.completion_tokens`), else the number of text chunks. Needs at least two text chunks (else empty). |
| `itl` | Inter-token latency, as the gaps between consecutive text chunks. `itl_mean_s` is a request's mean gap; summary `itl_p*` percentiles pool every gap of every request in the cell (long stalls show in p99 even when the mean hides them); `itl_gaps` counts the pooled gaps, the n behind them. |
| `e2e_s` | End-to-end latency: done line / `[DONE]` (or failure) minus send. |
| `user_tps` | A request's output tokens / (end - first token): the decode speed one user sees. Summary: `user_tps_p50`. |
| `output_tps` | Aggregate output tokens/s: output tokens of all successful requests / measurement window. |
| `input_tps` | Aggregate input tokens/s: the server's prompt token count (`prompt_eval_count`, `usage.prompt_tokens`; cached tokens included) of all successful requests / measurement window (GuideLLM's and `vllm bench serve`'s input throughput). Empty when the server reported no count. |
| `total_tps` | (input + output tokens of all successful requests) / window: `vllm bench serve`'s "Total Token throughput". |
| `inflight_mean` | Time-weighted mean of requests in flight over the window: the sum of every measured request's send-to-end time (failures included) / window. A closed loop at concurrency 8 that reads 5.1 spent a third of its time between requests or draining; an open loop far above its rate × e2e is queueing. |
| `repeats`, `*_repeats_ci_lo/hi` | With `--repeats N` (N ≥ 2): a 95% Student-t interval over the N per-repeat values of `output_tps`, `ttft_p95` and `tpot_p95` (AIPerf's run-to-run confidence; wide with 2–3 repeats, as it should be). `bench compare` widens a throughput gate's interval to cover it when both sides have ≥ 2 repeats. |
| `window_s` | Measurement window: last end minus first send of the cell's measured requests, summed over repeats. |
| `rps` | Successful requests / window. |
| `goodput_rps` | Successful requests that meet every per-request SLO (e.g. `ttft_p95: 0.5` means that request's TTFT <= 0.5 s; `tpot_p95: 0.05` its TPOT <= 50 ms) / window. A metric that does not apply to a request (TPOT of a one-token answer) does not fail it. Without SLOs it equals `rps`. |
| `rejection_rate` | Requests answered 503 (Ollama's full pending queue) / all requests. |
| `error_rate` | All other failures (client_error, server_error, timeout, disconnected, bad_stream) / all requests; rejections are not counted here. |
| `load_s`, `prefill_s` | Native API only: the server's `load_duration` and `prompt_eval_duration`. Ollama's load_duration is the time to get a runner from the scheduler, so it includes waiting in the scheduler's pending queue as well as an actual model load (in Ollama v0.30+ a cold load blocks that queue until llama-server is healthy). prompt_eval_duration covers only the prompt tokens llama-server had to evaluate: its prompt cache is on for every request, so a prefix a slot still holds costs almost nothing (while `prompt_eval_count` still counts it). |
| `queue_wait_s` | Native API only: TTFT - load - prefill, clipped at 0: time spent waiting for a parallel slot (plus the first decode step, network and overhead). |
| `slot_wait_s` | Native API only, from the server's own clock: total_duration - load - prompt_eval - eval, clipped at 0: the wait for one of the runner's NUM_PARALLEL slots plus Ollama's overhead (not part of load_duration). |
| `prefix_cache_hit` | Native API only: the request's prefill per prompt token was more than 4x faster than its cell's median: most of its prompt came from llama-server's prompt cache. |
| `cold` | The request paid for a model load: `load_duration` > 100 ms (a warm hand-off takes milliseconds, a real load hundreds of ms or more). |
| `dispatch_lag_s` | Sent minus scheduled: how late bench's own client sent the request (a large value means the client, not the server, is the bottleneck). |

Percentiles p50/p90/p95/p99 (plus any a scenario lists in `percentiles:`) use numpy's linear
interpolation; every latency also has its mean and sample standard deviation (`ttft_mean_s`,
`ttft_std_s`, n−1). Spread: the p50 and p95 of TTFT
and TPOT carry 95% bootstrap confidence intervals (`ttft_p95_ci_lo_s`, `ttft_p95_ci_hi_s`, ...;
`scipy.stats.bootstrap`, 1000 seeded resamples of the requests, percentile method), so two runs
whose intervals overlap are not clearly different. Sample size: a percentile needs at least two
samples beyond it and never fewer than 10 (p50: 10, p90: 20, p95: 40, p99: 200 successful
requests); below that the interval is empty, the report and summary say "not enough samples",
and `bench compare` gives no verdict for that gate.

Metric names used in SLOs, gates and thresholds drop the `_s`: `ttft_p95`, `tpot_p95`,
`itl_p99`, `e2e_p50` (any percentile: `ttft_p99.9`), `ttft_mean`, `ttft_std`, `queue_wait_p95`,
`output_tps`, `input_tps`, `total_tps`, `user_tps_p50`, `rps`, `goodput_rps`, `rejection_rate`, `error_rate`,
`load_mean`, `prefill_mean`.
"""
