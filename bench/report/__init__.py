"""bench report: one self-contained HTML page from stored run directories.

Reads only what a run stored (bench.records.load_run), so any old run can be re-reported; several
run directories give a comparison, the first one being the baseline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import __version__
from bench.analysis.run_analysis import RunAnalysis, analyse_run
from bench.records.atomic import write_text_atomically
from bench.errors import RunDirError, UsageError
from bench.numbers import MAX_REPORT_CELLS
from bench.records import MANIFEST_FILE, Run, load_run, read_manifest
from bench.report import (
    answer,
    conversations,
    environment,
    failures,
    keepalive,
    latency,
    memory,
    statistics,
    surfaces,
    sweep,
    throughput,
    timeline,
)
from bench.report.data import RunView, build_views
from bench.report.page import Section, render_page

__all__ = ["build_sections", "render_report", "save_report", "write_report"]

# The page's sections, in order; each returns None when the runs have no data for it.
_SECTION_BUILDERS: tuple[Callable[[list[RunView]], Section | None], ...] = (
    answer.build, sweep.build, throughput.build, latency.build, statistics.build, conversations.build, failures.build,
    timeline.build, keepalive.build,
    memory.build,
    surfaces.build, environment.build,
)


def build_sections(views: list[RunView]) -> list[Section]:
    return [section for build in _SECTION_BUILDERS if (section := build(views)) is not None]


def _check_report_size(cell_counts: Sequence[int]) -> None:
    """Refuse, before drawing, a page past MAX_REPORT_CELLS (all runs' cells): minutes to draw and
    a page no one reads; the summary files and `bench compare` still read such a run."""
    cells = sum(cell_counts)
    if cells > MAX_REPORT_CELLS:
        raise UsageError(f"report: {cells:,} cells, over the report's limit of {MAX_REPORT_CELLS:,}; "
                         "report fewer runs at once, or read summary.csv")


def render_report(runs: Sequence[Run | RunAnalysis]) -> str:
    """The HTML page for these runs, loaded or already analysed (the first is the baseline of a
    comparison); a loaded run is analysed here, once."""
    if not runs:
        raise RunDirError("no run directory given")
    _check_report_size([len(run.manifest.cells) for run in runs])
    views = build_views([run if isinstance(run, RunAnalysis) else analyse_run(run) for run in runs])
    sections = build_sections(views)
    if len(views) == 1:
        manifest = views[0].manifest
        scenario = manifest.scenario
        title = f"bench report: {scenario.get('name') or views[0].label}"
        subtitle_parts = [f"run {views[0].label}", str(manifest.status or "unknown status"),
                          str(manifest.started_at or ""), str(scenario.get("description") or "")]
    else:
        title = f"bench comparison: {views[0].label} (baseline) against " + ", ".join(v.label for v in views[1:])
        subtitle_parts = [f"{v.label}: {v.manifest.status or 'unknown'}, {v.manifest.started_at or ''}"
                          for v in views]
    subtitle = " · ".join(part for part in subtitle_parts if part)
    sources = ", ".join(str(v.run.path) for v in views)
    return render_page(title, subtitle, sections, __version__, sources)


def write_report(run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Load the run directories, write the report to `out` (atomically), return its path."""
    # Counted from the manifests before any records are loaded: a refused page costs nothing.
    _check_report_size([len(read_manifest(Path(run_dir) / MANIFEST_FILE).cells) for run_dir in run_dirs
                        if (Path(run_dir) / MANIFEST_FILE).is_file()])
    return save_report(render_report([load_run(Path(run_dir)) for run_dir in run_dirs]), out)


def save_report(html: str, out: str | os.PathLike[str]) -> Path:
    """Write a rendered page to `out` atomically (its folder made if need be); return its path."""
    out_path = Path(out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{out_path}: cannot write ({error.strerror or error})") from None
    return write_text_atomically(out_path, html)
