"""`bench run`, `bench validate`, `bench schema`: parse, call bench.runner / bench.scenario, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench.errors import BenchError
from bench.plan import Overrides, plan_cells
from bench.runner import RunOptions, run_scenario
from bench.scenario import load_scenario, scenario_json_schema

# Exit codes: 0 complete, 2 user error (BenchError, via bench.cli), 3 failed (abort_on),
# 4 partial (the managed server died), 130 interrupted by Ctrl-C / SIGTERM (partial, records kept).
EXIT_FAILED = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130


@click.command("run")
@click.argument("scenario_file", type=click.Path(path_type=Path))
@click.option("--target", help="Base URL of the server, or `sim` (overrides the scenario and OLLAMA_HOST).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory (default results/<run-id>).")
@click.option("--results", "results_root", type=click.Path(path_type=Path, file_okay=False),
              default=Path("results"), show_default=True, help="Where run directories are created.")
@click.option("--requests", type=click.IntRange(min=1), help="Measured requests per cell (overrides).")
@click.option("--duration", "duration_s", type=click.FloatRange(min=0, min_open=True),
              help="Seconds per cell (overrides requests).")
@click.option("--warmup", "warmup_requests", type=click.IntRange(min=0), help="Warmup requests per cell.")
@click.option("--repeats", type=click.IntRange(min=1), help="Repeats per cell.")
@click.option("--quick", is_flag=True, help="Smoke test: 4 requests per cell, 1 warmup, 1 repeat.")
@click.option("--sim-speed", type=click.FloatRange(min=0, min_open=True),
              help="Speed factor of the embedded simulator (target: sim).")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds in-flight requests get after Ctrl-C / SIGTERM.")
@click.option("--baseline", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Baseline run directory to compare against (gates).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
def run_command(scenario_file: Path, target: str | None, out_dir: Path | None, results_root: Path,
                requests: int | None, duration_s: float | None, warmup_requests: int | None,
                repeats: int | None, quick: bool, sim_speed: float | None, grace_s: float,
                baseline: Path | None, no_report: bool) -> None:
    """Run SCENARIO_FILE: expand its matrix into cells, load the target, record every request."""
    scenario = load_scenario(scenario_file)
    if quick:
        requests = requests or 4
        warmup_requests = 1 if warmup_requests is None else warmup_requests
        repeats = repeats or 1
    overrides = Overrides(requests=requests, duration_s=duration_s,
                          warmup_requests=warmup_requests, repeats=repeats)
    options = RunOptions(scenario_path=scenario_file, target=target, out_dir=out_dir,
                         results_root=results_root, overrides=overrides, sim_speed=sim_speed,
                         baseline=baseline, grace_s=grace_s, report=not no_report)
    result = run_scenario(scenario, options)
    if result.status == "failed":
        sys.exit(EXIT_FAILED)
    if result.status == "partial":
        sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_PARTIAL)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check scenario FILES without running them (one line per problem; exit 2 if any)."""
    failed = False
    for path in files:
        try:
            scenario = load_scenario(path)
            cells = plan_cells(scenario)
        except BenchError as error:
            click.echo(f"error: {error}", err=True)
            failed = True
            continue
        click.echo(f"{path}: ok ({len(cells)} cells)")
    if failed:
        sys.exit(2)


@click.command("schema")
def schema_command() -> None:
    """Print the scenario JSON Schema (for editors: yaml-language-server, VS Code)."""
    click.echo(json.dumps(scenario_json_schema(), indent=2))


def register(group: click.Group) -> None:
    group.add_command(run_command)
    group.add_command(validate_command)
    group.add_command(schema_command)
