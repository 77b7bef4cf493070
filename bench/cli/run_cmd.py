"""`bench run`, `bench validate`, `bench schema`: parse, call bench.run.runner / bench.scenario, print."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bench.cli import params
from bench.cli.console import output_console
from bench.errors import BenchError, UsageError
from bench.escape import plain_terminal

if TYPE_CHECKING:
    from bench.run.runner import RunOptions, RunResult

# Exit codes: 0 complete, 2 user error (BenchError, via bench.cli), 3 failed (abort_on),
# 4 partial (the managed server died), 1 regressed against --baseline, 130 interrupted by Ctrl-C / SIGTERM (partial, records kept).
EXIT_FAILED = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130
EXIT_REGRESSED = 1  # as `bench compare`: a gate regressed against --baseline
GATES_MARKDOWN = "gates.md"


@click.command("run")
@click.argument("scenario_file", type=click.Path(path_type=Path), required=False)
@click.option("--target", help="Base URL of the server, or `sim` (overrides the scenario and OLLAMA_HOST).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory (default results/<run-id>).")
@click.option("--results", "results_root", type=click.Path(path_type=Path, file_okay=False),
              default=Path("results"), show_default=True, help="Where run directories are created.")
@click.option("--requests", type=params.COUNT, help="Measured requests per cell (overrides).")
@click.option("--duration", "duration_s", type=params.SECONDS,
              help="Seconds per cell (overrides requests).")
@click.option("--warmup", "warmup_requests", type=params.COUNT_OR_ZERO, help="Warmup requests per cell.")
@click.option("--repeats", type=params.REPEATS, help="Repeats per cell.")
@click.option("--quick", is_flag=True, help="Smoke test: 4 requests per cell, 1 warmup, 1 repeat.")
@click.option("--sim-speed", type=params.SPEED,
              help="Speed factor of the embedded simulator (target: sim).")
@click.option("--grace", "grace_s", type=params.SECONDS_OR_ZERO, default=10.0, show_default=True,
              help="Seconds in-flight requests get after Ctrl-C / SIGTERM.")
@click.option("--baseline", type=click.Path(path_type=Path, exists=True),
              help="Baseline run directory or saved baseline file: gate this run against it "
                   "with the scenario's gates (exit 1 on a regression).")
@click.option("--no-report", is_flag=True, help="Skip report.html.")
@click.option("--transport", type=click.Choice(["auto", "httpx", "fast"]), default="auto", show_default=True,
              help="HTTP client transport: bench's lean one (http:// only; kernel receive "
                   "timestamps, far less client CPU, see `bench perf`), httpx's own, or auto "
                   "(lean for http://, httpx for https://).")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Finish an interrupted run: run only its cells not yet complete, in RUN_DIR.")
def run_command(scenario_file: Path | None, target: str | None, out_dir: Path | None,
                results_root: Path, requests: int | None, duration_s: float | None,
                warmup_requests: int | None, repeats: int | None, quick: bool,
                sim_speed: float | None, grace_s: float, baseline: Path | None, no_report: bool,
                transport: str, resume_dir: Path | None) -> None:
    """Run SCENARIO_FILE: expand its matrix into cells, load the target, record every request.

    With --resume RUN_DIR the scenario and overrides come from RUN_DIR's manifest (a SCENARIO_FILE
    given too must match it); --target and --sim-speed may point the resumed cells elsewhere.
    """
    from bench.plan import Overrides
    from bench.run.runner import RunOptions
    from bench.scenario import load_scenario

    if resume_dir is not None:
        if out_dir is not None or quick or (requests, duration_s, warmup_requests, repeats) != (None,) * 4:
            raise UsageError("--resume: --out, --quick, --requests, --duration, --warmup and --repeats "
                             "come from the run being resumed")
        resume_options = RunOptions(target=target, sim_speed=sim_speed, grace_s=grace_s,
                                    baseline=baseline, report=not no_report, transport=transport)
        _resume(resume_dir, scenario_file, resume_options)
        return
    if scenario_file is None:
        raise UsageError("run: give a SCENARIO_FILE, or --resume RUN_DIR")
    scenario = load_scenario(scenario_file)
    if quick:
        requests = requests or 4
        warmup_requests = 1 if warmup_requests is None else warmup_requests
        repeats = repeats or 1
    overrides = Overrides(requests=requests, duration_s=duration_s,
                          warmup_requests=warmup_requests, repeats=repeats)
    options = RunOptions(scenario_path=scenario_file, target=target, out_dir=out_dir,
                         results_root=results_root, overrides=overrides, sim_speed=sim_speed,
                         baseline=baseline, grace_s=grace_s, report=not no_report,
                         transport=transport)
    _exit_for(_run(scenario, options))


def _run(scenario, options: RunOptions) -> RunResult:  # noqa: ANN001 - a bench.scenario.Scenario
    from bench.run.runner import run_scenario

    return run_scenario(scenario, options, output_console())


def _resume(run_dir: Path, scenario_file: Path | None, given_options: RunOptions) -> None:
    """--resume: the run's own scenario and overrides; what the command line gave wins for the rest."""
    from bench.run.resume import load_resume_point
    from bench.scenario import Scenario, load_scenario

    given: Scenario | None = load_scenario(scenario_file) if scenario_file is not None else None
    point = load_resume_point(run_dir, given, str(scenario_file or ""))
    total = len(point.manifest["cells"])
    remaining = total - len(point.complete_cells)
    if remaining == 0:
        click.echo(f"nothing to resume: every cell of {run_dir} is complete")
        return
    click.echo(f"resuming {run_dir}: {remaining} of {total} cells to run")
    stored_baseline, stored_path = point.manifest.get("baseline"), point.manifest.get("scenario_path")
    options = dataclasses.replace(
        given_options,
        scenario_path=Path(stored_path) if stored_path else None,
        target=given_options.target or point.target, overrides=point.overrides,
        sim_speed=given_options.sim_speed or point.sim_speed,
        baseline=given_options.baseline or (Path(stored_baseline) if stored_baseline else None),
        resume=point,
    )
    _exit_for(_run(point.scenario, options))


