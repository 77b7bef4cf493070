"""A saturation sweep's answer from its stored summary: capacity, knee, highest load within SLOs.

Definitions (docs/workloads.md, "Saturation sweep"):
- synchronous rate: successful requests/s of the one-at-a-time step;
- capacity: the most successful requests/s any step achieved (normally the throughput step);
- knee: the highest offered rate whose median TTFT is at most KNEE_TTFT_FACTOR times the
  synchronous step's (queueing shows in TTFT first) and that had no failures;
- within SLOs: the highest offered rate (the synchronous step counting as its own rate) whose
  cell meets every SLO of the scenario (cell level, as `bench recommend` judges them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from bench.errors import BenchError
from bench.records import number_or_none
from bench.records.cell_settings import CellSettings
from bench.records.manifest import Manifest

KNEE_TTFT_FACTOR = 2.0


@dataclass(frozen=True)
class SweepStep:
    cell_id: str
    step: str  # sync, throughput, rate i/K
    offered_rps: float | None  # None for the closed-loop steps
    achieved_rps: float | None
    output_tps: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    failed: int
    slo_failures: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepResult:
    sweep: str  # a label for the sweep (its settings apart from the steps)
    sync_rps: float | None
    capacity_rps: float | None
    capacity_step: str | None
    knee_rps: float | None
    knee_step: str | None
    slo_rps: float | None  # None: no SLOs, or none met
    slo_step: str | None
    has_slos: bool
    steps: list[SweepStep] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the terminal prints: one line for the capacity and knee, one for the SLOs."""
        prefix = f"sweep {self.sweep}: " if self.sweep else "sweep: "
        parts = [f"synchronous {_rps(self.sync_rps)}",
                 f"capacity {_rps(self.capacity_rps)} ({self.capacity_step})"]
        parts.append(f"knee at {_rps(self.knee_rps)} ({self.knee_step})" if self.knee_step
                     else "no knee (every rate step queued or failed)")
        lines = [prefix + ", ".join(parts)]
        if self.has_slos:
            lines.append(prefix + (f"highest load within the SLOs: {_rps(self.slo_rps)} ({self.slo_step})"
                                   if self.slo_step else "no load met the SLOs"))
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rps(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g} req/s"


def sweep_results(cells: Mapping[str, CellSettings], summary: pd.DataFrame,
                  slos: tuple[Any, ...] = ()) -> list[SweepResult]:
    """One result per sweep in the run. `cells`: cell_id -> settings, in cell order; `summary`:
    cell_summary rows (index cell_id); `slos`: bench.analysis.recommend.Slo values."""
    from bench.analysis.recommend import slo_failures
    from bench.plan import sweep_key

    sweeps: dict[str, list[tuple[str, CellSettings]]] = {}
    for cell_id, settings in cells.items():
        if settings.sweep_step is not None:
            sweeps.setdefault(sweep_key(settings), []).append((cell_id, settings))
    results = []
    for group in sweeps.values():
        steps = []
        for cell_id, settings in group:
            measured = summary.loc[cell_id] if cell_id in summary.index else None
            def get(name: str, measured: pd.Series | None = measured) -> float | None:
                return number_or_none(measured.get(name)) if measured is not None else None

            failures = tuple(slo_failures(measured, slos)) if measured is not None and slos else ()
            steps.append(SweepStep(
                cell_id=cell_id, step=str(settings.sweep_step), offered_rps=settings.rate_rps,
                achieved_rps=get("rps"), output_tps=get("output_tps"), ttft_p50_s=get("ttft_p50_s"),
                ttft_p95_s=get("ttft_p95_s"),
                failed=int((get("errors") or 0) + (get("rejected") or 0)), slo_failures=failures,
            ))
        results.append(_result(_describe(group[0][1]), steps, bool(slos)))
    if len(results) == 1:
        results[0] = replace(results[0], sweep="")  # one sweep needs no name
    return results


def run_sweeps(manifest: Manifest, summary: pd.DataFrame) -> tuple[SweepResult, ...]:
    """The answer of every sweep of a run (`summary`: its cell_summary) against its scenario's SLOs
    (none when bench cannot read them); () for a run without one. A step that measured nothing is
    listed with its figures missing (and, with SLOs, as missing them)."""
    from bench.analysis.recommend import scenario_slos

    cells = {cell.cell_id: cell.settings for cell in manifest.cells}
    if not any(settings.sweep_step is not None for settings in cells.values()):
        return ()
    try:
        slos = scenario_slos(manifest)
    except BenchError:
        slos = ()
    every_step = summary.reindex(list(cells))
    for column in ("requests", "ok", "rejected", "errors"):
        if column in every_step:
            every_step[column] = every_step[column].fillna(0).astype(int)
    return tuple(sweep_results(cells, every_step, slos))


def _describe(settings: CellSettings) -> str:
    shown = {"model": settings.model, "endpoint": settings.endpoint, "prompt_tokens": settings.prompt_tokens,
             "max_tokens": settings.max_tokens}
    return " ".join(f"{name}={value}" for name, value in shown.items() if value is not None)


def _result(name: str, steps: list[SweepStep], has_slos: bool) -> SweepResult:
    sync = next((s for s in steps if s.step == "sync"), None)
    measured = [s for s in steps if s.achieved_rps is not None]
    best = max(measured, key=lambda s: s.achieved_rps or 0.0, default=None)
    # The load each step offered: the synchronous step offers what it achieves.
    loads = ([(sync.achieved_rps, sync)] if sync is not None and sync.achieved_rps else []) + [
        (s.offered_rps, s) for s in steps if s.step.startswith("rate ") and s.offered_rps is not None
        and s.achieved_rps is not None]
    knee = None
    if sync is not None and sync.ttft_p50_s is not None:
        limit = KNEE_TTFT_FACTOR * sync.ttft_p50_s
        kept_up = [(load, s) for load, s in loads
                   if s.failed == 0 and s.ttft_p50_s is not None and s.ttft_p50_s <= limit]
        knee = max(kept_up, key=lambda pair: pair[0], default=None)
    within = max(((load, s) for load, s in loads if not s.slo_failures), key=lambda pair: pair[0],
                 default=None) if has_slos else None
    return SweepResult(
        sweep=name, sync_rps=sync.achieved_rps if sync else None,
        capacity_rps=best.achieved_rps if best else None, capacity_step=best.step if best else None,
        knee_rps=knee[0] if knee else None, knee_step=knee[1].step if knee else None,
        slo_rps=within[0] if within else None, slo_step=within[1].step if within else None,
        has_slos=has_slos, steps=steps,
    )
