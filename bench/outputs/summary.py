"""A run's end-of-run outputs, drawn from its stored records: summary.csv/.json, the summary
printed to the console and kv.json (report.html: bench.run.finish)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich import box
from rich.table import Table

from bench.analysis.kv_fit import write_kv_analysis
from bench.records.atomic import write_atomically
from bench.load.health import ClientHealth
from bench.escape import for_terminal
from bench.numbers import column
from bench.outputs.statistics import statistics_table
from bench.records import KV_JSON, SUMMARY_CSV, SUMMARY_JSON, Run, read_json, write_json
from bench.records.cell_settings import CellSettings

# Below this many terminal columns the end-of-run table drops low-value columns (the live bars in
# bench.run.progress switch layout at the same width).
NARROW_COLUMNS = 120


def with_settings(summary: pd.DataFrame, settings: Mapping[str, CellSettings],
                  labels: dict[str, str]) -> pd.DataFrame:
    """The summary with each cell's label and settings (endpoint, model, concurrency, server env…)
    as columns before the figures, so a row says which setting it measured without a lookup."""
    rows = {cell_id: {"label": labels.get(cell_id),
                      **{k: v for k, v in cell.row().items() if k not in summary.columns}}
            for cell_id, cell in settings.items() if cell_id in summary.index}
    if not rows:
        return summary
    described = pd.DataFrame.from_dict(rows, orient="index")
    described.index.name = summary.index.name
    return described.join(summary, how="right")


def write_summary(run_dir: Path, summary: pd.DataFrame, settings: Mapping[str, CellSettings] | None = None,
                  labels: dict[str, str] | None = None) -> None:
    """summary.csv and summary.json: the run's cell_summary, each row with its cell's settings
    (`settings`: cell_id → settings) and label."""
    stored = with_settings(summary, settings or {}, labels or {})
    write_atomically(run_dir / SUMMARY_CSV, stored.to_csv)
    rows = stored.reset_index()
    write_json(run_dir / SUMMARY_JSON, rows.astype(object).where(rows.notna(), None).to_dict(orient="records"))


def print_summary(console: Console, run_dir: Path, status: str, why: str | None,
                  summary: pd.DataFrame | None, cell_order: dict[str, int], labels: dict[str, str],
                  health: ClientHealth, notes: list[str], slos: dict[str, Any] | None = None,
                  percentiles: tuple[float, ...] | None = None) -> None:
    """The summary table in cell order (goodput and SLO verdicts when the scenario sets `slos`),
    then warnings, notes and how the run ended (`why` if not complete).

    With `percentiles` (the scenario chose them) a latency statistics table follows the summary.
    """
    if summary is not None:
        ordered = summary.loc[sorted(summary.index, key=lambda cid: cell_order.get(cid, 1 << 30))]
        console.print(summary_table(ordered, labels, slos or {}, width=console.width))
        if percentiles:
            console.print(statistics_table(ordered, labels, percentiles))
    if summary is not None and len(summary) and "ok" in summary:
        from bench.analysis.samples import min_samples_for_percentile

        needed = min_samples_for_percentile(95)
        thin = int((summary["ok"] < needed).sum())
        if thin:
            console.print(f"note: {thin} of {len(summary)} cells have fewer than {needed} successful requests: "
                          "their p95 is close to the slowest request, not a 95th percentile (not enough "
                          "samples for an interval or a gate verdict)", highlight=False, soft_wrap=True, markup=False)
    if health.saturated:
        console.print(
            f"warning: the load generator may be the bottleneck (dispatch lag p99 "
            f"{(health.dispatch_lag_p99_s or 0) * 1000:.0f} ms, CPU {health.cpu_s:.1f}s of "
            f"{health.wall_s:.1f}s wall): numbers may describe the client, not the server",
            highlight=False, soft_wrap=True)
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    reason = f" ({why})" if status != "complete" else ""
    # markup=False: a reason may quote server text, which must print as it is, never as markup.
    console.print(f"run {status}{reason}: {run_dir}", highlight=False, soft_wrap=True, markup=False)
    if status != "complete":
        console.print(f"finish it with: bench run --resume {run_dir}", highlight=False, soft_wrap=True,
                      markup=False)


def write_kv(run: Run) -> tuple[Run, str | None]:
    """kv.json for runs that varied num_ctx / NUM_PARALLEL (the report's KV table reads it): the run
    with it among its extras as load_run reads it back, and the line to print about it (where it
    is, or why it failed; None when the run needs none)."""
    try:
        path = write_kv_analysis(run)
    except Exception as error:  # noqa: BLE001 - an analysis bug must not lose the run
        return run, f"warning: KV analysis failed: {type(error).__name__}: {error}"
    if path is None:
        return run, None
    return dataclasses.replace(run, extras={**run.extras, KV_JSON: read_json(path)}), f"kv analysis: {path}"


def _column(summary: pd.DataFrame, name: str, scale: float = 1.0) -> list[str]:
    return column(summary[name] if name in summary else [None] * len(summary), scale)


def summary_table(summary: pd.DataFrame, labels: dict[str, str], slos: dict[str, Any] | None = None,
                  width: int | None = None) -> Table:
    """The end-of-run table: one row per cell, the numbers people look at first; with SLOs, goodput
    (requests/s meeting every SLO) and which SLOs each cell met. One precision per column.

    On a terminal narrower than 120 columns (`width`) the low-value columns go (rej and err when
    every cell has none, req/s: out tok/s says as much), headers wrap and numbers never do;
    summary.csv keeps every column."""
    narrow = width is not None and width < NARROW_COLUMNS
    table = Table(title="summary (measured requests)", show_lines=False,
                  box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow, collapse_padding=narrow)
    columns = {"TTFT p50 ms": _column(summary, "ttft_p50_s", 1000), "TTFT p95 ms": _column(summary, "ttft_p95_s", 1000),
               "TPOT p50 ms": _column(summary, "tpot_p50_s", 1000), "out tok/s": _column(summary, "output_tps"),
               "req/s": _column(summary, "rps")}
    counts = {"ok/req": [f"{int(row.get('ok', 0) or 0)}/{int(row.get('requests', 0) or 0)}" for _, row in summary.iterrows()],
              "rej": [str(int(row.get("rejected", 0) or 0)) for _, row in summary.iterrows()],
              "err": [str(int(row.get("errors", 0) or 0)) for _, row in summary.iterrows()]}
    verdicts = _slo_verdicts(summary, slos or {})
    if verdicts is not None:
        columns["goodput req/s"] = _column(summary, "goodput_rps")
    if narrow:
        counts = {name: values for name, values in counts.items() if name == "ok/req" or set(values) != {"0"}}
        columns.pop("req/s")
    table.add_column("cell", no_wrap=True)
    figures = {**counts, **columns}
    for name in figures:
        # Narrow: the header in two lines ("TTFT / p50 ms"), the column as wide as its widest figure.
        header = name.replace(" ", "\n", 1) if narrow else name
        widest = max([len(v) for v in figures[name]] + [len(line) for line in header.splitlines()])
        table.add_column(header, justify="right", no_wrap=True, max_width=widest if narrow else None)
    if verdicts is not None:
        table.add_column("SLOs", min_width=16 if narrow else None, overflow="fold")
    for row_index, cell_id in enumerate(summary.index):
        table.add_row(
            for_terminal(labels.get(str(cell_id), str(cell_id))),
            *(values[row_index] for values in figures.values()),
            *((for_terminal(verdicts[row_index]),) if verdicts is not None else ()),
        )
    if verdicts is not None:
        table.caption = ("SLOs " + ", ".join(f"{k} {v}" for k, v in (slos or {}).items()) + ": goodput counts the "
                         "requests/s that met them, the SLOs column whether the cell's percentiles did")
    return table


def _slo_verdicts(summary: pd.DataFrame, slos: dict[str, Any]) -> list[str] | None:
    """'met' or 'misses ttft_p95 …' per row; None without SLOs (or with SLOs bench cannot read)."""
    if not slos:
        return None
    from bench.analysis.recommend import parse_slo, slo_verdict
    from bench.errors import BenchError

    try:
        parsed = tuple(parse_slo(f"{metric}={value}") for metric, value in slos.items())
    except BenchError:
        return None
    return [slo_verdict(row, parsed) for _, row in summary.iterrows()]
