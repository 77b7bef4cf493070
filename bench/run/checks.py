"""Everything a run can be refused for, checked before its run directory exists: a mistake in
the SLOs, the gates, the prompt file or the baseline must not surface after an hour of measuring.

`bench validate` runs the same checks (without a baseline), so it finds what `bench run` would.
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import ScenarioError, UsageError
from bench.scenario import Scenario


def scenario_problems(scenario: Scenario) -> list[str]:
    """One line per problem in the scenario's SLOs and gates (none: they are usable)."""
    import pandas as pd

    from bench.analysis.compare import parse_gates
    from bench.analysis.metrics import cell_summary
    from bench.analysis.thresholds import threshold_problems

    problems: list[str] = []
    try:
        cell_summary(pd.DataFrame(), slos=scenario.slo_values() or None)
    except (UsageError, ScenarioError) as error:
        problems.append(f"{scenario.where('slos')}: {error}")
    try:
        parse_gates(scenario.gates)
    except UsageError as error:
        problems.append(f"{scenario.where('gates')}: {error}")
    problems.extend(threshold_problems(scenario))
    if scenario.load.trace is not None:
        from bench.workload.trace import read_trace

        try:
            read_trace(Path(scenario.load.trace.file))
        except ScenarioError as error:
            problems.append(f"{scenario.where('load', 'trace', 'file')}: {error}")
    return problems


def check_before_run(scenario: Scenario, baseline: Path | None) -> None:
    """ScenarioError listing every problem; RunDirError for an unreadable baseline."""
    problems = scenario_problems(scenario)
    if problems:
        raise ScenarioError("\n".join(problems))
    if baseline is not None:
        from bench.analysis.baseline import load_baseline

        load_baseline(baseline)  # RunDirError: one line naming the file
