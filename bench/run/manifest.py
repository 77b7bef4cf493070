"""manifest.json's contents: what a run is (scenario, host, target, options) and where it stands
(cells, servers, client health, calibrations, notes). Pure functions; the runner writes the file."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from bench import __version__
from bench.load import ClientHealth
from bench.plan import Cell
from bench.prompts import Calibration
from bench.scenario import Scenario


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_manifest(*, run_id: str, t0_epoch_s: float, target_base_url: str | None, target_kind: str,
                 scenario: Scenario, scenario_path: Path | None, transport: str,
                 baseline: Path | None, options_record: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a run that is starting: everything known before the first request."""
    return {
        "run_id": run_id,
        "bench_version": __version__,
        "status": "running",
        "started_at": now_iso(),
        "ended_at": None,
        "t0_epoch_s": t0_epoch_s,
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(),
                 "python": sys.version.split()[0], "cpu_count": os.cpu_count()},
        "target": {"base_url": target_base_url, "kind": target_kind, "version": None},
        "models": {},
        "scenario": scenario.model_dump(mode="json"),
        "scenario_path": str(scenario_path) if scenario_path else None,
        "workers": 1,
        "transport": transport,
        "gpu": None,
        "baseline": str(baseline) if baseline else None,
        "options": options_record,
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
