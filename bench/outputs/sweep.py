"""sweep.json and the sweep's lines in the terminal: capacity, knee, highest load within SLOs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from bench.analysis.sweep import SweepResult, sweep_results
from bench.records import write_json

SWEEP_JSON = "sweep.json"


def write_sweep(run_dir: Path, summary: pd.DataFrame | None, cell_settings: list[dict[str, Any]],
                slos: tuple[Any, ...]) -> list[SweepResult]:
    """sweep.json for runs with arrival: sweep (the results); nothing otherwise."""
    if summary is None or not any("sweep_step" in settings for settings in cell_settings):
        return []
    results = sweep_results(pd.DataFrame(cell_settings), summary, slos)
    write_json(run_dir / SWEEP_JSON, [result.to_dict() for result in results])
    return results


def print_sweep(console: Console, results: list[SweepResult]) -> None:
    for result in results:
        for line in result.lines():
            console.print(line, highlight=False, soft_wrap=True, markup=False)
