"""`bench recommend RUN_DIR`: parse, call bench.recommend, print the table and verdict, store JSON,
and redraw the run's report.html (when it has one) so its answer section shows this recommendation."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from bench.cli.console import output_console
from bench.errors import UsageError
from bench.records import RECOMMENDATION_JSON, REPORT_HTML, load_run, write_json


@click.command("recommend")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--slo", "slo_texts", multiple=True, metavar="METRIC=VALUE",
              help="e.g. ttft_p95=2s, tpot_p95=100ms (repeatable; default: the scenario's slos).")
@click.option("--min-user-tps", type=float, default=None, help="Minimum per-request output tok/s (p50).")
def recommend_command(run_dir: Path, slo_texts: tuple[str, ...], min_user_tps: float | None) -> None:
    """Recommend OLLAMA_NUM_PARALLEL from a sweep in RUN_DIR; writes RUN_DIR/recommendation.json."""
    from bench.recommend import candidates_table, parse_slo, recommend, scenario_slos

    if min_user_tps is not None and min_user_tps < 0:
        raise UsageError(f"--min-user-tps {min_user_tps:g}: must be >= 0")
    slos = [parse_slo(text) for text in slo_texts]
    run = load_run(run_dir)
    if not slo_texts:
        slos = list(scenario_slos(run.manifest))
    recommendation = recommend(run, tuple(slos), min_user_tps)
    rows = candidates_table(recommendation)
    table = Table(title=f"OLLAMA_NUM_PARALLEL sweep: {run_dir}")
    for column in rows[0]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    console = output_console()
    console.print(table)
    console.print(recommendation.verdict, highlight=False)
    path = Path(run_dir) / RECOMMENDATION_JSON
    write_json(path, recommendation.to_json())
    console.print(f"stored: {path}", highlight=False)
    report_path = Path(run_dir) / REPORT_HTML
    if report_path.exists():
        from bench.report import write_report

        write_report([run_dir], report_path)
        console.print(f"report updated: {report_path}", highlight=False)


def register(group: click.Group) -> None:
    group.add_command(recommend_command)
