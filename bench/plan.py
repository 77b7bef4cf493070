"""Scenario → the ordered list of cells a run measures (the matrix expansion).

A cell is one point of the matrix: its settings (bench.records.cell_settings.CellSettings: the
request, the load, the managed server's variables), made here once and read as attributes after. Server variables are the outermost axes, so cells that share a server process
are adjacent and the server restarts only when a server setting changes.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ScenarioError
from bench.numbers import MAX_CELLS
from bench.escape import plain_terminal
from bench.records.cell_settings import CellSettings
from bench.records.record import Endpoint, Surface
from bench.scenario import DEFAULT_TURNS, ENDPOINTS, Distribution, Scenario, SweepSpec

# Axes in the order they vary (outer first) after the server variables. Stable across versions:
# the cell order, and so the run's timeline, must not depend on dict order in a YAML file.
_WORKLOAD_AXES = (
    "model", "num_ctx", "endpoint", "prompt_tokens", "shared_prefix_tokens", "turns",
    "max_tokens", "keep_alive", "temperature", "format", "prompt_cache", "arrival", "concurrency",
    "rate_rps", "requests", "duration_s", "gap_s",
)
# Axes a cell's settings carry only when the scenario uses them, so the cell ids of scenarios
# written before these axes existed (and the baselines keyed by them) stay the same.
_OPTIONAL_AXES = ("shared_prefix_tokens", "turns", "prompt_cache")


TARGET_AXIS = "target"  # the setting naming a cell's server when the scenario lists `targets:`


@dataclass(frozen=True)
class Cell:
    """One point of the matrix, fully resolved."""

    cell_id: str
    cell_index: int
    settings: CellSettings = field(hash=False)
    server_group: int = 0  # cells with the same server_env share one server process
    request_format: str | dict[str, Any] | None = field(default=None, hash=False)  # as sent

    @property
    def server_env(self) -> tuple[tuple[str, str], ...]:
        """The managed server's variables for this cell, in the scenario's order."""
        return tuple(self.settings.server_env.items())

    @property
    def gap_s(self) -> float:
        """Idle time before the cell starts (keep_alive studies)."""
        return self.settings.gap_s or 0.0

    @property
    def surface(self) -> Surface:
        assert self.settings.surface is not None, "a planned cell names its surface"
        return self.settings.surface

    @property
    def endpoint(self) -> Endpoint:
        assert self.settings.endpoint is not None, "a planned cell names its endpoint"
        return self.settings.endpoint


@dataclass(frozen=True)
class Overrides:
    """Command-line overrides applied on top of the scenario's load settings."""

    requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int | None = None
    repeats: int | None = None


