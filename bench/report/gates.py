"""A comparison's opening: `bench compare`'s gates as report blocks, in the terminal's words and colours."""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError
from bench.report.data import RunView
from bench.report.page import Note, Table


def gate_blocks(baseline: RunView, current: RunView) -> list[Any]:
    """`bench compare BASELINE CURRENT` as report blocks: the headline, then one row per gate."""
    from bench.analysis.compare import compare, thresholds_for
    from bench.outputs.gate_tables import footer, headline

    try:
        before, after = baseline.analysis.baseline, current.analysis.baseline
        comparison = compare(before, after, thresholds_for((), after, before))
    except BenchError as error:
        return [Note(f"{current.label} against {baseline.label}: no gate verdicts ({error}).", "warning")]
    return [
        Note(f"{current.label} against the baseline {baseline.label}: {headline(comparison)}.",
             "error" if comparison.regressed else "answer"),
        *(Note(f"{current.label} against {baseline.label}: {note}", "warning")
          for note in comparison.environment_notes),
        gate_table(comparison, baseline.label, current.label),
        Note(footer(comparison), "info"),
    ]


def gate_table(comparison: Any, baseline_label: str, current_label: str) -> Table:
    """The gates as `bench compare` prints them: glyph and words per verdict, the row coloured by it."""
    from bench.outputs.gate_tables import (format_change, format_interval, format_n, format_threshold,
                                           format_value, verdict_label)

    rows = tuple((gate.cell_label, gate.metric, format_n(gate), format_value(gate.metric, gate.baseline_value),
                  format_value(gate.metric, gate.current_value), format_change(gate), format_interval(gate),
                  format_threshold(gate.metric, gate.threshold), verdict_label(gate))
                 for gate in comparison.gates)
    return Table(("cell", "metric", "n (base / current)", baseline_label, current_label, "change", "95% CI",
                  "allowed", "verdict"), rows,
                 caption=f"Gates: {current_label} against {baseline_label}, as `bench compare` judges them",
                 numeric=(False, False, True, True, True, True, True, True, False),
                 row_classes=tuple(gate.verdict for gate in comparison.gates))
