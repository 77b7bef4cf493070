"""Gate rendering: the terminal table, Markdown and JUnit XML of a bench.analysis.compare Comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench import numbers as fmt
from bench.analysis.compare import Comparison, GateResult, is_rate
from bench.escape import for_markdown, for_terminal, plain_terminal
from bench.records.atomic import begins_with

if TYPE_CHECKING:
    from rich.table import Table

VERDICT_MARKS: dict[str, str] = {"pass": "✓", "warn": "⚠", "fail": "✗", "skip": "–"}
# One colour per verdict, the same in every output: the terminal's rich style and the report's
# row class (report.css draws tr.fail red, tr.warn amber, tr.pass neutral, tr.skip muted).
VERDICT_STYLES: dict[str, str] = {"pass": "", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def format_threshold(metric: str, threshold: float) -> str:
    return fmt.significant(threshold, 6, " pt" if is_rate(metric) else "%", scale=100, sign=True)


def format_value(metric: str, value: float) -> str:
    if is_rate(metric):
        return fmt.figure(value, 1, "%", scale=100)
    if metric == "rps":
        return fmt.figure(value, 2, " req/s")
    if metric in ("output_tps", "user_tps_p50"):
        return fmt.figure(value, 1, " tok/s")
    return fmt.figure(value, 2, " ms", scale=1000)


def _change_unit(gate: GateResult) -> str:
    """A relative change in %, a rate's (error rate) in percentage points."""
    return "%" if gate.relative else " pt"


def format_change(gate: GateResult) -> str:
    return fmt.figure(gate.change, 1, _change_unit(gate), scale=100, sign=True)


def format_interval(gate: GateResult) -> str:
    if not np.isfinite(gate.ci_low):
        return fmt.DASH
    runs = f" (runs {gate.interval_basis.rpartition(' + ')[2].removesuffix(' repeats')})" \
        if gate.interval_basis != "requests" else ""  # widened by run-to-run variation
    low, high = (fmt.figure(bound, 1, scale=100, sign=True) for bound in (gate.ci_low, gate.ci_high))
    return f"[{low}, {high}]{_change_unit(gate)}{runs}"


def format_n(gate: GateResult) -> str:
    """Sample sizes behind the gate: `40 / 38` (baseline / current)."""
    return f"{gate.baseline_n} / {gate.current_n}"


def _bad_sign(gate: GateResult) -> float:
    """+1 when a rise of this metric is a regression (latency, rates), -1 when a drop is (throughput)."""
    return 1.0 if gate.threshold >= 0 else -1.0


def verdict_words(gate: GateResult) -> str:
    """The verdict in words, matching the interval: 'within noise' only when it reaches 0.

    fail: the whole interval is beyond the allowed change. warn: the estimate is beyond it but
    the interval reaches back inside; when the interval also excludes 0 the change is real, only
    its size is uncertain. pass: inside the allowed change (said 'worse' or 'better' when the
    interval excludes 0, so a real but allowed slowdown is not called 'ok' without a word).
    """
    if gate.verdict == "skip":
        return gate.note or "no data"
    if gate.verdict == "fail":
        return "REGRESSED"
    low, high = gate.ci_low * _bad_sign(gate), gate.ci_high * _bad_sign(gate)
    worse_for_sure, better_for_sure = min(low, high) > 0, max(low, high) < 0
    if gate.verdict == "warn":
        return "worse, may exceed allowed" if worse_for_sure else "worse, within noise"
    if worse_for_sure:
        return "ok: worse, within allowed"
    return "ok: better" if better_for_sure else "ok"


def verdict_label(gate: GateResult) -> str:
    """Glyph and words, as every output prints them: `✗ REGRESSED`, `⚠ worse, within noise`."""
    return f"{VERDICT_MARKS[gate.verdict]} {verdict_words(gate)}"


