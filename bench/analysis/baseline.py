"""Baselines for the regression gate: the per-request samples a comparison needs, from a run.

A baseline file is compact JSON small enough to commit (a few kB per cell): per cell its
settings, the per-request samples of the gated latency metrics (measure phase, successful
requests, rounded to a microsecond), the cell's request counts and aggregates, per-repeat
aggregates, and the environment the baseline was measured in. `load_baseline` reads either such
a file or a run directory into the same `Baseline`, so `bench compare` treats both alike.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.records.atomic import begins_with, write_text_atomically
from bench.errors import RunDirError
from bench.analysis.metrics import cell_summary, request_metrics
from bench.records.manifest import Manifest
from bench.records import MANIFEST_FILE, Run, load_run, missing_as_none

FORMAT = "bench-baseline"
FORMAT_VERSION = 1
# Per-request columns (bench.analysis.metrics.request_metrics) kept as samples. output_tokens_used is
# kept so throughput can be resampled request by request (bench.analysis.compare).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "ttft_s", "tpot_s", "itl_mean_s", "e2e_s", "user_tps", "output_tokens_used",
)
AGGREGATE_COLUMNS: tuple[str, ...] = ("output_tps", "rps", "rejection_rate", "error_rate")
# Settings that say how much was measured, not what: a CI run with fewer requests or repeats
# still compares with its baseline.
AMOUNT_SETTINGS: frozenset[str] = frozenset({"requests", "duration_s", "warmup_requests", "repeat"})
_SAMPLE_DECIMALS = 6  # 1 µs for times; token rates and counts lose nothing that matters


@dataclass(frozen=True)
class BaselineCell:
    """One cell of a baseline: what was measured (settings) and the samples to compare."""

    cell_id: str
    settings: dict[str, Any]
    requests: int  # measured requests, failures included
    rejected: int
    errors: int
    samples: dict[str, np.ndarray]  # SAMPLE_COLUMNS -> one value per successful request (NaN kept)
    aggregates: dict[str, float]  # AGGREGATE_COLUMNS, over the whole cell
    per_repeat: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return self.requests - self.rejected - self.errors

    @property
    def match_key(self) -> str:
        """The settings that identify the cell across runs (amount-of-measurement keys dropped)."""
        return settings_key(self.settings)


@dataclass(frozen=True)
class Baseline:
    """A run reduced to what the gate needs, from a baseline file or a run directory."""

    source: str  # the path it was read from
    environment: dict[str, Any]
    cells: list[BaselineCell]


def settings_key(settings: dict[str, Any]) -> str:
    """Canonical JSON of the settings that identify a cell (same idea as bench.plan.cell_id_for)."""
    kept = {k: v for k, v in settings.items() if k not in AMOUNT_SETTINGS}
    return json.dumps(kept, sort_keys=True, default=str, separators=(",", ":"))


def _environment(manifest: Manifest) -> dict[str, Any]:
    target = manifest.target.model_dump(mode="json")
    gpu = manifest.gpu
    gpu_name = None
    if isinstance(gpu, dict):
        gpu_name = gpu.get("name") or (gpu.get("devices") or [{}])[0].get("name")
    elif isinstance(gpu, list) and gpu:
        gpu_name = gpu[0].get("name") if isinstance(gpu[0], dict) else str(gpu[0])
    speeds, engines = _simulator(manifest)
    return {
        "run_id": manifest.run_id,
        "scenario": manifest.scenario.get("name"),
        "target_server": target.get("server"),
        "sim_speed": speeds,
        "sim_engine": engines,
        "started_at": manifest.started_at,
        "bench_version": manifest.bench_version,
        "target_kind": target.get("kind"),
        "target_version": target.get("version"),
        "gpu": gpu_name,
        "host": manifest.host.model_dump(mode="json"),
        "status": manifest.status,
        # The scenario's `gates:` travel with the baseline, so `bench compare` can use them.
        "gates": manifest.scenario.get("gates") or {},
    }


def _flag_value(command: list[Any], flag: str) -> str | None:
    words = [str(word) for word in command]
    return next((value for name, value in zip(words, words[1:]) if name == flag), None)


def _simulator(manifest: Manifest) -> tuple[str | None, str | None]:
    """The simulator's speed(s) and engine(s) as `10` / `simulated` ('/'-joined when servers
    differ), None for a server that is not `bench sim`."""
    speeds: list[str] = []
    engines: list[str] = []
    sim = manifest.scenario.get("sim") or {}
    for server in manifest.servers:
        words = [str(word) for word in server.command]
        if not any(a == "bench" and b == "sim" for a, b in zip(words, words[1:])):
            continue
        speeds.append(f"{float(_flag_value(words, '--speed') or 1):g}")
        engines.append(_flag_value(words, "--engine") or server.env.get("BENCH_SIM_ENGINE") or "simulated")
    if not speeds and manifest.target.kind == "sim":
        speeds.append(f"{float(manifest.options.sim_speed or sim.get('speed') or 1):g}")
        engines.append(_flag_value(list(sim.get("args") or []), "--engine") or "simulated")
    joined = ("/".join(dict.fromkeys(speeds)) or None, "/".join(dict.fromkeys(engines)) or None)
    return joined


def _rounded(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(float), _SAMPLE_DECIMALS)


def _aggregates(summary_row: pd.Series) -> dict[str, float]:
    return {name: float(summary_row[name]) for name in AGGREGATE_COLUMNS}


def _cell_from_requests(cell_id: str, settings: dict[str, Any], cell: pd.DataFrame) -> BaselineCell:
    ok = cell["error_class"].isna() if "error_class" in cell.columns else pd.Series(True, cell.index)
    rejected = int((cell["error_class"] == "rejected").sum()) if "error_class" in cell else 0
    per_request = request_metrics(cell[ok])
    samples = {name: _rounded(per_request[name].to_numpy(float)) for name in SAMPLE_COLUMNS}
    summary = cell_summary(cell)
    per_repeat: dict[str, list[float]] = {name: [] for name in AGGREGATE_COLUMNS}
    repeats = cell["repeat"].fillna(0) if "repeat" in cell.columns else pd.Series(0, cell.index)
    for _, repeat_rows in cell.groupby(repeats):
        repeat_summary = cell_summary(repeat_rows).iloc[0]
        for name in AGGREGATE_COLUMNS:
            per_repeat[name].append(float(repeat_summary[name]))
    return BaselineCell(
        cell_id=cell_id, settings=dict(settings), requests=len(cell), rejected=rejected,
        errors=len(cell) - int(ok.sum()) - rejected, samples=samples,
        aggregates=_aggregates(summary.iloc[0]), per_repeat=per_repeat,
    )


def baseline_from_run(run_dir: str | Path) -> Baseline:
    """Reduce a run directory to a Baseline (measure-phase requests of every cell that has some)."""
    return baseline_of(load_run(run_dir))


def baseline_of(run: Run) -> Baseline:
    """A loaded run reduced to a Baseline (measure-phase requests of every cell that has some)."""
    requests = run.requests
    if "phase" in requests.columns:
        requests = requests[requests["phase"].fillna("measure") == "measure"]
    by_cell = dict(tuple(requests.groupby("cell_id", sort=False))) if len(requests) else {}
    cells: list[BaselineCell] = []
    for entry in run.manifest.cells:
        cell_requests = by_cell.get(entry.cell_id)
        if cell_requests is None or cell_requests.empty:
            continue  # a cell an interrupted run never reached has nothing to compare
        cells.append(_cell_from_requests(entry.cell_id, entry.settings.row(), cell_requests))
    if not cells:
        raise RunDirError(f"{run.path}: no measured requests to compare")
    return Baseline(str(run.path), _environment(run.manifest), cells)


# --- the file --------------------------------------------------------------------------------


def _cell_to_json(cell: BaselineCell) -> dict[str, Any]:
    return {
        "cell_id": cell.cell_id,
        "settings": cell.settings,
        "requests": cell.requests,
        "rejected": cell.rejected,
        "errors": cell.errors,
        "aggregates": {k: missing_as_none(v) for k, v in cell.aggregates.items()},
        "per_repeat": {k: [missing_as_none(v) for v in vs] for k, vs in cell.per_repeat.items()},
        "samples": {k: [missing_as_none(float(v)) for v in vs] for k, vs in cell.samples.items()},
    }


def baseline_to_json(baseline: Baseline) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "source": baseline.source,
        "environment": baseline.environment,
        "cells": [_cell_to_json(cell) for cell in baseline.cells],
    }


def save_baseline(run_dir: Path, out_path: Path) -> Path:
    """Write the compact baseline of a run directory to out_path (JSON); returns out_path."""
    baseline = baseline_from_run(run_dir)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise RunDirError(f"{out_path}: is a directory; give a file name like baseline.json")
    if not out_path.parent.exists():
        raise RunDirError(f"{out_path.parent}: no such directory")
    payload = baseline_to_json(baseline)
    payload["source"] = Path(run_dir).name  # not an absolute path: the file gets committed
    return write_text_atomically(out_path, _dump(payload) + "\n")


def _dump(value: Any, depth: int = 0) -> str:
    """Indented JSON with every list of numbers on one line: small, and diffable per field."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{_dump(v, depth + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _floats(values: Any, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise RunDirError(f"{where}: expected a list of numbers")
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        raise RunDirError(f"{where}: expected a list of numbers") from None


