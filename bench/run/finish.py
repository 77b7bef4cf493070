"""The end of a run: telemetry stopped and merged, records to Parquet, the summary files, the final
manifest, then what the user sees (summary table, kv.json, report.html)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from bench.analysis.metrics import SUMMARY_INPUT_COLUMNS, cell_summary
from bench.analysis.run_analysis import RunAnalysis, analyse_run
from bench.analysis.saturation import Saturation, run_saturations
from bench.analysis.sweep import SweepResult, run_sweeps
from bench.analysis.thresholds import evaluate as evaluate_thresholds
from bench.load.health import client_health
from bench.records.manifest import Manifest
from bench.outputs.recommendation import print_run_recommendation
from bench.outputs.summary import print_summary, write_kv, write_summary
from bench.outputs.sweep import print_sweep, write_sweep
from bench.records import REPORT_HTML, REQUESTS_JSONL, SCENARIO_YAML, Run, load_run, write_requests_parquet
from bench.run.progress import busy
from bench.run.resume import merge_telemetry
from bench.scenario import scenario_to_yaml, with_run_settings

if TYPE_CHECKING:
    from bench.run.resolve import ResolvedRun
    from bench.run.runner import CellLoop


@dataclass
class RunResult:
    run_dir: Path
    status: str  # complete | partial | failed
    summary: pd.DataFrame | None
    manifest: Manifest
    # The run analysed once at its end (None: not loaded back, see finish_run): the gate of
    # `bench run --baseline` compares it instead of loading the run again.
    analysis: RunAnalysis | None = None

    @property
    def interrupted(self) -> bool:
        return self.manifest.interrupted


def write_scenario_yaml(run: ResolvedRun) -> None:
    """The scenario with the command line's settings in it: `bench run DIR/scenario.yaml` reruns it."""
    ran = with_run_settings(run.scenario, target=run.target_override, sim_speed=run.sim_speed,
                            **dataclasses.asdict(run.overrides))
    (run.run_dir / SCENARIO_YAML).write_text(scenario_to_yaml(ran), encoding="utf-8")


def discard_empty_run(loop: CellLoop) -> bool:
    """Remove the directory of a run that failed before measuring anything, if bench made it."""
    requests = loop.run.run_dir / REQUESTS_JSONL
    if not loop.run.made_run_dir or (requests.exists() and requests.stat().st_size > 0):
        return False
    loop.stop_telemetry()
    shutil.rmtree(loop.run.run_dir, ignore_errors=True)
    return True


def finish_run(loop: CellLoop, status: str, console: Console, quiet: bool = False) -> RunResult:
    """Close the run directory with `status`; `quiet` (a run that raised) prints nothing."""
    run, state = loop.run, loop.state
    loop.stop_telemetry()
    loop.conclude()  # adaptive runs: skips, cells that hit their maximum, target busy time
    if run.resume is not None:
        merge_telemetry(run.run_dir)
    # Only what the summary reads: all of a long run's records in pandas are hundreds of MiB.
    with busy(console, "writing requests.parquet and the summary") if not quiet else contextlib.nullcontext():
        measured = write_requests_parquet(run.run_dir, SUMMARY_INPUT_COLUMNS, phase="measure")
        # The run's one cell_summary: the files, the table, the thresholds and the analysis below read it.
        summary = None if measured.empty else cell_summary(measured, slos=run.scenario.slo_values() or None,
                                                           percentiles=run.scenario.percentile_values())
        if summary is not None:
            write_summary(run.run_dir, summary, {cell.cell_id: cell.settings for cell in state.cells}, state.labels)
    verdicts = []
    if run.scenario.thresholds:
        verdicts = evaluate_thresholds(summary if summary is not None else pd.DataFrame(),
                                       run.scenario.threshold_limits(), state.labels)
        loop.manifest.manifest.thresholds = [verdict.to_dict() for verdict in verdicts]
    loop.write_manifest(status, ended=True)
    result = RunResult(run.run_dir, status, summary, loop.manifest.manifest)
    if quiet:  # a run that raised: its files, nothing printed, nothing loaded back
        write_sweep(run.run_dir, run_sweeps(loop.manifest.manifest, summary) if summary is not None else ())
        return result
    print_summary(console, run.run_dir, status, state.failed_reason or loop.stop.reason, summary,
                  {cell.cell_id: cell.cell_index for cell in run.cells}, state.labels,
                  client_health(state.outcomes), state.notes, dict(run.scenario.slos or {}),
                  tuple(run.scenario.percentiles) if run.scenario.percentiles else None)
    for verdict in verdicts:
        console.print(verdict.line(), highlight=False, soft_wrap=True, markup=False)
    return dataclasses.replace(result, analysis=_conclude(loop, status, summary, console))


