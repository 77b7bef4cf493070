"""Every verdict kind says the same thing in every output: terminal, HTML report, Markdown, JUnit.

A regression is red (never the green of the sizing table's chosen row), a pass is neutral, the
glyphs ✗/⚠/✓/– are in each table, and the words match the interval ('within noise' only when
the interval reaches 0).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from bench.analysis.compare import Comparison, GateResult
from bench.outputs.gate_tables import render_table, to_junit_xml, to_markdown, verdict_label
from bench.report.gates import gate_table
from bench.report.page import Section, render_page


def _gate(verdict: str, change: float, low: float, high: float, note: str = "") -> GateResult:
    return GateResult(cell_label=f"cell-{verdict}-{change:+.2f}", settings={}, metric="ttft_p95", threshold=0.10,
                      baseline_value=0.1, current_value=0.1 * (1 + change), change=change, ci_low=low,
                      ci_high=high, baseline_n=60, current_n=60, verdict=verdict, note=note)  # type: ignore[arg-type]


# (gate, glyph and words every output must show)
KINDS = [
    (_gate("fail", 0.30, 0.22, 0.38), "✗ REGRESSED"),
    (_gate("warn", 0.14, -0.02, 0.31), "⚠ worse, within noise"),
    (_gate("warn", 0.14, 0.04, 0.25), "⚠ worse, may exceed allowed"),
    (_gate("pass", 0.05, 0.02, 0.08), "✓ ok: worse, within allowed"),
    (_gate("pass", 0.00, -0.04, 0.04), "✓ ok"),
    (_gate("pass", -0.20, -0.25, -0.15), "✓ ok: better"),
    (_gate("skip", math.nan, math.nan, math.nan, "not enough samples (n=6, needs ≥40)"),
     "– not enough samples (n=6, needs ≥40)"),
]


@pytest.fixture
def comparison() -> Comparison:
    return Comparison("base", "current", {"ttft_p95": 0.10}, [gate for gate, _ in KINDS])


def test_each_verdict_has_one_label_matching_its_interval() -> None:
    for gate, label in KINDS:
        assert verdict_label(gate) == label


def test_terminal_rows_carry_the_glyph_and_colour_of_their_verdict(comparison: Comparison) -> None:
    table = render_table(comparison)
    verdicts = list(table.columns[-1]._cells)
    styles = [str(row.style or "") for row in table.rows]
    for (gate, label), shown, style in zip(KINDS, verdicts, styles):
        assert shown == label
        assert ("red" in style) == (gate.verdict == "fail")
        assert "green" not in style  # a pass is neutral; green belongs to nothing here


def test_report_gate_rows_are_red_for_regressions_and_never_the_chosen_green(comparison: Comparison) -> None:
    page = render_page("t", "s", [Section("answer", "The answer", "", (gate_table(comparison, "A", "B"),))],
                       "0", "x")
    rows = re.findall(r"<tr(?: class=\"(\w+)\")?>(.*?)</tr>", page, flags=re.S)[1:]  # [0] is the header
    assert len(rows) == len(KINDS)
    assert 'class="highlight"' not in page
    for (gate, label), (row_class, cells) in zip(KINDS, rows):
        assert row_class == gate.verdict
        assert label in cells.replace("&lt;", "<").replace("&gt;", ">")
    css = re.search(r"tr\.fail td \{([^}]*)\}", page)
    assert css is not None and "--bad" in css.group(1)


def test_markdown_and_junit_say_what_the_terminal_says(comparison: Comparison) -> None:
    markdown = to_markdown(comparison)
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "cell-" in line]
    for (gate, label), row in zip(KINDS, rows, strict=True):
        glyph, words = label.split(" ", 1)
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[0] == glyph and cells[-1].replace("\\", "") == words
    suite = ET.fromstring(to_junit_xml(comparison)).find("testsuite")
    assert suite is not None
    for (gate, label), case in zip(KINDS, suite.findall("testcase"), strict=True):
        failure, skipped, out = case.find("failure"), case.find("skipped"), case.find("system-out")
        assert (failure is not None) == (gate.verdict == "fail")
        assert (skipped is not None) == (gate.verdict == "skip")
        text = (failure.get("message") if failure is not None else skipped.get("message") if skipped is not None
                else out.text if out is not None else "")
        assert text is not None and label.split(" ", 1)[1] in text


def test_the_terminal_table_at_80_columns_cuts_no_figure_and_keeps_every_verdict(comparison: Comparison) -> None:
    import io

    from rich.console import Console

    console = Console(width=80, record=True, file=io.StringIO())
    console.print(render_table(comparison, width=80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "[+22.0, +38.0]%" in text and "100.00 ms" in text and "→ 130.00 ms" in text
    words = " ".join(text.split())
    for _, label in KINDS:
        assert label.split(" ", 1)[0] in text and label.split()[1].rstrip(",:") in words
