"""The one writer of manifest.json: a run's fixed facts when it starts, then where it stands after
every cell (the schema is bench.records.manifest.Manifest)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import __version__
from bench.load.health import CellOutcome, client_health
from bench.records.manifest import ClientRecord, HostRecord, Manifest, ManifestCell, OptionsRecord, ServerRecord, SessionRecord, TargetRecord
from bench.plan import Cell
from bench.workload.prompts import Calibration
from bench.records import write_json
from bench.run.resolve import ResolvedRun


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_manifest(run: ResolvedRun, t0_epoch_s: float) -> Manifest:
    """The manifest of a run that is starting: everything known before the first request."""
    return Manifest(
        run_id=run.run_dir.name, bench_version=__version__, status="running",
        started_at=now_iso(), ended_at=None, t0_epoch_s=t0_epoch_s,
        host=HostRecord(hostname=socket.gethostname(), platform=platform.platform(),
                        python=sys.version.split()[0], cpu_count=os.cpu_count()),
        target=TargetRecord(base_url=run.target_url, kind=run.target_kind),
        scenario=run.scenario.model_dump(mode="json"),
        scenario_path=str(run.scenario_path) if run.scenario_path else None,
        workers=run.workers, transport=run.transport,
        baseline=str(run.baseline) if run.baseline else None,
        options=OptionsRecord.model_validate(run.record()),
    )


def resumed_manifest(previous: Manifest, rerun_cell_ids: list[str]) -> Manifest:
    """The earlier manifest, with this session added to its history and its verdict cleared."""
    session = SessionRecord(
        resumed_at=now_iso(), previous_status=previous.status,
        previous_stop_reason=previous.stop_reason, previous_failure=previous.failure,
        cells=rerun_cell_ids,
    )
    return previous.model_copy(deep=True, update={
        "sessions": [*previous.sessions, session], "ended_at": None,
        "stop_reason": None, "failure": None,
    })


@dataclass
class RunState:
    """Where a run stands: what the manifest's changing fields are drawn from."""

    cells: tuple[Cell, ...]  # the plan's, a sweep's rate steps settled with their rates (settle)
    labels: dict[str, str]  # cell_id -> the label shown everywhere (bench.plan.cell_labels)
    cell_status: dict[str, str] = field(default_factory=dict)  # pending | complete | partial
    cell_server: dict[str, int | None] = field(default_factory=dict)
    cell_reason: dict[str, str] = field(default_factory=dict)  # cell_id -> why partial / not run
    cell_node: dict[str, dict[str, Any]] = field(default_factory=dict)  # --ray: cell_id -> its node
    outcomes: list[CellOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed_reason: str | None = None  # abort_on, or the error that ended the run

    def add_note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def settle(self, cell: Cell) -> None:
        """A cell whose settings were completed while the run goes (a sweep's rate step and its rate)."""
        self.cells = tuple(cell if c.cell_id == cell.cell_id else c for c in self.cells)

    def manifest_cells(self) -> list[ManifestCell]:
        return [ManifestCell(cell_id=c.cell_id, cell_index=c.cell_index, settings=c.settings,
                             status=self.cell_status[c.cell_id], server_id=self.cell_server.get(c.cell_id),
                             label=self.labels[c.cell_id], unfinished_reason=self.cell_reason.get(c.cell_id),
                             node=self.cell_node.get(c.cell_id))
                for c in self.cells]


class ManifestWriter:
    """The one writer of manifest.json: the run's fixed facts plus its state, written atomically."""

    def __init__(self, path: Path, manifest: Manifest | None = None) -> None:
        self.path, self.manifest = path, manifest if manifest is not None else Manifest()
        # What a kind of run adds before each write (stop verdicts, skips, the node of each cell).
        self.annotators: list[Callable[[Manifest], None]] = []

    def write(self, status: str, state: RunState, servers: list[dict[str, Any]],
              calibrations: dict[tuple[str, str, str], Calibration], stop_reason: str | None,
              ended: bool = False) -> None:
        """Record where the run stands (`failure` and `stop_reason` only once set) and write the file."""
        health = client_health(state.outcomes)
        manifest = self.manifest
        manifest.status = status
        manifest.ended_at = now_iso() if ended else None
        manifest.cells = state.manifest_cells()
        manifest.servers = [ServerRecord.model_validate(server) for server in servers]
        manifest.client = ClientRecord(cpu_s=health.cpu_s, wall_s=health.wall_s,
                                       dispatch_lag_p99_s=health.dispatch_lag_p99_s, saturated=health.saturated)
        manifest.calibration = {"/".join(key): cal.to_dict() for key, cal in calibrations.items()}
        manifest.notes = list(state.notes)
        if state.failed_reason:
            manifest.failure = state.failed_reason
        if stop_reason:
            manifest.stop_reason = stop_reason
        for annotate in self.annotators:
            annotate(manifest)
        write_json(self.path, manifest.to_json())
