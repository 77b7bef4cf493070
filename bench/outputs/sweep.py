"""sweep.json and the sweep's lines in the terminal: capacity, knee, highest load within SLOs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from bench.analysis.sweep import SweepResult, sweep_results
from bench.records import write_json
from bench.records.cell_settings import CellSettings

SWEEP_JSON = "sweep.json"


def write_sweep(run_dir: Path, summary: pd.DataFrame | None, cells: Mapping[str, CellSettings],
                slos: tuple[Any, ...]) -> list[SweepResult]:
    """sweep.json for runs with arrival: sweep (the results); nothing otherwise. `cells`: cell_id ->
    settings, in cell order."""
    if summary is None or not any(settings.sweep_step is not None for settings in cells.values()):
        return []
    results = sweep_results(cells, summary, slos)
    write_json(run_dir / SWEEP_JSON, [result.to_dict() for result in results])
    return results


def print_sweep(console: Console, results: list[SweepResult]) -> None:
    for result in results:
        for line in result.lines():
            console.print(line, highlight=False, soft_wrap=True, markup=False)
