"""Observations of both sides → one row per field with a verdict, and conformance.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.conformance.checks import RECORD, Check, agree
from bench.conformance.known import KnownList

MATCH, KNOWN, DIFFERS, RECORDED = "match", "known", "DIFFERS", "recorded"

Observed = dict[str, dict[str, Check]]


@dataclass(frozen=True)
class Row:
    probe: str
    field: str
    sim: Check | None
    real: Check | None
    verdict: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sim": self.sim.to_json() if self.sim else None,
            "real": self.real.to_json() if self.real else None,
            "verdict": self.verdict,
        }
        if self.reason:
            out["reason"] = self.reason
        return out


def _fields(sim: dict[str, Check], real: dict[str, Check]) -> list[str]:
    ordered = list(real)
    return ordered + [name for name in sim if name not in real]


def compare(sim: Observed, real: Observed, known: KnownList) -> list[Row]:
    """One row per field either side observed, in probe order (the real side's order first)."""
    rows = []
    for probe in list(real) + [name for name in sim if name not in real]:
        sim_fields, real_fields = sim.get(probe, {}), real.get(probe, {})
        for name in _fields(sim_fields, real_fields):
            sim_check, real_check = sim_fields.get(name), real_fields.get(name)
            rule = (real_check or sim_check).rule if (real_check or sim_check) else RECORD
            if rule == RECORD and sim_check is not None and real_check is not None:
                rows.append(Row(probe, name, sim_check, real_check, RECORDED))
            elif agree(sim_check, real_check):
                rows.append(Row(probe, name, sim_check, real_check, MATCH))
            else:
                reason = known.reason_for(probe, name)
                rows.append(Row(probe, name, sim_check, real_check, KNOWN if reason else DIFFERS, reason or ""))
    return rows


def stale_known(rows: list[Row], known: KnownList) -> list[dict[str, str]]:
    """Known deviations that no longer differ (or match no field): candidates to delete."""
    differing = [(row.probe, row.field) for row in rows if row.verdict == KNOWN]
    stale = []
    for entry in known.deviations:
        if not any(known.reason_for(probe, field) == entry.reason and probe == entry.probe for probe, field in differing):
            stale.append({"probe": entry.probe, "field": entry.field})
    return stale


def observed_to_json(observed: Observed) -> dict[str, Any]:
    return {probe: {name: check.to_json() for name, check in fields.items()} for probe, fields in observed.items()}


def real_side_of(document: dict[str, Any], source: str) -> Observed:
    """The real server's observations stored in an earlier conformance.json."""
    from bench.errors import UsageError

    probes = document.get("probes") if isinstance(document, dict) else None
    if not isinstance(probes, dict):
        raise UsageError(f"{source}: not a conformance.json (no 'probes' object)")
    observed: Observed = {}
    for probe, fields in probes.items():
        if not isinstance(fields, dict):
            raise UsageError(f"{source}: probes.{probe}: expected an object")
        observed[probe] = {name: Check.from_json(row["real"]) for name, row in fields.items()
                           if isinstance(row, dict) and isinstance(row.get("real"), dict)}
    return observed


def document(rows: list[Row], known: KnownList, sides: dict[str, Any]) -> dict[str, Any]:
    """conformance.json: both sides' descriptions, every row, counts, stale known entries."""
    probes: dict[str, dict[str, Any]] = {}
    for row in rows:
        probes.setdefault(row.probe, {})[row.field] = row.to_json()
    counts = {verdict: sum(row.verdict == verdict for row in rows) for verdict in (MATCH, KNOWN, DIFFERS, RECORDED)}
    return {
        "schema": 1, "sides": sides, "known_deviations": known.source, "counts": counts,
        "stale_known": stale_known(rows, known), "probes": probes,
    }
