"""k6-style thresholds: absolute limits on summary metrics that pass or fail a run.

Separate from baseline gates (bench.analysis.compare): a gate compares two runs, a threshold
compares one run with a number the user wrote (`ttft_p95: "<500ms"`). A threshold holds when it
holds in every cell; a cell where the metric was not measured breaks it (nothing was shown).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from bench.analysis.metrics import higher_is_better, parse_metric_name
from bench.errors import UsageError
from bench.numbers import seconds
from bench.scenario import Scenario, Threshold


@dataclass(frozen=True)
class ThresholdVerdict:
    metric: str
    limit: str  # as written: "<500ms"
    passed: bool
    worst_value: float | None  # the value furthest on the wrong side (or closest to the limit)
    worst_cell: str | None  # label of that cell
    broken_cells: int
    cells: int

    def line(self) -> str:
        """One line: `threshold ttft_p95 <500ms: ok (worst 0.31 s in c=4, 4 cells)`."""
        verdict = "ok" if self.passed else "BROKEN"
        worst = "no data" if self.worst_value is None else _value_text(self.metric, self.worst_value)
        where = f" in {self.worst_cell}" if self.worst_cell else ""
        broken = "" if self.passed else f", {self.broken_cells} of {self.cells} cells"
        return f"threshold {self.metric} {self.limit}: {verdict} (worst {worst}{where}{broken})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def threshold_problems(scenario: Scenario) -> list[str]:
    """One line per threshold on an unknown metric (checked before the run starts)."""
    problems = []
    for threshold in scenario.threshold_limits():
        try:
            parse_metric_name(threshold.metric)
        except UsageError as error:
            problems.append(f"{scenario.where('thresholds', threshold.metric)}: {error}")
    return problems


def evaluate(summary: pd.DataFrame, thresholds: list[Threshold],
             labels: dict[str, str]) -> list[ThresholdVerdict]:
    """One verdict per threshold over the summary's cells (index cell_id)."""
    verdicts = []
    for threshold in thresholds:
        column = parse_metric_name(threshold.metric)
        values = summary[column] if column in summary.columns else pd.Series(dtype=float)
        broken, worst_value, worst_cell = 0, None, None
        lower_better = not higher_is_better(threshold.metric)
        for cell_id in summary.index:
            value = values.get(cell_id) if len(values) else None
            number = None if value is None or _nan(value) else float(value)
            if number is None or not threshold.holds(number):
                broken += 1
            if number is not None and (worst_value is None or
                                       (number > worst_value if lower_better else number < worst_value)):
                worst_value, worst_cell = number, labels.get(str(cell_id), str(cell_id))
        cells = len(summary.index)
        verdicts.append(ThresholdVerdict(threshold.metric, threshold.text, broken == 0 and cells > 0,
                                         worst_value, worst_cell, broken, cells))
    return verdicts


def _nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _value_text(metric: str, value: float) -> str:
    column = parse_metric_name(metric)
    if column.endswith("_s") or column.endswith("_s_mean"):
        return seconds(value)
    if column.endswith("_rate"):
        return f"{value:.2%}"
    return f"{value:.4g}"
