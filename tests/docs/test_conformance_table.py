"""docs/real-ollama.md's conformance table names every probe and every known deviation."""

from __future__ import annotations

from pathlib import Path

from bench.conformance.known import load_known
from bench.conformance.probes import PROBE_NAMES

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "real-ollama.md").read_text(encoding="utf-8")


def _table() -> str:
    start = PAGE.index("### What the real Ollama answered")
    return PAGE[start:]


def test_every_probe_has_a_row() -> None:
    rows = {line.split("|")[1].strip().split(":")[0] for line in _table().splitlines() if line.startswith("| ")}
    assert set(PROBE_NAMES) <= rows, set(PROBE_NAMES) - rows


def test_every_known_deviation_is_explained_in_the_table() -> None:
    table = _table()
    for entry in load_known().deviations:
        assert f"| {entry.probe}" in table and "known deviation" in table, entry
