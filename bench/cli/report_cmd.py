"""`bench report RUN_DIR [RUN_DIR...] [-o report.html]`: the HTML report of stored runs."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.console import output_console, working


def register(group: click.Group) -> None:
    group.add_command(report)


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the page (default: report.html in the first run directory; "
                   "with several runs, report-compare.html there).")
def report(run_dirs: tuple[Path, ...], out: Path | None) -> None:
    """Write one self-contained HTML report of RUN_DIR (several: a comparison, the first is the baseline)."""
    with working(output_console(), f"drawing the report of {', '.join(str(d) for d in run_dirs)}"):
        from bench.records import REPORT_HTML
        from bench.records.atomic import check_output_file
        from bench.report import write_report

        if out is None:
            out = run_dirs[0] / (REPORT_HTML if len(run_dirs) == 1 else "report-compare.html")
        from bench.report.page import not_a_report_page

        check_output_file(out, "-o", inputs=run_dirs, own_output=not_a_report_page)
        path = write_report(list(run_dirs), out)
    click.echo(f"report: {path}")