def cell_id_for(settings: CellSettings | Mapping[str, Any]) -> str:
    """A short stable id: the same settings always give the same id, across runs and machines."""
    if isinstance(settings, CellSettings):
        settings = settings.row()
    canonical = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def _axes(scenario: Scenario, overrides: Overrides) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(server axes, workload axes): every axis with its values, scalars as one-value lists."""
    workload, load = scenario.workload, scenario.load
    tokens = workload.prompt.tokens
    if isinstance(tokens, Distribution):
        prompt_tokens: list[Any] = [round(tokens.mean_tokens)]
    elif tokens is None:
        prompt_tokens = [None]  # prompts from a file
    else:
        prompt_tokens = list(tokens)
    conversation = workload.conversation
    if conversation is None:
        turns: list[Any] = [None]
    elif conversation.turns is None:
        turns = [None] if workload.prompt.file is not None else [DEFAULT_TURNS]
    elif isinstance(conversation.turns, Distribution):
        turns = [round(conversation.turns.mean_tokens, 1)]  # the mean: a label, draws vary
    else:
        turns = list(conversation.turns)
    cache = list(workload.prompt.cache)
    # "reuse" alone is what every scenario did before the axis existed: no setting for it.
    prompt_cache: list[Any] = [None] if cache == ["reuse"] else cache
    requests: list[Any] = load.requests if load.requests is not None else [None]
    duration_s: list[Any] = load.duration_s if load.duration_s is not None else [None]
    if overrides.requests is not None or overrides.duration_s is not None:
        requests, duration_s = [overrides.requests], [overrides.duration_s]
    # Outer to inner. model and num_ctx first: changing either makes Ollama load a runner, so
    # they change as rarely as possible.
    workload_axes: dict[str, list[Any]] = {
        "model": list(workload.model),
        "num_ctx": workload.num_ctx or [None],
        "endpoint": list(workload.endpoint),
        "prompt_tokens": prompt_tokens,
        "shared_prefix_tokens": workload.prompt.shared_prefix_tokens or [None],
        "turns": turns,
        # A distribution is drawn per request (bench.workload.prompts); the cell shows its mean.
        "max_tokens": ([round(workload.max_tokens.mean_tokens)]
                       if isinstance(workload.max_tokens, Distribution) else list(workload.max_tokens)),
        "keep_alive": workload.keep_alive or [None],
        "temperature": workload.temperature or [None],
        "format": list(workload.format),
        "prompt_cache": prompt_cache,
        "arrival": list(load.arrival),
        "concurrency": load.concurrency or [None],
        "rate_rps": load.rate_rps or [None],
        "requests": requests,
        "duration_s": duration_s,
        "gap_s": list(scenario.pace.gap_s),
    }
    server_axes: dict[str, list[Any]] = {}
    if scenario.server is not None:
        server_axes = {name: [str(v) for v in values] for name, values in scenario.server.env.items()}
    if scenario.targets is not None:
        # Several existing servers: the outermost axis, one server group per URL.
        server_axes = {TARGET_AXIS: list(scenario.targets)}
    return server_axes, workload_axes


def _groups(axes: dict[str, list[Any]], zipped: list[list[str]]) -> list[list[str]]:
    """Axis names grouped: each zip group moves together, every other axis alone."""
    groups: list[list[str]] = []
    placed: set[str] = set()
    for name in axes:
        if name in placed:
            continue
        group = next((g for g in zipped if name in g), [name])
        groups.append([n for n in group if n in axes])
        placed.update(group)
    return groups


def _check_zip(scenario: Scenario, all_axes: dict[str, list[Any]]) -> None:
    for group in scenario.matrix.zip:
        for name in group:
            if name not in all_axes:
                known = ", ".join(sorted(all_axes))
                raise ScenarioError(f"{scenario.where('matrix', 'zip')}: unknown axis {name!r} (axes: {known})")
        lengths = {name: len(all_axes[name]) for name in group}
        if len(set(lengths.values())) > 1:
            raise ScenarioError(
                f"{scenario.where('matrix', 'zip')}: axes {group} need lists of equal length, got {lengths}"
            )


def _check_cell_count(scenario: Scenario, lengths: list[int]) -> None:
    """Refuse a matrix past MAX_CELLS before a cell is built (its product, counted, not expanded)."""
    count = math.prod(lengths)
    if count > MAX_CELLS:
        shown = " x ".join(str(length) for length in lengths if length > 1) or str(count)
        raise ScenarioError(f"{scenario.where('matrix')}: {shown} = {count:,} cells, over the limit of "
                            f"{MAX_CELLS:,} per scenario; split the study or shorten its lists")


def _expand(axes: dict[str, list[Any]], groups: list[list[str]]) -> list[dict[str, Any]]:
    """Cross product of groups (first group outermost); a zip group contributes its rows."""
    per_group: list[list[dict[str, Any]]] = []
    for group in groups:
        length = len(axes[group[0]])
        per_group.append([{name: axes[name][i] for name in group} for i in range(length)])
    points = []
    for combination in itertools.product(*per_group):
        point: dict[str, Any] = {}
        for part in combination:
            point.update(part)
        points.append(point)
    return points


def _settings(point: dict[str, Any], scenario: Scenario, overrides: Overrides) -> CellSettings:
    surface, endpoint = ENDPOINTS[point["endpoint"]]
    arrival = point["arrival"]
    concurrency = point["concurrency"]
    if arrival == "closed" and concurrency is None:
        concurrency = 1  # a closed loop's default: one request at a time
    load = scenario.load
    fmt = point["format"]
    settings: dict[str, Any] = {
        "surface": surface,
        "endpoint": endpoint,
        "model": point["model"],
        "arrival": arrival,
        "concurrency": concurrency,
        "rate_rps": point["rate_rps"] if arrival != "closed" else None,
        "prompt_tokens": point["prompt_tokens"],
        "max_tokens": point["max_tokens"],
        "num_ctx": point["num_ctx"],
        "keep_alive": point["keep_alive"],
        "temperature": point["temperature"],
        "format": fmt if isinstance(fmt, str) else "schema",
        "requests": point["requests"],
        "duration_s": point["duration_s"],
        "warmup_requests": (
            overrides.warmup_requests if overrides.warmup_requests is not None else load.warmup_requests
        ),
        # The number of times the cell's load is repeated; records carry their repeat index.
        "repeat": overrides.repeats if overrides.repeats is not None else load.repeats,
    }
    if arrival == "trace":
        # The trace decides how many requests and when; no warmup (it would shift the timing).
        settings.update(concurrency=None, rate_rps=None, requests=None, duration_s=None,
                        warmup_requests=0)
    if point["gap_s"]:
        settings["gap_s"] = point["gap_s"]
    for name in _OPTIONAL_AXES:
        if point[name] is not None:
            settings[name] = point[name]
    if TARGET_AXIS in point:
        settings[TARGET_AXIS] = point[TARGET_AXIS]
    server_env = {name: str(value) for name, value in point.items()
                  if name not in _WORKLOAD_AXES and name != TARGET_AXIS}
    if server_env:
        settings["server_env"] = server_env
    # Only what is set here is stored (CellSettings.row): the cell ids of older runs stay.
    return CellSettings(**settings)


# Settings that differ between the steps of one sweep (and a cell's identity); the rest
# identify the sweep.
_STEP_SETTINGS = ("sweep_step", "arrival", "concurrency", "rate_rps", "cell_id", "cell_index", "label")


def sweep_key(settings: CellSettings | Mapping[str, Any]) -> str:
    """The sweep a step belongs to (a scenario may sweep several endpoints, models, ...)."""
    if isinstance(settings, CellSettings):
        settings = settings.row()
    return cell_id_for({k: v for k, v in settings.items() if k not in _STEP_SETTINGS})


def sweep_steps(settings: CellSettings, sweep: SweepSpec) -> list[CellSettings]:
    """A sweep point's cells: synchronous, maximum throughput, then the rate steps; else the point.

    A rate step's rate_rps is None here: the run sets it from the first two steps' measured
    rates (bench.run.sweep), so the cell id (from these settings) is known before the run.
    """
    if settings.arrival != "sweep":
        return [settings]
    sync = settings.model_copy(update={"arrival": "closed", "concurrency": 1, "rate_rps": None,
                                       "sweep_step": "sync"})
    throughput = sync.model_copy(update={"concurrency": sweep.max_concurrency, "sweep_step": "throughput"})
    # Rate steps have no cap on requests in flight: past capacity the server's own queue grows
    # (and shows in TTFT), not a client-side wait that would read as dispatch lag.
    rates = [sync.model_copy(update={"arrival": sweep.arrival, "concurrency": None,
                                     "sweep_step": f"rate {step}/{sweep.rates}"})
             for step in range(1, sweep.rates + 1)]
    return [sync, throughput, *rates]


def plan_cells(scenario: Scenario, overrides: Overrides | None = None) -> list[Cell]:
    """Expand the scenario's matrix into cells, in the order they run."""
    overrides = overrides or Overrides()
    server_axes, workload_axes = _axes(scenario, overrides)
    all_axes = {**server_axes, **workload_axes}
    _check_zip(scenario, all_axes)
    zipped = [list(group) for group in scenario.matrix.zip]
    server_groups = [g for g in _groups(all_axes, zipped) if any(n in server_axes for n in g)]
    workload_groups = [g for g in _groups(all_axes, zipped) if g not in server_groups]
    _check_cell_count(scenario, [len(all_axes[group[0]]) for group in server_groups + workload_groups])
    points = _expand(all_axes, server_groups + workload_groups)

    cells: list[Cell] = []
    env_groups: dict[tuple[tuple[str, str], ...], int] = {}
    for point in points:
        server_env = tuple((name, str(point[name])) for name in server_axes if name != TARGET_AXIS)
        target = (TARGET_AXIS, str(point[TARGET_AXIS])) if TARGET_AXIS in server_axes else None
        group = env_groups.setdefault(server_env + ((target,) if target else ()), len(env_groups))
        for settings in sweep_steps(_settings(point, scenario, overrides), scenario.load.sweep):
            cells.append(
                Cell(
                    cell_id=cell_id_for(settings),
                    cell_index=len(cells),
                    settings=settings,
                    server_group=group,
                    request_format=None if point["format"] == "none" else point["format"],
                )
            )
            if len(cells) > MAX_CELLS:  # a sweep's steps multiply the matrix
                raise ScenarioError(f"{scenario.where('matrix')}: with the sweep's steps, more than "
                                    f"{MAX_CELLS:,} cells (the limit per scenario); split the study")
    ids = [cell.cell_id for cell in cells]
    if len(set(ids)) != len(ids):
        raise ScenarioError(f"{scenario.where('matrix')}: two cells have identical settings (a list repeats a value)")
    return cells


