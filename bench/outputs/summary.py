"""A run's end-of-run outputs, drawn from its stored records: summary.csv/.json, the summary
printed to the console, kv.json and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from bench.analysis.kv_fit import write_kv_analysis
from bench.atomic import write_atomically
from bench.load import ClientHealth
from bench.analysis.metrics import cell_summary
from bench.outputs.statistics import statistics_table
from bench.run.progress import summary_table
from bench.records import REPORT_HTML, SUMMARY_CSV, SUMMARY_JSON, write_json


def with_settings(summary: pd.DataFrame, settings: dict[str, dict[str, Any]],
                  labels: dict[str, str]) -> pd.DataFrame:
    """The summary with each cell's label and settings (endpoint, model, concurrency, server env…)
    as columns before the figures, so a row says which setting it measured without a lookup."""
    rows = {cell_id: {"label": labels.get(cell_id), **{k: v for k, v in cell.items() if k not in summary.columns}}
            for cell_id, cell in settings.items() if cell_id in summary.index}
    if not rows:
        return summary
    described = pd.DataFrame.from_dict(rows, orient="index")
    described.index.name = summary.index.name
    return described.join(summary, how="right")


def write_summary(run_dir: Path, measured: pd.DataFrame, slos: dict[str, float] | None,
                  settings: dict[str, dict[str, Any]] | None = None,
                  labels: dict[str, str] | None = None,
                  percentiles: tuple[float, ...] | None = None) -> pd.DataFrame | None:
    """summary.csv and summary.json from the measure-phase records, each row with its cell's
    settings (`settings`: cell_id → settings); None if nothing was measured."""
    if measured.empty:
        return None
    summary = cell_summary(measured, slos=slos, percentiles=percentiles)
    stored = with_settings(summary, settings or {}, labels or {})
    write_atomically(run_dir / SUMMARY_CSV, stored.to_csv)
    rows = stored.reset_index()
    write_json(run_dir / SUMMARY_JSON, rows.astype(object).where(rows.notna(), None).to_dict(orient="records"))
    return summary


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
        console.print(summary_table(ordered, labels, slos or {}))
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


def saturation_lines(summary: pd.DataFrame | None, cells: list[Any], managed: bool) -> list[str]:
    """'saturated at concurrency N, server NUM_PARALLEL=M: ...' per closed-loop series of the run
    (`cells`: bench.plan.Cell; `managed`: bench started the server, so its unset settings are defaults)."""
    from bench.analysis.saturation import effective_num_parallel, find_saturation
    from bench.plan import describe_cell, varying_settings

    if summary is None or summary.empty:
        return []
    closed = [c for c in cells if c.settings.get("arrival") == "closed" and c.cell_id in summary.index
              and c.settings.get("concurrency") is not None]
    others = [n for n in varying_settings(c.settings for c in closed) if n not in ("concurrency", "requests")]
    series: dict[str, list[Any]] = {}
    for cell in closed:
        series.setdefault(describe_cell(cell.settings, others), []).append(cell)
    lines = []
    for name, members in series.items():
        frame = summary.loc[[c.cell_id for c in members]].assign(
            concurrency=[int(c.settings["concurrency"]) for c in members])
        env = dict(members[0].server_env) if managed else None
        found = find_saturation(frame, name, effective_num_parallel(members[0].settings.get("OLLAMA_NUM_PARALLEL"), env))
        if found is not None:
            lines.append(found.sentence())
    return lines


def write_kv(run_dir: Path, console: Console) -> None:
    """kv.json for runs that varied num_ctx / NUM_PARALLEL (the report's KV table reads it)."""
    try:
        path = write_kv_analysis(run_dir)
    except Exception as error:  # noqa: BLE001 - an analysis bug must not lose the run
        console.print(f"warning: KV analysis failed: {type(error).__name__}: {error}",
                      highlight=False, soft_wrap=True)
        return
    if path is not None:
        console.print(f"kv analysis: {path}", highlight=False, soft_wrap=True)


def write_run_report(run_dir: Path, console: Console) -> None:
    """report.html of this run; a failure is a warning (the run's records are what matter)."""
    # Imported here: bench.report pulls in matplotlib and every section's plots (~0.4 s on top of the CLI), which
    # `bench run --no-report`, soak and the tests driving run_scenario never need.
    from bench.report import write_report

    try:
        path = write_report([run_dir], run_dir / REPORT_HTML)
        console.print(f"report: {path}", highlight=False, soft_wrap=True, markup=False)
    except Exception as error:  # noqa: BLE001 - a report bug must not lose the run
        console.print(f"warning: report failed: {type(error).__name__}: {error}",
                      highlight=False, soft_wrap=True, markup=False)