def _exit_for(result: RunResult) -> None:
    baseline = result.manifest.get("baseline")
    regressed = bool(baseline) and result.status == "complete" and gate_run(Path(baseline), result.run_dir)
    if result.status == "failed":
        sys.exit(EXIT_FAILED)
    if result.status == "partial":
        sys.exit(EXIT_INTERRUPTED if result.interrupted else EXIT_PARTIAL)
    if regressed:
        sys.exit(EXIT_REGRESSED)


def gate_run(baseline: Path, run_dir: Path) -> bool:
    """`bench compare BASELINE RUN_DIR` in one step: print the gates, keep them in the run; regressed?"""
    from bench.analysis.compare import compare_paths, headline, render_table, to_markdown

    comparison = compare_paths(baseline, run_dir)
    console = output_console()
    console.print(render_table(comparison))
    console.print(headline(comparison), highlight=False, soft_wrap=True)
    (run_dir / GATES_MARKDOWN).write_text(to_markdown(comparison), encoding="utf-8")
    return comparison.regressed


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate_command(files: tuple[Path, ...]) -> None:
    """Check scenario FILES without running them (one line per problem; exit 2 if any)."""
    from bench.plan import plan_cells
    from bench.scenario import load_scenario

    failed = False
    for path in files:
        try:
            scenario = load_scenario(path)
            cells = plan_cells(scenario)
        except BenchError as error:
            for line in str(error).splitlines():
                click.echo(f"error: {plain_terminal(line)}", err=True)
            failed = True
            continue
        click.echo(f"{plain_terminal(path)}: ok ({len(cells)} cells)")
    if failed:
        sys.exit(2)


@click.command("schema")
def schema_command() -> None:
    """Print the scenario JSON Schema (for editors: yaml-language-server, VS Code)."""
    from bench.scenario import scenario_json_schema

    click.echo(json.dumps(scenario_json_schema(), indent=2))


def register(group: click.Group) -> None:
    group.add_command(run_command)
    group.add_command(validate_command)
    group.add_command(schema_command)