def _cell_from_json(entry: Any, where: str) -> BaselineCell:
    if not isinstance(entry, dict):
        raise RunDirError(f"{where}: expected an object")
    try:
        samples = {name: _floats(entry["samples"][name], f"{where}.samples.{name}")
                   for name in SAMPLE_COLUMNS}
        aggregates = {name: float("nan") if entry["aggregates"].get(name) is None
                      else float(entry["aggregates"][name]) for name in AGGREGATE_COLUMNS}
        per_repeat = {name: [float("nan") if v is None else float(v) for v in values]
                      for name, values in (entry.get("per_repeat") or {}).items()}
        return BaselineCell(
            cell_id=str(entry["cell_id"]), settings=dict(entry["settings"]),
            requests=int(entry["requests"]), rejected=int(entry["rejected"]),
            errors=int(entry["errors"]), samples=samples, aggregates=aggregates,
            per_repeat=per_repeat,
        )
    except KeyError as error:
        raise RunDirError(f"{where}: missing field {error.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as error:
        raise RunDirError(f"{where}: malformed ({error})") from None


def _read_baseline_file(path: Path) -> Baseline:
    from bench.inputs import MAX_JSON_BYTES, read_input_text

    text = read_input_text(path, MAX_JSON_BYTES, RunDirError, "baseline file")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    except RecursionError:
        raise RunDirError(f"{path}: not a bench baseline (JSON nested too deeply)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise RunDirError(f"{path}: not a bench baseline (no \"format\": \"{FORMAT}\")")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise RunDirError(
            f"{path}: baseline format_version {version!r}; this bench reads {FORMAT_VERSION} "
            "(re-create it with `bench baseline save`)"
        )
    cells = payload.get("cells")
    if not isinstance(cells, list) or not cells:
        raise RunDirError(f"{path}: cells: expected a non-empty list")
    parsed = [_cell_from_json(entry, f"{path}: cells[{i}]") for i, entry in enumerate(cells)]
    return Baseline(str(path), dict(payload.get("environment") or {}), parsed)


# A file bench wrote as a baseline begins so (baseline_to_json puts "format" first): `baseline save`
# replaces it, and no other existing file (bench.records.atomic.check_output_file).
not_a_baseline = begins_with(rb'\s*\{\s*"format"\s*:\s*"' + FORMAT.encode() + rb'"', "a bench baseline")


def load_baseline(path_or_run_dir: str | Path) -> Baseline:
    """A Baseline from a baseline JSON file or from a run directory."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        if not (path / MANIFEST_FILE).exists():
            raise RunDirError(f"{path}: not a run directory (no {MANIFEST_FILE})")
        return baseline_from_run(path)
    if not path.exists():
        raise RunDirError(f"{path}: no such baseline file or run directory")
    return _read_baseline_file(path)


def save_baseline_json(baseline: Baseline, out_path: Path) -> Path:
    """Write an in-memory Baseline (tests, hand-made samples) in the file format."""
    out_path.write_text(_dump(baseline_to_json(baseline)) + "\n")
    return out_path


__all__ = [
    "AGGREGATE_COLUMNS", "AMOUNT_SETTINGS", "Baseline", "BaselineCell", "FORMAT_VERSION",
    "SAMPLE_COLUMNS", "baseline_from_run", "baseline_of", "load_baseline", "save_baseline", "settings_key",
]
