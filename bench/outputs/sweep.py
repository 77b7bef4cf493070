"""sweep.json and the sweep's lines in the terminal: capacity, knee, highest load within SLOs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from bench.analysis.sweep import SweepResult
from bench.records import write_json

SWEEP_JSON = "sweep.json"


def write_sweep(run_dir: Path, results: tuple[SweepResult, ...]) -> None:
    """sweep.json for runs with arrival: sweep (bench.analysis.sweep.run_sweeps); nothing otherwise."""
    if results:
        write_json(run_dir / SWEEP_JSON, [result.to_dict() for result in results])


def print_sweep(console: Console, results: tuple[SweepResult, ...]) -> None:
    for result in results:
        for line in result.lines():
            console.print(line, highlight=False, soft_wrap=True, markup=False)