def headline(comparison: Comparison) -> str:
    """The one-line outcome; it names unlike runs (other speed, engine, versions) when they are."""
    text = _outcome(comparison)
    if comparison.environment_notes:
        differing = [note.split(" differs")[0].removeprefix("unlike runs: ") for note in comparison.environment_notes]
        text += f" — unlike runs: {', '.join(differing)}"
    return text


def _outcome(comparison: Comparison) -> str:
    counted = {v: sum(g.verdict == v for g in comparison.gates) for v in VERDICT_MARKS}
    if comparison.regressed:
        names = ", ".join(sorted({f"{g.metric} ({g.cell_label})" for g in comparison.regressions}))
        return f"REGRESSION: {counted['fail']} of {len(comparison.gates)} gates failed: {names}"
    extra = f", {counted['warn']} worse but within noise" if counted["warn"] else ""
    skipped = f", {counted['skip']} not judged (not enough samples or no data)" if counted["skip"] else ""
    if counted["pass"] + counted["warn"] == 0 and counted["skip"]:
        return f"no verdict: all {counted['skip']} gates lacked the samples to judge (see the table)"
    return f"no regression: {counted['pass'] + counted['warn']} gates passed{extra}{skipped}"


def footer(comparison: Comparison) -> str:
    """What the columns mean and how the verdict is reached (printed under every gate table)."""
    return (f"change: current against baseline (relative; rates in percentage points). "
            f"{comparison.confidence:.0%} CI: scipy.stats.bootstrap interval of that change, both runs' "
            "requests resampled" + ("; (runs N/M): widened to cover the Welch interval of the change of the "
                                    "repeats' mean throughput (--repeats on both sides)"
                                    if any(g.interval_basis != "requests" for g in comparison.gates) else "")
            + ". n: successful requests (rates: all requests) baseline / current. "
            "A gate fails (✗) only when the whole interval lies beyond 'allowed'; ⚠ the change is beyond "
            "'allowed' but the interval reaches back inside it; – not judged: a percentile needs at least "
            "two samples beyond it (p50 10, p90 20, p95 40, p99 200 per side), anything else 10. "
            "No p value: a test of 'no difference' answers another question than this verdict.")


# Below this many columns the gate table folds baseline/current and change/interval into two-line
# cells and drops n (the caption says the rule), so no figure is cut on an 80-column terminal.
NARROW_COLUMNS = 120


def render_table(comparison: Comparison, width: int | None = None) -> Table:
    """The readable diff: one row per cell x metric gate, ✓/⚠/✗ per gate, the rule as its caption."""
    from rich import box
    from rich.table import Table

    figures: tuple[str, ...]
    narrow = width is not None and width < NARROW_COLUMNS
    title = f"bench compare: {comparison.baseline_source} → {comparison.current_source}"
    table = Table(title=for_terminal(title), title_justify="left", caption=for_terminal(footer(comparison)),
                  caption_justify="left", box=box.SIMPLE_HEAD if narrow else box.HEAVY_HEAD, pad_edge=not narrow)
    ci = f"{comparison.confidence:.0%} CI"
    columns = (("cell", "metric", "baseline\n→ current", f"change\n{ci}", "allowed", "verdict") if narrow else
               ("cell", "metric", "n", "baseline", "current", "change", ci, "allowed", "verdict"))
    for column in columns:
        figure = column not in ("cell", "metric", "verdict")
        table.add_column(column, justify="right" if figure else "left", no_wrap=figure or column == "metric",
                         overflow="fold")
    for gate in comparison.gates:
        values = (format_value(gate.metric, gate.baseline_value), format_value(gate.metric, gate.current_value))
        if narrow:
            figures = (f"{values[0]}\n→ {values[1]}", f"{format_change(gate)}\n{format_interval(gate)}")
        else:
            figures = (format_n(gate), *values, format_change(gate), format_interval(gate))
        table.add_row(for_terminal(gate.cell_label), gate.metric, *figures,
                      format_threshold(gate.metric, gate.threshold), verdict_label(gate),
                      style=VERDICT_STYLES[gate.verdict] or None)
    return table


