"""bench's Python API: run a scenario from a notebook or another tool, and load runs back.

    import bench
    run = bench.api.run({"target": "sim", "workload": {"model": "llama3.2:1b"},
                     "load": {"concurrency": [1, 2], "requests": 8}}, out="results/nb")
    run.requests, run.cells, run.summary, run.status

The same code path as `bench run`: the same checks before the run, the same run directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.errors import UsageError
from bench.records import SUMMARY_CSV, Run
from bench.records import load_run as _load_run
from bench.scenario import Scenario, load_scenario, scenario_from_dict

ScenarioLike = Scenario | dict[str, Any] | str | os.PathLike[str]


def _scenario(scenario: ScenarioLike) -> tuple[Scenario, Path | None]:
    if isinstance(scenario, Scenario):
        return scenario, None
    if isinstance(scenario, dict):
        return scenario_from_dict(scenario, source="bench.api.run(dict)"), None
    if isinstance(scenario, (str, os.PathLike)):
        return load_scenario(scenario), Path(scenario)
    raise UsageError(f"bench.api.run: expected a Scenario, a dict or a path, not {type(scenario).__name__}")


def run(scenario: ScenarioLike, out: str | os.PathLike[str] | None = None, *,
        target: str | None = None, requests: int | None = None, duration_s: float | None = None,
        warmup_requests: int | None = None, repeats: int | None = None,
        report: bool = True, quiet: bool = False) -> Run:
    """Run a scenario (object, dict, or YAML path) and return the run, loaded back.

    `out` is the run directory (default results/<run-id>); the keyword arguments are the
    command line's overrides. Raises BenchError subclasses (ScenarioError, UsageError, ...) for
    bad input; a run that ends partial or failed is returned with `run.status` saying so.
    """
    from rich.console import Console

    from bench.plan import Overrides
    from bench.run.runner import RunOptions, run_scenario

    resolved, path = _scenario(scenario)
    options = RunOptions(
        scenario_path=path, target=target, out_dir=Path(out) if out is not None else None,
        overrides=Overrides(requests=requests, duration_s=duration_s,
                            warmup_requests=warmup_requests, repeats=repeats),
        report=report,
    )
    result = run_scenario(resolved, options, Console(quiet=quiet))
    return load_run(result.run_dir)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load a run directory: requests, cells, summary, telemetry and the manifest as DataFrames."""
    loaded = _load_run(Path(path))
    summary_path = loaded.path / SUMMARY_CSV
    if summary_path.exists():
        import pandas as pd

        loaded.summary = pd.read_csv(summary_path, index_col="cell_id")
    return loaded