def _conclude(loop: CellLoop, status: str, summary: pd.DataFrame | None, console: Console) -> RunAnalysis | None:
    """The finished run read back once: kv.json, then its one analysis (the summary reused), which the
    warnings, sweep.json and the sweep's answer, report.html and the recommendation are drawn from."""
    run = loop.run
    loaded = _load_back(run.run_dir, console)
    kv_line = None
    if loaded is not None:
        loaded, kv_line = write_kv(loaded)  # before the analysis: the report's KV table reads kv.json
    wanted = summary is not None and (run.report or status == "complete")
    analysis = _analyse(loaded, summary, console) if loaded is not None and wanted else None
    saturations, sweeps = ((analysis.saturations, analysis.sweeps) if analysis is not None
                           else _found_without_analysis(loop.manifest.manifest, summary))
    for saturation in saturations:
        console.print(f"warning: {saturation.sentence()}", highlight=False, soft_wrap=True, markup=False)
    write_sweep(run.run_dir, sweeps)
    print_sweep(console, sweeps)
    if kv_line is not None:
        console.print(kv_line, highlight=False, soft_wrap=True, markup=False)
    if run.report and analysis is not None:
        with busy(console, "drawing report.html"):
            write_run_report(analysis, console)
    if analysis is not None and status == "complete":
        # Last, so the answer of a sizing sweep is what the user sees when the run ends.
        print_run_recommendation(console, analysis)
    return analysis


def _found_without_analysis(manifest: Manifest, summary: pd.DataFrame | None
                            ) -> tuple[tuple[Saturation, ...], tuple[SweepResult, ...]]:
    """What the analysis would say of saturation and sweeps, for a run not analysed (a partial run
    with --no-report, one that raised, one whose analysis failed): found from the summary in hand."""
    if summary is None:
        return (), ()
    return run_saturations(manifest, summary), run_sweeps(manifest, summary)


def _load_back(run_dir: Path, console: Console) -> Run | None:
    """The run directory read back, once; a failure is a warning (the records are what matter)."""
    try:
        return load_run(run_dir)
    except Exception as error:  # noqa: BLE001 - a bug reading the run back must not lose it
        console.print(f"warning: could not read the run back: {type(error).__name__}: {error}",
                      highlight=False, soft_wrap=True, markup=False)
        return None


def _analyse(run: Run, summary: pd.DataFrame | None, console: Console) -> RunAnalysis | None:
    """The run's one analysis; a failure is a warning (the records are what matter)."""
    try:
        return analyse_run(run, summary)
    except Exception as error:  # noqa: BLE001 - an analysis bug must not lose the run
        console.print(f"warning: analysis failed: {type(error).__name__}: {error}",
                      highlight=False, soft_wrap=True, markup=False)
        return None


def write_run_report(analysis: RunAnalysis, console: Console) -> None:
    """report.html of this run; a failure is a warning (the run's records are what matter)."""
    # Imported here: bench.report pulls in matplotlib and every section's plots (~0.4 s on top of the CLI), which
    # `bench run --no-report`, soak and the tests driving run_scenario never need.
    from bench.report import render_report, save_report

    try:
        path = save_report(render_report([analysis]), analysis.run.path / REPORT_HTML)
        console.print(f"report: {path}", highlight=False, soft_wrap=True, markup=False)
    except Exception as error:  # noqa: BLE001 - a report bug must not lose the run
        console.print(f"warning: report failed: {type(error).__name__}: {error}",
                      highlight=False, soft_wrap=True, markup=False)