# --- how a cell is named everywhere (progress, summary table, manifest, report, gate) ---------

# Short names of settings in cell labels; others appear under their own name.
SHORT_NAMES = {
    "concurrency": "c", "prompt_tokens": "prompt", "max_tokens": "out", "num_ctx": "ctx",
    "rate_rps": "rps", "OLLAMA_NUM_PARALLEL": "NP", "OLLAMA_KV_CACHE_TYPE": "kv",
    "OLLAMA_MAX_QUEUE": "queue", "OLLAMA_KEEP_ALIVE": "server keep_alive",
}


def _is_missing(value: Any) -> bool:
    # NaN (value != value): settings read back through pandas hold NaN where a cell had None.
    return value is None or (isinstance(value, float) and value != value)


def _format_setting(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pandas stores an int column with a gap as floats
    return str(value)


def varying_settings(cells_settings: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of settings that take more than one value across cells (in key order)."""
    settings_list = list(cells_settings)
    names = list(dict.fromkeys(name for settings in settings_list for name in settings))
    varying = [name for name in names
               if len({repr(None if _is_missing(s.get(name)) else s.get(name)) for s in settings_list}) > 1]
    if "surface" in varying and "endpoint" not in varying:
        varying.insert(varying.index("surface") + 1, "endpoint")
    return varying


def describe_cell(settings: Mapping[str, Any], names: Iterable[str]) -> str:
    """`native/chat c=4 NP=2`: the named settings, short; missing ones are left out."""
    parts = []
    for name in names:
        value = settings.get(name)
        if name == "surface" or _is_missing(value):
            continue
        if name == "endpoint":
            parts.append(f"{settings.get('surface')}/{value}")
        else:
            parts.append(f"{SHORT_NAMES.get(name, name)}={_format_setting(value)}")
    # Model names and other values are the user's or the server's text: no escape sequences.
    return plain_terminal(" ".join(parts))


def cell_label(settings: Mapping[str, Any], varying: Iterable[str]) -> str:
    """A cell's label among others: the `varying` settings, or surface/endpoint and model when none vary."""
    return describe_cell(settings, varying) or describe_cell(settings, ("endpoint", "model"))


def cell_labels(cells: Sequence[Cell]) -> dict[str, str]:
    """cell_id -> label for a run's cells (the manifest stores them; every view reads them there)."""
    rows = [cell.settings.row() for cell in cells]
    varying = varying_settings(rows)
    return {cell.cell_id: cell_label(row, varying) for cell, row in zip(cells, rows)}
