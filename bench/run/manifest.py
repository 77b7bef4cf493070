"""manifest.json's contents: what a run is (scenario, host, target, options) and where it stands
(cells, servers, client health, calibrations, notes), and the one writer of the file."""

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
from bench.load import CellOutcome, ClientHealth, client_health
from bench.plan import Cell
from bench.prompts import Calibration
from bench.records import write_json
from bench.run.resolve import ResolvedRun


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_manifest(run: ResolvedRun, t0_epoch_s: float) -> dict[str, Any]:
    """The manifest of a run that is starting: everything known before the first request."""
    return {
        "run_id": run.run_dir.name,
        "bench_version": __version__,
        "status": "running",
        "started_at": now_iso(),
        "ended_at": None,
        "t0_epoch_s": t0_epoch_s,
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "python": sys.version.split()[0], "cpu_count": os.cpu_count()},
        "target": {"base_url": run.target_url, "kind": run.target_kind, "version": None},
        "models": {},
        "scenario": run.scenario.model_dump(mode="json"),
        "scenario_path": str(run.scenario_path) if run.scenario_path else None,
        "workers": run.workers,
        "transport": run.transport,
        "gpu": None,
        "baseline": str(run.baseline) if run.baseline else None,
        "options": run.record(),
    }


def resumed_manifest(previous: dict[str, Any], rerun_cell_ids: list[str]) -> dict[str, Any]:
    """The earlier manifest, with this session added to its history and its verdict cleared."""
    manifest = dict(previous)
    sessions = list(manifest.get("sessions") or [])
    sessions.append({
        "resumed_at": now_iso(),
        "previous_status": manifest.get("status"),
        "previous_stop_reason": manifest.pop("stop_reason", None),
        "previous_failure": manifest.pop("failure", None),
        "cells": rerun_cell_ids,
    })
    manifest.update(sessions=sessions, ended_at=None)
    return manifest


def run_state(*, status: str, ended: bool, cells: list[Cell], cell_status: dict[str, str],
              cell_server: dict[str, int | None], labels: dict[str, str],
              servers: list[dict[str, Any]], health: ClientHealth,
              calibrations: dict[tuple[str, ...], Calibration], notes: list[str],
              failure: str | None, stop_reason: str | None) -> dict[str, Any]:
    """The manifest fields that change as the run goes; `failure` and `stop_reason` only when set."""
    state: dict[str, Any] = {
        "status": status,
        "ended_at": now_iso() if ended else None,
        "cells": [
            {"cell_id": c.cell_id, "cell_index": c.cell_index, "settings": c.settings,
             "status": cell_status[c.cell_id], "server_id": cell_server.get(c.cell_id),
             "label": labels[c.cell_id]}
            for c in cells
        ],
        "servers": servers,
        "client": {"cpu_s": health.cpu_s, "wall_s": health.wall_s,
                   "dispatch_lag_p99_s": health.dispatch_lag_p99_s, "saturated": health.saturated},
        "calibration": {"/".join(key): cal.to_dict() for key, cal in calibrations.items()},
        "notes": notes,
    }
    if failure:
        state["failure"] = failure
    if stop_reason:
        state["stop_reason"] = stop_reason
    return state


@dataclass
class RunState:
    """Where a run stands: what the manifest's changing fields are drawn from."""

    cells: tuple[Cell, ...]
    labels: dict[str, str]  # cell_id -> the label shown everywhere (bench.plan.cell_labels)
    cell_status: dict[str, str] = field(default_factory=dict)  # pending | complete | partial
    cell_server: dict[str, int | None] = field(default_factory=dict)
    outcomes: list[CellOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failed_reason: str | None = None  # abort_on, or the error that ended the run

    def add_note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


class ManifestWriter:
    """The one writer of manifest.json: the run's fixed facts plus its state, written atomically."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path, self.manifest = path, manifest
        # What a kind of run adds before each write (stop verdicts, skips, the node of each cell).
        self.annotators: list[Callable[[dict[str, Any]], None]] = []

    def update(self, **fields: Any) -> None:
        """Facts learned during the run (target version, models, GPU, transport)."""
        self.manifest.update(fields)

    def write(self, status: str, state: RunState, servers: list[dict[str, Any]],
              calibrations: dict[tuple[str, ...], Calibration], stop_reason: str | None,
              ended: bool = False) -> None:
        self.manifest.update(run_state(
            status=status, ended=ended, cells=list(state.cells),
            cell_status=state.cell_status, cell_server=state.cell_server, labels=state.labels,
            servers=servers, health=client_health(state.outcomes), calibrations=calibrations,
            notes=state.notes, failure=state.failed_reason, stop_reason=stop_reason,
        ))
        for annotate in self.annotators:
            annotate(self.manifest)
        write_json(self.path, self.manifest)
