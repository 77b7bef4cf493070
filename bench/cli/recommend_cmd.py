"""`bench recommend RUN_DIR`: parse, call bench.analysis.recommend, print the table and verdict.

A what-if by default: nothing in RUN_DIR changes. With --write the recommendation is stored
(recommendation.json) and the run's report.html redrawn so its answer section shows it.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bench.cli import params
from bench.cli.console import output_console, working
from bench.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from bench.analysis.recommend import Recommendation
    from bench.records import Run

# Exit codes: 0 a setting meets every SLO (a recommendation), 1 no setting does, 2 usage error.
EXIT_NO_SETTING_MEETS_SLOS = 1


@click.command("recommend")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--slo", "slo_texts", multiple=True, metavar="METRIC=VALUE",
              help="e.g. ttft_p95=2s, tpot_p95=100ms (repeatable; default: the scenario's slos).")
@click.option("--min-user-tps", type=params.BoundedFloat(0.0, 1e9), default=None, help="Minimum per-request output tok/s (p50).")
@click.option("--write", "write", is_flag=True,
              help="Store the answer in RUN_DIR/recommendation.json and redraw RUN_DIR/report.html "
                   "(default: a what-if that changes nothing).")
def recommend_command(run_dir: Path, slo_texts: tuple[str, ...], min_user_tps: float | None,
                      write: bool) -> None:
    """Recommend OLLAMA_NUM_PARALLEL from a sweep in RUN_DIR (exit 0: a setting meets the SLOs; 1: none does)."""
    if min_user_tps is not None and min_user_tps < 0:
        raise UsageError(f"--min-user-tps {min_user_tps:g}: must be >= 0")
    console = output_console()
    with working(console, f"reading {run_dir} and checking every cell against the SLOs"):
        from bench.analysis.recommend import parse_slo, recommend, scenario_slos
        from bench.analysis.run_analysis import run_summary
        from bench.outputs.recommendation import print_recommendation
        from bench.records import load_run

        slos = [parse_slo(text) for text in slo_texts]
        run = load_run(run_dir)
        if not slo_texts:
            slos = list(scenario_slos(run.manifest))
        # The run's one cell summary: the recommendation and, with --write, the redrawn report read it.
        summary = run_summary(run)
        recommendation = recommend(run, tuple(slos), min_user_tps, summary=summary)
    print_recommendation(console, recommendation, f"OLLAMA_NUM_PARALLEL sweep: {run_dir}")
    if write:
        _store(run, summary, recommendation, console)
    else:
        console.print("what-if only: nothing in the run changed (add --write to store this answer "
                      "and redraw its report)", highlight=False, soft_wrap=True, style="dim")
    if recommendation.num_parallel is None:
        sys.exit(EXIT_NO_SETTING_MEETS_SLOS)


def _store(run: Run, summary: pd.DataFrame, recommendation: Recommendation, console: Console) -> None:
    """recommendation.json written, and report.html (if the run has one) redrawn from the run
    already loaded and summarised, with the recommendation read back as the report reads it."""
    from bench.analysis.run_analysis import analyse_run
    from bench.records import RECOMMENDATION_JSON, REPORT_HTML, read_json, write_json

    path = run.path / RECOMMENDATION_JSON
    write_json(path, recommendation.to_json())
    console.print(f"stored: {path}", highlight=False)
    report_path = run.path / REPORT_HTML
    if report_path.exists():
        with working(console, f"redrawing {report_path}"):
            from bench.report import render_report, save_report

            stored = dataclasses.replace(run, extras={**run.extras, RECOMMENDATION_JSON: read_json(path)})
            save_report(render_report([analyse_run(stored, summary)]), report_path)
        console.print(f"report updated: {report_path}", highlight=False)


def register(group: click.Group) -> None:
    group.add_command(recommend_command)
