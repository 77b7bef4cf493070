"""The latency statistics table: mean, standard deviation and the percentiles a scenario chose."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

from bench.analysis.metrics import CI_BASES, CI_PERCENTILES, percentile_label
from bench.analysis.samples import min_samples_for_percentile
from bench.numbers import DASH, milliseconds

# The latencies shown, in the order people read them.
STATISTICS_BASES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E"))


# Marks a percentile from fewer samples than it needs (bench.analysis.samples): near the slowest
# value, not a percentile. Explained under every table that uses it (SMALL_N_NOTE).
SMALL_N = "†"
SMALL_N_NOTE = (f"{SMALL_N}: fewer samples than the percentile needs (p90: 20, p95: 40, p99: 200) — close to "
                "the slowest value, not a percentile. [a–b]: 95% bootstrap interval. ITL's n counts the "
                "gaps it pools.")


def _sample_count(row: pd.Series, base: str) -> int:
    """The n behind a latency's statistics: successful requests, or pooled gaps for ITL."""
    column = "itl_gaps" if base == "itl" and not _missing(row.get("itl_gaps")) else "ok"
    return int(row.get(column, 0) or 0)


def _percentile_cell(row: pd.Series, base: str, p: float, n: int, intervals: bool) -> str:
    text = milliseconds(row.get(f"{base}_{percentile_label(p)}_s"))
    if text == DASH:
        return text
    if n < min_samples_for_percentile(p):
        return text + SMALL_N
    lo, hi = row.get(f"{base}_{percentile_label(p)}_ci_lo_s"), row.get(f"{base}_{percentile_label(p)}_ci_hi_s")
    if intervals and base in CI_BASES and p in CI_PERCENTILES and not (_missing(lo) or _missing(hi)):
        return f"{text}\n[{milliseconds(lo)}–{milliseconds(hi)}]"  # the interval under the value: the table stays narrow
    return text


def statistics_rows(summary: pd.DataFrame, labels: dict[str, str], percentiles: tuple[float, ...],
                    *, intervals: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per cell and latency, values in milliseconds; a percentile from too
    few samples carries SMALL_N, and with `intervals` p50/p95 of TTFT/TPOT their bootstrap interval."""
    header = ["cell", "metric", "n", "mean ms", "std ms",
              *(f"{percentile_label(p)} ms" for p in percentiles)]
    rows = []
    for cell_id, row in summary.iterrows():
        for base, name in STATISTICS_BASES:
            values = [row.get(f"{base}_mean_s"), row.get(f"{base}_std_s"),
                      *(row.get(f"{base}_{percentile_label(p)}_s") for p in percentiles)]
            if all(_missing(v) for v in values):
                continue
            n = _sample_count(row, base)
            rows.append([labels.get(str(cell_id), str(cell_id)), name,
                         f"{n} gaps" if base == "itl" and not _missing(row.get("itl_gaps")) else str(n),
                         milliseconds(values[0]), milliseconds(values[1]),
                         *(_percentile_cell(row, base, p, n, intervals) for p in percentiles)])
    return header, rows


def statistics_table(summary: pd.DataFrame, labels: dict[str, str],
                     percentiles: tuple[float, ...]) -> Table:
    """The terminal table of statistics_rows."""
    header, rows = statistics_rows(summary, labels, percentiles)
    table = Table(title="latency statistics (successful measured requests; ITL pools every gap)",
                  caption=SMALL_N_NOTE)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index < 2 else "right", no_wrap=index == 0)
    for row in rows:
        table.add_row(*row)
    return table


def _missing(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return True