def to_markdown(comparison: Comparison) -> str:
    """A GitHub-flavoured Markdown report (fits $GITHUB_STEP_SUMMARY)."""
    status = "❌" if comparison.regressed else "✅"
    lines = [
        f"## {status} bench compare: {for_markdown(headline(comparison))}",
        "",
        f"Baseline {for_markdown(comparison.baseline_source)} → current "
        f"{for_markdown(comparison.current_source)}.",
        "",
    ]
    lines += [f"> ⚠ {for_markdown(note)}" for note in comparison.environment_notes]
    if comparison.environment_notes:
        lines.append("")
    lines += [
        f"| | cell | metric | n | baseline | current | change | {comparison.confidence:.0%} CI "
        "| allowed | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for gate in comparison.gates:
        metric = f"**{gate.metric}**" if gate.verdict == "fail" else gate.metric
        lines.append(
            f"| {VERDICT_MARKS[gate.verdict]} | {for_markdown(gate.cell_label)} | {metric} | {format_n(gate)} "
            f"| {format_value(gate.metric, gate.baseline_value)} "
            f"| {format_value(gate.metric, gate.current_value)} | {format_change(gate)} "
            f"| {format_interval(gate)} | {format_threshold(gate.metric, gate.threshold)} "
            f"| {for_markdown(verdict_words(gate))} |"
        )
    lines += ["", footer(comparison), ""]
    return "\n".join(lines)


# How the files below begin: `bench compare` replaces such a file (its own earlier table) and
# refuses any other existing one (bench.records.atomic.check_output_file).
not_a_junit_table = begins_with(rb"<\?xml[^>]*\?>\s*<testsuites name=\"bench\"", "a bench compare JUnit file")
not_a_markdown_table = begins_with("## (✅|❌) bench compare".encode(), "a bench compare Markdown table")


def to_junit_xml(comparison: Comparison) -> str:
    """JUnit XML: one testcase per cell x metric gate, a <failure> per regression."""
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", {
        "name": "bench compare",
        "tests": str(len(comparison.gates)),
        "failures": str(len(comparison.regressions)),
        "errors": "0",
        "skipped": str(sum(g.verdict == "skip" for g in comparison.gates)),
    })
    ET.SubElement(ET.SubElement(suite, "properties"), "property",
                  {"name": "baseline", "value": plain_terminal(comparison.baseline_source)})
    for gate in comparison.gates:
        # ElementTree escapes <&>" but writes control characters as they are: invalid XML 1.0.
        case = ET.SubElement(suite, "testcase", {"classname": f"bench.{plain_terminal(gate.cell_label)}",
                                                 "name": gate.metric})
        detail = (f"{verdict_label(gate)}: {gate.metric} {format_value(gate.metric, gate.baseline_value)} -> "
                  f"{format_value(gate.metric, gate.current_value)} ({format_change(gate)}, "
                  f"{comparison.confidence:.0%} CI {format_interval(gate)}, allowed "
                  f"{format_threshold(gate.metric, gate.threshold)}, n {format_n(gate)})")
        if gate.verdict == "fail":
            ET.SubElement(case, "failure", {"message": detail,
                                            "type": "regression"}).text = detail
        elif gate.verdict == "skip":
            ET.SubElement(case, "skipped", {"message": plain_terminal(f"{gate.note or 'no data'} ({detail})")})
        else:
            ET.SubElement(case, "system-out").text = detail
    testsuites = ET.Element("testsuites", {"name": "bench", "tests": suite.get("tests", "0"),
                                           "failures": suite.get("failures", "0")})
    testsuites.append(suite)
    ET.indent(testsuites)
    return ET.tostring(testsuites, encoding="unicode", xml_declaration=True) + "\n"
