"""What the report draws from: each run loaded back, its requests with derived metrics, and one
row per cell (settings + summary + a readable label). Pure: Run in, DataFrames out."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench import plan
from bench.analysis.metrics import summary_columns
from bench.analysis.run_analysis import RunAnalysis
from bench.records.cell_settings import CellSettings
from bench.records.manifest import Manifest
from bench.records import Run

# Settings that identify a cell but say nothing a reader compares on.
_NOT_SETTINGS = ("cell_id", "cell_index", "label", "repeat")
# The settings that make up "offered load": the x axis of most plots.
LOAD_SETTINGS = ("concurrency", "rate_rps")
_OPEN = ("constant", "poisson")  # open-loop arrivals (a concurrency there is only a cap)


@dataclass(frozen=True)
class RunView:
    """One run as the report draws it: its analysis (computed once, bench.analysis.run_analysis) and
    the cell table the sections read."""

    analysis: RunAnalysis
    label: str  # run_id, made unique among the runs of a comparison
    cells: pd.DataFrame  # index cell_id: settings, summary columns, `label`, `offered_load`
    varying: tuple[str, ...]  # settings that differ between this run's cells

    @property
    def run(self) -> Run:
        return self.analysis.run

    @property
    def manifest(self) -> Manifest:
        return self.analysis.run.manifest

    @property
    def requests(self) -> pd.DataFrame:
        """Every record, with bench.analysis.metrics.request_metrics columns."""
        return self.analysis.requests

    @property
    def measured(self) -> pd.DataFrame:
        """The measure phase of `requests`."""
        return self.analysis.measured


def varying_settings(cells: pd.DataFrame) -> tuple[str, ...]:
    """Settings columns that take more than one value across cells (NaN and None count as one)."""
    names = [c for c in cells.columns if c not in _NOT_SETTINGS]
    return tuple(plan.varying_settings(cells[names].to_dict("records")))


# Cell labels have one owner (bench.plan); the report's series keys use the same words.
describe_settings = plan.describe_cell


def _unique_labels(runs: list[Run]) -> list[str]:
    labels: list[str] = []
    for index, run in enumerate(runs):
        label = str(run.manifest.run_id or run.path.name or f"run {index + 1}")
        while label in labels:
            label = f"{label} ({index + 1})"
        labels.append(label)
    return labels


def _cell_frame(analysis: RunAnalysis) -> tuple[pd.DataFrame, tuple[str, ...]]:
    run, measured = analysis.run, analysis.measured
    cells = run.cells.copy()
    if cells.empty:
        # A run without a manifest cell list (hand-made, or very old): the records name the cells.
        ids = list(dict.fromkeys(measured["cell_id"].dropna().astype(str))) if len(measured) else []
        cells = pd.DataFrame({"cell_id": ids, "cell_index": range(len(ids))})
        for name in ("surface", "endpoint", "model"):
            if name in measured:
                first = measured.groupby("cell_id")[name].first()
                cells[name] = cells["cell_id"].map(first)
    cells["cell_id"] = cells["cell_id"].astype(str)
    cells = cells.set_index("cell_id", drop=False).rename_axis(None)
    varying = varying_settings(cells)
    manifest_labels = run.manifest.cell_labels()
    labels = []
    for cell_id, settings in cells.iterrows():
        label = manifest_labels.get(str(cell_id)) or plan.cell_label(settings.to_dict(), varying)
        labels.append(str(label or cell_id))
    cells["label"] = labels
    load = run.manifest.scenario.get("load") or {}
    # A ramp or stages (bench.load.arrival_shapes) offer no one rate: rate_rps is at most where they start.
    shaped = isinstance(load, dict) and bool(load.get("ramp_up") or load.get("stages"))
    settings_of = run.manifest.cell_settings()
    typed = [settings_of.get(str(cell_id), CellSettings()) for cell_id in cells.index]
    cells["offered_load"] = [math.nan if shaped and s.arrival in _OPEN else offered_load(s) for s in typed]
    cells["arrival_kind"] = ["open" if s.rate_rps is not None or s.arrival in _OPEN else "closed" for s in typed]
    percentiles, summary = analysis.percentiles, analysis.summary
    # Every summary column exists, NaN for cells without a measured request (a failed start, a
    # sweep aborted early): sections then draw what there is instead of failing on a missing column.
    for column in summary_columns(percentiles):
        cells[column] = cells.index.map(summary[column]) if len(summary) else np.nan
    for column in ("requests", "ok", "rejected", "errors"):
        if column not in cells:
            cells[column] = 0
        cells[column] = pd.to_numeric(cells[column], errors="coerce").fillna(0).astype(int)
    if "cell_index" in cells:
        cells = cells.sort_values("cell_index", kind="stable")
    return cells, varying


def offered_load(settings: CellSettings) -> float:
    """Open loop: the arrival rate (req/s); closed loop: the concurrency."""
    if settings.rate_rps is not None:
        return settings.rate_rps
    if settings.arrival in _OPEN:
        return math.nan  # a ramp or stages (bench.load.arrival_shapes): no one offered rate
    return float(settings.concurrency) if settings.concurrency is not None else math.nan


def build_view(analysis: RunAnalysis, label: str) -> RunView:
    cells, varying = _cell_frame(analysis)
    return RunView(analysis, label, cells, varying)


def build_views(analyses: list[RunAnalysis]) -> list[RunView]:
    labels = _unique_labels([analysis.run for analysis in analyses])
    return [build_view(analysis, label) for analysis, label in zip(analyses, labels)]


def series_settings(views: list[RunView]) -> tuple[str, ...]:
    """Settings that split cells into lines on a plot against load: all varying settings but load."""
    names: list[str] = []
    for view in views:
        for name in view.varying:
            if name not in LOAD_SETTINGS and name not in names:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True)
class LoadSeries:
    """The cells of one run that differ only in offered load: one line on a plot against load."""

    name: str  # the other settings that vary ('native/chat NP=2'), '' when nothing else varies
    run_index: int
    run_label: str
    cells: pd.DataFrame  # sorted by offered_load


def load_series(views: list[RunView], arrival_kind: str, *, split_by: tuple[str, ...] | None = None) -> list[LoadSeries]:
    """Lines for plots against offered load, for closed ('closed') or open ('open') arrival cells."""
    names = series_settings(views) if split_by is None else split_by
    lines: list[LoadSeries] = []
    for run_index, view in enumerate(views):
        cells = view.cells[(view.cells["arrival_kind"] == arrival_kind) & view.cells["offered_load"].notna()]
        if cells.empty:
            continue
        keys = [describe_settings(row, names) for row in cells.to_dict("records")]
        for key in dict.fromkeys(keys):
            group = cells[[k == key for k in keys]].sort_values("offered_load", kind="stable")
            lines.append(LoadSeries(key, run_index, view.label, group))
    return lines


def load_label(arrival_kind: str) -> str:
    return ("offered load: arrival rate (requests/s)" if arrival_kind == "open"
            else "offered load: concurrency (requests in flight)")


def request_spread(view: RunView, column: str, low: float = 10, high: float = 90) -> pd.DataFrame:
    """Per cell: the `low`th and `high`th percentile of a per-request column over successful requests."""
    measured = view.measured
    if measured.empty or column not in measured:
        return pd.DataFrame(columns=["low", "high"], dtype=float)
    ok = measured[measured["error_class"].isna()] if "error_class" in measured else measured
    grouped = ok.groupby("cell_id")[column]
    return pd.DataFrame({"low": grouped.quantile(low / 100), "high": grouped.quantile(high / 100)})


def throughput_spread(view: RunView, slices: int = 8, low: float = 25, high: float = 75) -> pd.DataFrame:
    """Per cell: percentiles of output tok/s over `slices` equal parts of its measurement window.

    Each streamed chunk carries output_tokens / chunks of its request, so a slice counts the tokens
    that arrived in it. One number per cell hides ramp-up, ramp-down and stalls; this shows them.
    """
    measured = view.measured
    needed = {"chunk_times_s", "sent_s", "end_s", "output_tokens_used"}
    if measured.empty or not needed <= set(measured.columns):
        return pd.DataFrame(columns=["low", "high"], dtype=float)
    rows = {}
    for cell_id, cell in measured.groupby("cell_id"):
        start, end = float(cell["sent_s"].min()), float(cell["end_s"].max())
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            continue
        edges = np.linspace(start, end, slices + 1)
        tokens = np.zeros(slices)
        for chunks, count in zip(cell["chunk_times_s"], cell["output_tokens_used"]):
            times = np.asarray(chunks if chunks is not None else [], dtype=float)
            if not len(times) or not np.isfinite(count):
                continue
            hist, _ = np.histogram(times, bins=edges)
            tokens += hist * (float(count) / len(times))
        rates = tokens / ((end - start) / slices)
        rows[cell_id] = {"low": float(np.percentile(rates, low)), "high": float(np.percentile(rates, high))}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["low", "high"])


_SIM_GPU_LINE = re.compile(r"bench sim listening on \S+ \((?:[^()]*?, )?gpu ([^,()]+?) (\d+(?:\.\d+)?) GiB")


def gpu_capacity(view: RunView) -> tuple[float, str] | None:
    """(bytes, label) of the GPU the server had: NVML's device total, else what a managed or embedded
    `bench sim` announced in its server log (its simulated card); None when neither is known."""
    gpu = view.run.gpu
    if gpu is not None and len(gpu) and "mem_total_bytes" in gpu and gpu["mem_total_bytes"].notna().any():
        return float(gpu["mem_total_bytes"].max()), "GPU memory (NVML)"
    for server in view.manifest.servers:
        log = view.run.path / str(server.log or "")
        if not server.log or not log.is_file():
            continue
        with log.open(encoding="utf-8", errors="replace") as text:
            match = _SIM_GPU_LINE.search(text.readline())
        if match:
            return float(match.group(2)) * 2**30, f"simulated {match.group(1)}: {float(match.group(2)):g} GiB"
    return None


def server_spans(view: RunView, setting: str = "OLLAMA_NUM_PARALLEL") -> list[tuple[float, float, str]]:
    """(start s, end s, `NP=4`) per server of the run, from its cells' requests: when each server
    setting was live, for labelling timelines."""
    requests = view.requests
    if requests.empty or setting not in view.cells or "sent_s" not in requests:
        return []
    server_of = {c.cell_id: c.server_id for c in view.manifest.cells}
    settings_of = view.manifest.cell_settings()
    spans: list[tuple[float, float, str]] = []
    frame = requests.assign(server_id=requests["cell_id"].map(server_of))
    for server_id, group in frame.groupby("server_id", sort=False):
        cell_ids = group["cell_id"].unique()
        values = {settings_of[c].row().get(setting) for c in cell_ids if c in settings_of} - {None}
        if len(values) != 1:
            continue
        start, end = float(group["sent_s"].min()), float(group["end_s"].max())
        if math.isfinite(start) and math.isfinite(end):
            spans.append((start, end, plan.describe_cell({setting: values.pop()}, (setting,))))
    return sorted(spans)


def shared_time_range(views: list[RunView]) -> tuple[float, float] | None:
    """One time axis for the per-run panels of a comparison: 0 to the latest sample of any run
    (requests, /api/ps, NVML, process memory), so the runs' panels read side by side. None for one run."""
    if len(views) < 2:
        return None
    latest = 0.0
    for view in views:
        frames = [(view.requests, "end_s"), (view.requests, "sent_s"), (view.run.ps, "t_s"), (view.run.gpu, "t_s"),
                  (getattr(view.run, "proc", None), "t_s")]
        for frame, column in frames:
            if frame is not None and len(frame) and column in frame:
                values = pd.to_numeric(frame[column], errors="coerce")
                if values.notna().any():
                    latest = max(latest, float(values.max()))
    return (0.0, latest * 1.02) if latest > 0 else None

