"""The latency statistics table: mean, standard deviation and the percentiles a scenario chose."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

from bench.analysis.metrics import percentile_label

# The latencies shown, in the order people read them.
STATISTICS_BASES = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E"))


def statistics_rows(summary: pd.DataFrame, labels: dict[str, str],
                    percentiles: tuple[float, ...]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per cell and latency, values in milliseconds."""
    header = ["cell", "metric", "n", "mean ms", "std ms",
              *(f"{percentile_label(p)} ms" for p in percentiles)]
    rows = []
    for cell_id, row in summary.iterrows():
        for base, name in STATISTICS_BASES:
            values = [row.get(f"{base}_mean_s"), row.get(f"{base}_std_s"),
                      *(row.get(f"{base}_{percentile_label(p)}_s") for p in percentiles)]
            if all(_missing(v) for v in values):
                continue
            rows.append([labels.get(str(cell_id), str(cell_id)), name, str(int(row.get("ok", 0) or 0)),
                         *(_ms(v) for v in values)])
    return header, rows


def statistics_table(summary: pd.DataFrame, labels: dict[str, str],
                     percentiles: tuple[float, ...]) -> Table:
    """The terminal table of statistics_rows."""
    header, rows = statistics_rows(summary, labels, percentiles)
    table = Table(title="latency statistics (successful measured requests; ITL pools every gap)")
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


def _ms(value: Any) -> str:
    if _missing(value):
        return "–"
    milliseconds = float(value) * 1000
    return f"{milliseconds:.2f}" if milliseconds < 100 else f"{milliseconds:.0f}"
