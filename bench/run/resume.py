"""Resuming a run directory: what the run was started with, which cells are done, and tidying
the directory so the next session appends cleanly (`bench run --resume RUN_DIR`).

The scenario comes from the run's own manifest, not from a file: the manifest holds the scenario
as it was resolved when the run began (prompt file paths made absolute), and the command-line
overrides (--requests, --quick, ...), so a resume re-plans exactly the same cells. A scenario file
given alongside --resume is only checked against it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
from pydantic import ValidationError

from bench.records.atomic import write_atomically
from bench.errors import UsageError
from bench.records.manifest import Manifest
from bench.plan import Cell, Overrides, plan_cells
from bench.workload.prompts import Calibration
from bench.records import MANIFEST_FILE, REQUESTS_JSONL
from bench.scenario import Scenario

if TYPE_CHECKING:
    from bench.run.runner import CellLoop

# Records of cells that are re-run are moved here (not deleted): a partial cell's requests were
# real, but counting them next to the re-run's would measure the cell twice.
SUPERSEDED_JSONL = "requests.superseded.jsonl"
# Telemetry timelines of earlier sessions, merged back after the resumed session writes its own.
TELEMETRY_FILES = ("gpu.parquet", "ps.parquet")


@dataclass(frozen=True)
class ResumePoint:
    """A run directory as the resumed session picks it up."""

    run_dir: Path
    manifest: Manifest
    scenario: Scenario
    overrides: Overrides
    target: str | None  # the --target the run was started with
    sim_speed: float | None
    complete_cells: frozenset[str]

    def calibrations(self) -> dict[tuple[str, str, str], Calibration]:
        """The prompt calibrations of the earlier session, so re-run cells get the same prompts."""
        known = {f.name for f in fields(Calibration)}
        restored = {}
        for key, payload in self.manifest.calibration.items():
            # The key is model/surface/endpoint and a model name may itself contain "/".
            parts = key.rsplit("/", 2)
            if len(parts) != 3 or not isinstance(payload, dict):
                continue
            values = {name: value for name, value in payload.items() if name in known}
            values["probes"] = tuple(values.get("probes") or ())
            restored[(parts[0], parts[1], parts[2])] = Calibration(**values)
        return restored


def _refuse(run_dir: Path, why: str) -> UsageError:
    return UsageError(f"--resume {run_dir}: {why}")


def _read_manifest(run_dir: Path) -> Manifest:
    if not run_dir.is_dir():
        raise _refuse(run_dir, "no such directory")
    path = run_dir / MANIFEST_FILE
    if not path.is_file():
        raise _refuse(run_dir, "not a bench run (no manifest.json)")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _refuse(run_dir, f"manifest.json is unreadable ({type(error).__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("scenario"), dict) \
            or not isinstance(payload.get("cells"), list):
        raise _refuse(run_dir, "not a bench run (manifest.json has no scenario or cells)")
    try:
        return Manifest.model_validate(payload)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _refuse(run_dir, f"manifest.json: {where}: {first['msg']}") from None


def _stored_scenario(run_dir: Path, manifest: Manifest) -> Scenario:
    try:
        scenario = Scenario.model_validate(manifest.scenario)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _refuse(run_dir, f"the stored scenario no longer validates ({where}: {first['msg']})") from None
    scenario._source = str(run_dir / MANIFEST_FILE)
    return scenario


def _first_difference(stored: dict[str, Any], given: dict[str, Any], path: str = "") -> str | None:
    for key in sorted(set(stored) | set(given)):
        here = f"{path}.{key}" if path else key
        left, right = stored.get(key), given.get(key)
        if isinstance(left, dict) and isinstance(right, dict):
            found = _first_difference(left, right, here)
            if found:
                return found
        elif left != right:
            return here
    return None


def _check_same_scenario(run_dir: Path, stored: Scenario, given: Scenario | None, source: str) -> None:
    if given is None:
        return
    difference = _first_difference(stored.model_dump(mode="json"), given.model_dump(mode="json"))
    if difference is not None:
        raise _refuse(run_dir, f"{source} differs from the run's scenario at {difference}; "
                               "resume without a scenario file, or start a new run")


def _overrides(manifest: Manifest) -> Overrides:
    stored = manifest.options.overrides
    known = {f.name for f in fields(Overrides)}
    return Overrides(**{name: value for name, value in stored.items() if name in known})


def _check_same_cells(run_dir: Path, manifest: Manifest, cells: list[Cell]) -> None:
    stored_ids = [cell.cell_id for cell in manifest.cells]
    if stored_ids != [cell.cell_id for cell in cells]:
        raise _refuse(run_dir, "the scenario no longer plans the cells this run holds "
                               "(was it started by another bench version?)")


def load_resume_point(run_dir: Path, given: Scenario | None = None, given_source: str = "") -> ResumePoint:
    """Read RUN_DIR for --resume; every reason to refuse is a one-line UsageError."""
    manifest = _read_manifest(run_dir)
    scenario = _stored_scenario(run_dir, manifest)
    _check_same_scenario(run_dir, scenario, given, given_source or "the scenario file")
    overrides = _overrides(manifest)
    _check_same_cells(run_dir, manifest, plan_cells(scenario, overrides))
    # A skipped cell (pruned study) was decided, not interrupted: it stays skipped. A complete
    # cell whose records are gone from requests.jsonl (deleted, a damaged disk) is run again:
    # the manifest's word alone would end the run "complete" with nothing measured.
    recorded = _cells_with_records(run_dir)
    complete = frozenset(cell.cell_id for cell in manifest.cells
                         if cell.status == "skipped" or (cell.status == "complete" and cell.cell_id in recorded))
    return ResumePoint(run_dir=run_dir, manifest=manifest, scenario=scenario, overrides=overrides,
                       target=manifest.options.target, sim_speed=manifest.options.sim_speed,
                       complete_cells=complete)


def _cells_with_records(run_dir: Path) -> set[str]:
    """The cell ids that have at least one measured record in requests.jsonl."""
    found: set[str] = set()
    try:
        with open(run_dir / REQUESTS_JSONL, "rb") as lines:
            for raw_line in lines:
                try:
                    row = orjson.loads(raw_line)
                except orjson.JSONDecodeError:
                    continue  # a torn line
                if isinstance(row, dict) and row.get("phase") == "measure" and isinstance(row.get("cell_id"), str):
                    found.add(row["cell_id"])
    except OSError:
        return found
    return found


def keep_complete_records(run_dir: Path, complete_cells: frozenset[str]) -> int:
    """Rewrite requests.jsonl with the records of complete cells only; move the rest to
    requests.superseded.jsonl. Returns how many records were moved.

    Rewriting also drops a torn last line (a kill -9 mid-write), which appending would otherwise
    glue onto the next record.
    """
    path = run_dir / REQUESTS_JSONL
    if not path.exists():
        return 0
    kept: list[bytes] = []
    superseded: list[bytes] = []
    with open(path, "rb") as lines:
        for raw_line in lines:
            try:
                cell_id = orjson.loads(raw_line).get("cell_id")
            except (orjson.JSONDecodeError, AttributeError):
                continue
            line = raw_line if raw_line.endswith(b"\n") else raw_line + b"\n"
            (kept if cell_id in complete_cells else superseded).append(line)
    if superseded:
        with open(run_dir / SUPERSEDED_JSONL, "ab") as moved:
            moved.writelines(superseded)
            moved.flush()
            os.fsync(moved.fileno())
    temp_path = path.with_suffix(".jsonl.tmp")
    with open(temp_path, "wb") as rewritten:
        rewritten.writelines(kept)
        rewritten.flush()
        os.fsync(rewritten.fileno())
    os.replace(temp_path, path)
    return len(superseded)


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".previous.parquet")


def stash_telemetry(run_dir: Path) -> None:
    """Move earlier sessions' timelines aside: the new session's samplers write fresh files."""
    for name in TELEMETRY_FILES:
        path = run_dir / name
        if path.exists():
            os.replace(path, _previous(path))


def merge_telemetry(run_dir: Path) -> None:
    """Join earlier sessions' timelines with this one's (one clock: the run's t0 is kept)."""
    for name in TELEMETRY_FILES:
        path, previous = run_dir / name, _previous(run_dir / name)
        if not previous.exists():
            continue
        frames = [pd.read_parquet(previous)] + ([pd.read_parquet(path)] if path.exists() else [])
        merged = pd.concat(frames, ignore_index=True)
        write_atomically(path, lambda temp: merged.to_parquet(temp, index=False))
        previous.unlink()


def pick_up_session(loop: CellLoop, resume: ResumePoint) -> None:
    """A resumed run's loop takes up the earlier sessions' state: cells done, calibrations, notes,
    the study's verdicts and skips, a sweep's rates; unfinished cells' records set aside."""
    stored = {cell.cell_id: cell for cell in resume.manifest.cells}
    loop.study.pick_up(resume.manifest)
    for cell_id in resume.complete_cells:
        # complete, or skipped by a pruned study (decided, not interrupted)
        loop.state.cell_status[cell_id] = stored[cell_id].status
        loop.state.cell_server[cell_id] = stored[cell_id].server_id
        node = stored[cell_id].node
        if node is not None:  # measured on a Ray node in an earlier session
            loop.state.cell_node[cell_id] = node
    loop.prompts.calibrations.update(resume.calibrations())
    for note in resume.manifest.notes:
        loop.state.add_note(note)
    moved = keep_complete_records(loop.run.run_dir, resume.complete_cells)
    if moved:
        loop.state.add_note(f"resume: {moved} records of unfinished cells moved to "
                            "requests.superseded.jsonl; those cells were run again")
    for settled in loop.sweep.pick_up(loop.run.cells, stored, resume.complete_cells,
                                      loop.run.run_dir / REQUESTS_JSONL):
        loop.state.settle(settled)
    stash_telemetry(loop.run.run_dir)
