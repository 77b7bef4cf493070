"""Server and scenario text is escaped for where it is shown: rich markup and control characters
on the terminal, Markdown and XML in CI files (issue 16). The HTML report escapes through Jinja2."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pandas as pd
from rich.console import Console

from bench.analysis.compare import Comparison, GateResult
from bench.outputs.gate_tables import render_table, to_junit_xml, to_markdown
from bench.escape import for_markdown, for_terminal, plain_terminal
from bench.plan import describe_cell
from bench.outputs.summary import summary_table
from bench.run.progress import RunProgress

EVIL_MODEL = "evil[/]\x1b[2J\x1b]0;pwned\x07|<b>*x*</b>"


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=200), buffer


def test_a_model_name_with_markup_and_escapes_is_shown_as_text_in_progress_and_summary() -> None:
    settings = {"surface": "native", "endpoint": "chat", "model": EVIL_MODEL}
    label = describe_cell(settings, ["model"])
    assert "\x1b" not in label and "\\x1b" in label
    for terminal in (False, True):
        console, buffer = _console(terminal)
        progress = RunProgress(console, 1)
        progress.start_cell(0, label, 2)
        progress.end_cell("complete")
        progress.note(f"server said {EVIL_MODEL}")
        console.print(summary_table(pd.DataFrame({"ok": [1], "requests": [1]}, index=["c0"]), {"c0": label}))
        shown = buffer.getvalue()
        assert "[/]" in shown and "pwned" in shown
        assert "\x1b[2J" not in shown and "\x1b]0;" not in shown


def _comparison(label: str) -> Comparison:
    gate = GateResult(cell_label=label, settings={}, metric="ttft_p95", threshold=0.1,
                      baseline_value=0.1, current_value=0.2, change=1.0, ci_low=0.8, ci_high=1.2,
                      baseline_n=60, current_n=60, verdict="fail")
    return Comparison("base|line", "cur`rent", {"ttft_p95": 0.1}, [gate], environment_notes=[label])


def test_gate_tables_escape_the_cell_label_for_markdown_junit_and_the_terminal() -> None:
    label = plain_terminal(f"model={EVIL_MODEL}")
    comparison = _comparison(label)
    markdown = to_markdown(comparison)
    header = next(line for line in markdown.splitlines() if line.startswith("| | cell"))
    row = next(line for line in markdown.splitlines() if "ttft_p95" in line and line.startswith("| ✗"))
    assert row.count("|") - row.count("\\|") == header.count("|")  # the label's | adds no column
    assert "<b>" not in markdown
    root = ET.fromstring(to_junit_xml(comparison).split("?>", 1)[1])  # parses: no raw control chars
    assert root.find(".//testcase") is not None
    console, buffer = _console(True)
    console.print(render_table(comparison))
    assert "[/]" in buffer.getvalue()


def test_escape_helpers() -> None:
    assert plain_terminal("a\x1bb\nc") == "a\\x1bb\\x0ac"
    assert for_terminal("[bold]x[/]") == "\\[bold]x\\[/]"
    assert for_markdown("a|b*c") == "a\\|b\\*c"
