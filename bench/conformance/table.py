"""The terminal table: 80 columns, one summary line per probe and one line per field that is not a match."""

from __future__ import annotations

import json

from bench.conformance.checks import Check
from bench.conformance.compare import DIFFERS, KNOWN, MATCH, RECORDED, Row

WIDTHS = (13, 25, 15, 15, 8)  # probe, field, sim, ollama, verdict: 76 + 4 spaces = 80 columns
HEADER = ("probe", "field", "sim", "ollama", "verdict")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def show(check: Check | None) -> str:
    if check is None:
        return "—"
    value = check.value
    while isinstance(value, dict) and len(value) == 1:  # {"error": "..."}: the text is what differs
        value = next(iter(value.values()))
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _line(cells: tuple[str, ...]) -> str:
    return " ".join(_cut(cell, width).ljust(width) for cell, width in zip(cells, WIDTHS)).rstrip()


def render(rows: list[Row]) -> list[str]:
    """Lines of the table (each ≤ 80 columns), then the totals line."""
    lines = [_line(HEADER), "-" * 80]
    probes = list(dict.fromkeys(row.probe for row in rows))
    for probe in probes:
        own = [row for row in rows if row.probe == probe]
        matched = sum(row.verdict in (MATCH, RECORDED) for row in own)
        lines.append(_line((probe, f"{matched}/{len(own)} fields agree", "", "", "")))
        for row in own:
            if row.verdict in (KNOWN, DIFFERS):
                lines.append(_line(("", row.field, show(row.sim), show(row.real), "known" if row.verdict == KNOWN else DIFFERS)))
    counts = {verdict: sum(row.verdict == verdict for row in rows) for verdict in (MATCH, RECORDED, KNOWN, DIFFERS)}
    lines.append("-" * 80)
    lines.append(f"{counts[MATCH]} match, {counts[RECORDED]} recorded only, {counts[KNOWN]} known deviations, "
                 f"{counts[DIFFERS]} unexplained differences")
    return lines
