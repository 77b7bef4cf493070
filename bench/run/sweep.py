"""The saturation sweep while it runs: rate steps get their rates from the first two steps.

GuideLLM's sweep, in bench's cells: a synchronous step (one request at a time) measures the
rate a lone user gets, a throughput step (sweep.max_concurrency in flight) the most the server
delivers; the rate steps then offer evenly spaced rates from just above the synchronous rate up
to that maximum. With SLOs (and sweep.stop_at_slo), the steps after the first rate that breaks
them are skipped: higher rates only break them further.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from bench.plan import Cell, sweep_key
from bench.records.record import RequestRecord
from bench.records.manifest import ManifestCell
from bench.scenario import SweepSpec

def rate_for_step(step: str, sync_rps: float, max_rps: float, max_rate_factor: float = 1.0) -> float:
    """`rate i/K`: sync + (top - sync) * i / K with top = max_rps * max_rate_factor, so the last
    step offers the measured maximum (or that much beyond it, to see overload)."""
    index, count = (int(part) for part in step.removeprefix("rate ").split("/"))
    top = max(max_rps * max_rate_factor, sync_rps)
    return sync_rps + (top - sync_rps) * index / count


def measured_rps(records: list[dict[str, Any]]) -> float | None:
    """Successful measured requests / (last end - first send), over a step's records."""
    ok = [r for r in records if r.get("error_class") is None and r.get("end_s") is not None]
    if not ok:
        return None
    window_s = max(r["end_s"] for r in ok) - min(r["sent_s"] for r in ok if r.get("sent_s") is not None)
    return len(ok) / window_s if window_s > 0 else None


def with_rate(cell: Cell, rate_rps: float) -> Cell:
    """A rate step with the rate it runs at (set while the run goes, from the first two steps)."""
    return replace(cell, settings=cell.settings.model_copy(update={"rate_rps": rate_rps}))


class SweepTracker:
    """Keeps the measured records of sweep steps; sets rates; says when a sweep stops."""

    def __init__(self, sweep: SweepSpec, slos: tuple[Any, ...] = ()) -> None:
        self.sweep, self.slos = sweep, slos
        self._records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._rates: dict[str, dict[str, float | None]] = defaultdict(dict)  # key -> step -> rps
        self._stopped: dict[str, str] = {}  # key -> why

    def observe(self, cell: Cell, record: RequestRecord) -> None:
        if cell.settings.sweep_step is not None and record.phase == "measure":
            self._records[cell.cell_id].append(orjson.loads(record.to_json_line()))

    def prepare(self, cell: Cell) -> Cell | str:
        """The cell to run (a rate step with its rate set), or why to skip it (a string)."""
        step = cell.settings.sweep_step
        if step is None or not step.startswith("rate "):
            return cell
        key = sweep_key(cell.settings)
        if key in self._stopped:
            return self._stopped[key]
        sync_rps, max_rps = self._rates[key].get("sync"), self._rates[key].get("throughput")
        if sync_rps is None or max_rps is None:
            return "the synchronous or throughput step measured no rate"
        rate_rps = float(f"{rate_for_step(step, sync_rps, max_rps, self.sweep.max_rate_factor):.3g}")
        return with_rate(cell, rate_rps)

    def finished(self, cell: Cell) -> str | None:
        """A step ended: keep its rate; after a rate step that broke the SLOs, stop the sweep
        (returns why, once)."""
        step = cell.settings.sweep_step
        if step is None:
            return None
        key = sweep_key(cell.settings)
        records = self._records.pop(cell.cell_id, [])
        if step in ("sync", "throughput"):
            self._rates[key][str(step)] = measured_rps(records)
            return None
        if self.slos and self.sweep.stop_at_slo and records and key not in self._stopped:
            failures = self._slo_failures(records)
            if failures:
                self._stopped[key] = (f"sweep stopped: {step} at {cell.settings.rate_rps or 0:g} req/s "
                                      f"broke the SLOs ({'; '.join(failures)})")
                return self._stopped[key]
        return None

    def pick_up(self, cells: Iterable[Cell], stored: dict[str, ManifestCell], complete: Any,
                records_path: Path) -> list[Cell]:
        """--resume: the rates (and SLO stops) of the sweep steps an earlier session completed,
        from their stored records, so the remaining rate steps get the same rates; returns those
        steps with the rates they ran at."""
        done = [cell for cell in cells if cell.settings.sweep_step is not None and cell.cell_id in complete]
        if not done:
            return []
        from bench.records import read_records_jsonl

        frame = read_records_jsonl(records_path)
        settled = []
        for cell in done:
            stored_cell = stored.get(cell.cell_id)
            rate_rps = stored_cell.settings.rate_rps if stored_cell is not None else None
            if rate_rps is not None:
                cell = with_rate(cell, rate_rps)
            settled.append(cell)
            rows = frame[(frame["cell_id"] == cell.cell_id) & (frame["phase"] == "measure")]
            self._records[cell.cell_id] = [
                {k: (None if _missing(v) else v) for k, v in row.items()}
                for row in rows.to_dict(orient="records")]
            self.finished(cell)
        return settled

    def _slo_failures(self, records: list[dict[str, Any]]) -> list[str]:
        from bench.analysis.metrics import cell_summary
        from bench.analysis.recommend import slo_failures

        row = cell_summary(pd.DataFrame(records)).iloc[0]
        return slo_failures(row, self.slos)


def sweep_slos(scenario: Any) -> tuple[Any, ...]:
    """The scenario's SLOs as bench.analysis.recommend.Slo (a sweep stops on them)."""
    if not scenario.slos:
        return ()
    from bench.analysis.recommend import declared_slos

    return declared_slos(scenario.slos)


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False  # lists (chunk times)
