"""`bench compare` and `bench baseline save`: parse, call bench.analysis.compare / bench.analysis.baseline,
print through bench.outputs.gate_tables."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli.console import output_console, working
from bench.errors import UsageError
from bench.escape import plain_terminal

EXIT_REGRESSED = 1


def _write(path: Path, text: str, option: str) -> None:
    from bench.records.atomic import write_text_atomically

    try:
        write_text_atomically(path, text)
    except UsageError as error:
        raise UsageError(f"{option} {error}") from None


@click.command("compare")
@click.argument("baseline_path", metavar="BASELINE", type=click.Path(path_type=Path))
@click.argument("current_path", metavar="CURRENT", type=click.Path(path_type=Path))
@click.option("--max-regression", "max_regression", multiple=True, metavar="METRIC=PCT",
              help="Allowed change, e.g. ttft_p95=10% or output_tps=-5% (repeatable; replaces "
                   "the scenario's gates and the defaults).")
@click.option("--junit", "junit_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write JUnit XML (one test case per cell x metric gate).")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a Markdown report (e.g. $GITHUB_STEP_SUMMARY).")
def compare_command(baseline_path: Path, current_path: Path, max_regression: tuple[str, ...],
                    junit_path: Path | None, markdown_path: Path | None) -> None:
    """Gate CURRENT against BASELINE (run directories or baseline files): exit 1 if a gate regressed.

    A gate fails only when the 95% bootstrap interval of the change lies wholly beyond the
    allowed change. Exit 0: no regression; 1: regression; 2: usage error (unknown metric,
    unmatched cell, unreadable input).
    """
    from bench.outputs.gate_tables import not_a_junit_table, not_a_markdown_table
    from bench.records.atomic import check_output_file

    for path, option, own in ((junit_path, "--junit", not_a_junit_table),
                              (markdown_path, "--markdown", not_a_markdown_table)):
        if path is not None:  # before any work: a refused path fails at once, nothing is replaced
            check_output_file(path, option, inputs=(baseline_path, current_path), own_output=own)
    if junit_path is not None and markdown_path is not None and junit_path == markdown_path:
        raise UsageError(f"--junit and --markdown: both name {junit_path}; give two files")
    console = output_console()
    with working(console, f"comparing {current_path} with {baseline_path}"):
        from bench.analysis.compare import compare_paths
        from bench.outputs.gate_tables import headline, render_table, to_junit_xml, to_markdown

        comparison = compare_paths(baseline_path, current_path, max_regression)
    console.print(render_table(comparison, width=console.width))
    for note in comparison.environment_notes:
        console.print(f"warning: {plain_terminal(note)}", highlight=False, soft_wrap=True, markup=False,
                      style="yellow")
    if junit_path is not None:
        _write(junit_path, to_junit_xml(comparison), "--junit")
    if markdown_path is not None:
        _write(markdown_path, to_markdown(comparison), "--markdown")
    console.print(headline(comparison), style="bold red" if comparison.regressed else "green",
                  highlight=False, soft_wrap=True, markup=False)
    if comparison.regressed:
        sys.exit(EXIT_REGRESSED)


@click.group("baseline")
def baseline_group() -> None:
    """Baselines for `bench compare` (compact JSON, small enough to commit)."""


@baseline_group.command("save")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
def save_command(run_dir: Path, path: Path) -> None:
    """Write RUN_DIR's per-request samples, settings and environment to PATH (JSON)."""
    with working(output_console(), f"reading {run_dir}"):
        from bench.analysis.baseline import load_baseline, not_a_baseline, save_baseline
        from bench.records.atomic import check_output_file

        check_output_file(path, "baseline save", inputs=(run_dir,), own_output=not_a_baseline)

        written = save_baseline(run_dir, path)
        baseline = load_baseline(written)
    size_kb = written.stat().st_size / 1024
    click.echo(f"baseline: {written} ({len(baseline.cells)} cells, {size_kb:.1f} kB)")


def register(group: click.Group) -> None:
    group.add_command(compare_command)
    group.add_command(baseline_group)
