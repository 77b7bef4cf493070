"""The measured KV fit (kv-analyze): bytes per token of context from memory measured in a run.

Pure functions, except `write_kv_analysis` (writes kv.json).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.analysis.kv_formulas import kv_bytes_per_token, rule_of_thumb_bytes_per_token
from bench.analysis.kv_model import ModelArch
from bench.errors import TargetError
from bench.records.cell_settings import CellSettings
from bench.records.manifest import Manifest
from bench.records import KV_JSON, Run, write_json


# --- The measured fit --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinearFit:
    """bytes = fixed_bytes + bytes_per_token × ctx_total, by least squares."""

    fixed_bytes: float
    bytes_per_token: float
    bytes_per_token_ci95: tuple[float, float] | None  # None with fewer than 3 points
    r_squared: float | None
    points: int

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        ci = payload["bytes_per_token_ci95"]
        payload["bytes_per_token_ci95"] = None if ci is None else list(ci)
        return payload


def automatic_batch_tier(ctx_total: float) -> int:
    """The -b/-ub Ollama v0.33 picks for num_ctx × NUM_PARALLEL when num_batch is unset
    (server/sched.go generationBatchForContext): llama-server's compute buffer steps with it."""
    return 2048 if ctx_total > 32768 else 1024 if ctx_total > 4096 else 512


def fit_bytes_per_token(ctx_totals: Any, memory_bytes: Any, batch_tiers: Any = None,
                        mask_cells: Any = None) -> LinearFit | None:
    """Least-squares line through (ctx_total, bytes) with a 95% CI on the slope; None if < 2 distinct x.

    Two llama-server effects are kept out of the per-token slope when the points allow it:
    `batch_tiers` (one label per point) gives each automatic-batch tier its own intercept (the
    compute buffer steps with -ub), and `mask_cells` (-ub × per-slot num_ctx per point) takes the
    attention mask, which grows with the per-slot context, as its own term. A term the points
    cannot separate from the slope (e.g. one NUM_PARALLEL only) is left out. The fixed part
    reported is the smallest tier's.
    """
    x = np.asarray(ctx_totals, dtype=float)
    y = np.asarray(memory_bytes, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(np.unique(x)) < 2:
        return None
    tiers = np.asarray(batch_tiers)[keep] if batch_tiers is not None else np.zeros(len(x))
    mask = np.asarray(mask_cells, dtype=float)[keep] if mask_cells is not None else None
    if len(np.unique(tiers)) == 1 and mask is None:
        from scipy import stats  # here: every `bench run` imports this module, few runs fit KV

        result = stats.linregress(x, y)
        ci: tuple[float, float] | None = None
        if len(x) >= 3:
            half_width = float(stats.t.ppf(0.975, len(x) - 2) * result.stderr)
            ci = (float(result.slope) - half_width, float(result.slope) + half_width)
        r_squared = float(result.rvalue**2) if math.isfinite(result.rvalue) else None
        return LinearFit(float(result.intercept), float(result.slope), ci, r_squared, len(x))
    if mask is not None:
        fit = _fit_with_tier_intercepts(x, y, tiers, mask)
        if fit is not None:
            return fit
    return _fit_with_tier_intercepts(x, y, tiers, None)


def _fit_with_tier_intercepts(x: Any, y: Any, tiers: Any, mask: Any) -> LinearFit | None:
    labels = sorted(np.unique(tiers))
    within = [len(np.unique(x[tiers == label])) for label in labels]
    if max(within) < 2:
        return None  # no tier varies its context: the slope is not identified
    columns = [x] + ([mask] if mask is not None else []) + [(tiers == label).astype(float) for label in labels]
    design = np.column_stack(columns)
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < design.shape[1]:
        return None
    residuals = y - design @ coef
    dof = len(x) - design.shape[1]
    ci: tuple[float, float] | None = None
    if dof > 0:
        from scipy import stats

        sigma2 = float(residuals @ residuals) / dof
        slope_se = math.sqrt(max(0.0, sigma2 * np.linalg.inv(design.T @ design)[0, 0]))
        half_width = float(stats.t.ppf(0.975, dof) * slope_se)
        ci = (float(coef[0]) - half_width, float(coef[0]) + half_width)
    total = float(((y - y.mean()) ** 2).sum())
    r_squared = 1 - float(residuals @ residuals) / total if total > 0 else None
    first_tier = 1 + (mask is not None)
    return LinearFit(float(coef[first_tier]), float(coef[0]), ci, r_squared, len(x))


# --- KV analysis of a run (kv.json) ------------------------------------------------------------

KV_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class KvPoint:
    """One cell's steady-state memory at its context size."""

    cell_id: str
    model: str
    cache_type: str
    num_ctx: int
    num_parallel: int
    ctx_total: int
    ollama_ps_bytes: float | None  # median /api/ps size while the cell ran (Ollama's estimate)
    nvml_bytes: float | None  # median NVML memory while the cell ran (measured)
    nvml_source: str | None  # "server_process" (managed server's PIDs) or "device_used"
    process_rss_bytes: float | None = None  # median RSS of the managed server's engine processes
    process_source: str | None = None  # "engine_rss" (llama-server processes) or "tree_rss"
    logged_kv_bytes: float | None = None  # KV buffers llama-server logged for this runner (real Ollama's log)


def _model_key(name: str) -> str:
    # Ollama reports "llama3" as "llama3:latest" in /api/ps.
    return name if ":" in name else f"{name}:latest"


def _server_int(settings: CellSettings, name: str) -> int | None:
    """A whole-number server variable of the cell (OLLAMA_NUM_PARALLEL), None when unset or not one."""
    value = settings.server_setting(name)
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def _steady_window(start_s: float, end_s: float) -> tuple[float, float]:
    # The first half of a cell may still show the previous runner or the load ramp.
    return start_s + (end_s - start_s) / 2, end_s


def _ps_bytes(
    ps: Any, model: str, window_s: tuple[float, float, float], ctx_totals: set[int]
) -> float | None:
    """Median /api/ps size of the cell's runner; window_s = (start, last request end, next cell start)."""
    if ps is None or len(ps) == 0:
        return None
    start_s, end_s, until_s = window_s
    named = ps[ps["name"].notna()]
    named = named[named["name"].map(_model_key) == _model_key(model)]
    steady_from, _ = _steady_window(start_s, end_s)
    # Where /api/ps reports the runner's context (num_ctx, or num_ctx × NUM_PARALLEL depending on
    # the version), it tells this cell's runner from the previous one still unloading.
    if "context_length" in named and named["context_length"].notna().any():
        matching = named[(named["t_s"] >= start_s) & (named["t_s"] <= until_s)]
        matching = matching[matching["context_length"].isin(list(ctx_totals))]
        steady_matching = matching[(matching["t_s"] >= steady_from) & (matching["t_s"] <= end_s)]
        chosen = steady_matching if len(steady_matching) else matching
        if len(chosen):
            return float(chosen["size_bytes"].median())
    steady = named[(named["t_s"] >= steady_from) & (named["t_s"] <= end_s)]
    return float(steady["size_bytes"].median()) if len(steady) else None


def _nvml_bytes(gpu: Any, start_s: float, end_s: float) -> tuple[float | None, str | None]:
    if gpu is None or len(gpu) == 0:
        return None, None
    steady_from, _ = _steady_window(start_s, end_s)
    steady = gpu[(gpu["t_s"] >= steady_from) & (gpu["t_s"] <= end_s)]
    if len(steady) == 0:
        return None, None
    if steady["server_proc_mem_bytes"].notna().any():
        column, source = "server_proc_mem_bytes", "server_process"
    else:
        column, source = "mem_used_bytes", "device_used"
    per_sample = steady.groupby("t_s")[column].sum(min_count=1)  # summed over devices
    return float(per_sample.median()), source


def _process_bytes(proc: Any, start_s: float, end_s: float) -> tuple[float | None, str | None]:
    """Median RSS while the cell ran: of llama-server processes if any ran, else the whole tree."""
    if proc is None or len(proc) == 0:
        return None, None
    steady_from, _ = _steady_window(start_s, end_s)
    steady = proc[(proc["t_s"] >= steady_from) & (proc["t_s"] <= end_s)]
    if len(steady) == 0:
        return None, None
    if (steady["engine_rss_bytes"] > 0).any():
        return float(steady["engine_rss_bytes"].median()), "engine_rss"
    return float(steady["rss_bytes"].median()), "tree_rss"


def _logged_kv_bytes(run: Run, cell_id: str, ctx_total: int) -> int | None:
    """The KV buffer llama-server logged for this cell's runner, as a real `ollama serve` target
    recorded it from its log (bench.ollama.serve.logged_kv_bytes); None for other servers."""
    server_id = next((cell.server_id for cell in run.manifest.cells if cell.cell_id == cell_id), None)
    server = next((s for s in run.manifest.servers if s.server_id == server_id), None)
    return None if server is None else server.logged_kv_bytes.get(str(ctx_total))


def kv_points(run: Run) -> tuple[list[KvPoint], list[str]]:
    """One point per cell of a loaded run that has a context size; plus notes."""
    notes: list[str] = []
    points: list[KvPoint] = []
    requests = run.requests
    if len(run.cells) == 0 or len(requests) == 0:
        return points, ["no cells with requests: nothing to fit"]
    ends = requests["end_s"].fillna(requests["sent_s"])
    windows = (
        requests.assign(_end=ends).groupby("cell_id").agg(start_s=("sent_s", "min"), end_s=("_end", "max"))
    ).sort_values("start_s")
    # A cell's runner stays loaded after its last request until the next cell's first request
    # reloads it (pace gap, idle time), so samples up to the next cell's start still describe it.
    # That matters for short cells (the simulator at high speed) that a 4 Hz poller may straddle.
    # Only /api/ps rows that name this runner's context use that extension: NVML and unlabelled
    # rows could be a stopping server's or the next runner's, so they keep the cell's own window.
    windows["until_s"] = windows["start_s"].shift(-1).fillna(math.inf).clip(lower=windows["end_s"])
    unmeasured = 0
    for cell_id, settings in run.manifest.cell_settings().items():
        num_ctx = settings.num_ctx if settings.num_ctx is not None else _server_int(settings, "OLLAMA_CONTEXT_LENGTH")
        if cell_id not in windows.index:
            unmeasured += 1  # skipped by a pruned study, or never reached: one note for all of them
            continue
        if num_ctx is None or settings.model is None:
            notes.append(f"cell {cell_id}: no num_ctx; left out of the fit")
            continue
        window = tuple(float(v) for v in windows.loc[cell_id, ["start_s", "end_s", "until_s"]])
        points.append(_point(run, cell_id, settings, num_ctx, window))
    if unmeasured:
        notes.append(f"{unmeasured} cell(s) without measured requests (skipped or not reached): left out of the fit")
    return points, notes


def _point(run: Run, cell_id: str, settings: CellSettings, num_ctx: int, window: tuple[float, ...]) -> KvPoint:
    """One cell's point: its memory by every source over its window (start, last end, next start)."""
    start_s, end_s, until_s = window
    num_parallel = _server_int(settings, "OLLAMA_NUM_PARALLEL") or 1
    model = str(settings.model)
    ctx_total = num_ctx * num_parallel
    nvml_bytes, nvml_source = _nvml_bytes(run.gpu, start_s, end_s)
    process_bytes, process_source = _process_bytes(getattr(run, "proc", None), start_s, end_s)
    return KvPoint(
        cell_id=cell_id, model=model, cache_type=settings.server_setting("OLLAMA_KV_CACHE_TYPE") or "f16",
        num_ctx=num_ctx, num_parallel=num_parallel, ctx_total=ctx_total,
        ollama_ps_bytes=_ps_bytes(run.ps, model, (start_s, end_s, until_s), {ctx_total, num_ctx}),
        nvml_bytes=nvml_bytes, nvml_source=nvml_source, process_rss_bytes=process_bytes, process_source=process_source,
        logged_kv_bytes=_logged_kv_bytes(run, cell_id, ctx_total),
    )


def _ratio(estimate: float | None, measured: float | None) -> float | None:
    return None if estimate is None or not measured else estimate / measured


def _arch_for(manifest: Manifest, model: str) -> ModelArch | None:
    shown = manifest.models.get(model) or {}
    model_info = shown.get("model_info")
    if not model_info:
        return None
    try:
        return ModelArch.from_model_info(model_info, source=f"manifest models[{model}]")
    except TargetError:
        return None


def analyze_group(points: list[KvPoint], arch: ModelArch | None, cache_type: str) -> dict[str, Any]:
    """Estimates, fits and ratios for one (model, cache type): one entry of kv.json `groups`."""
    ctx_totals = [p.ctx_total for p in points]
    tiers = [automatic_batch_tier(total) for total in ctx_totals]
    # llama-server's attention mask: -ub × per-slot num_ctx cells (v0.33 automatic batch).
    mask_cells = [automatic_batch_tier(p.ctx_total) * p.num_ctx for p in points]
    ps_fit = fit_bytes_per_token(ctx_totals, [p.ollama_ps_bytes if p.ollama_ps_bytes is not None else math.nan for p in points], tiers, mask_cells)
    nvml_fit = fit_bytes_per_token(ctx_totals, [p.nvml_bytes if p.nvml_bytes is not None else math.nan for p in points], tiers, mask_cells)
    process_fit = fit_bytes_per_token(
        ctx_totals, [p.process_rss_bytes if p.process_rss_bytes is not None else math.nan for p in points], tiers,
        mask_cells,
    )
    # The KV buffers llama-server logged hold the cache alone: a plain line, no compute-buffer terms.
    logged_fit = fit_bytes_per_token(
        ctx_totals, [p.logged_kv_bytes if p.logged_kv_bytes is not None else math.nan for p in points])
    # NVML of the server's processes measures device memory; an engine on the CPU (no device
    # memory at all) leaves it at zero, and then the engine processes' RSS is the real memory.
    # The RSS of a server without llama-server children (the simulated engine) measures no KV.
    nvml_measures = nvml_fit is not None and any(p.nvml_bytes for p in points)
    engine_measured = any(p.process_source == "engine_rss" for p in points)
    if not engine_measured:
        # The whole tree's RSS without llama-server children is the Python simulator's heap: no KV
        # cache lives there, so its flat line is not a measurement of one (never drawn as such).
        process_fit = None
        points = [replace(p, process_rss_bytes=None, process_source=None) for p in points]
    measured_source: str | None
    if nvml_measures:
        measured_fit, measured_source = nvml_fit, "nvml"
    elif process_fit is not None and engine_measured:
        measured_fit, measured_source = process_fit, "process_rss"
    else:
        measured_fit, measured_source = ps_fit, "ollama_ps" if ps_fit else None
    measured = measured_fit.bytes_per_token if measured_fit else None
    per_token: dict[str, float | None] = {
        "rule_of_thumb": float(rule_of_thumb_bytes_per_token(arch)) if arch else None,
        "exact": kv_bytes_per_token(arch, cache_type) if arch else None,
        "exact_stored": kv_bytes_per_token(arch, cache_type, stored=True) if arch else None,
        "ollama_ps": ps_fit.bytes_per_token if ps_fit else None,
        "nvml": nvml_fit.bytes_per_token if nvml_fit else None,
        "process_rss": process_fit.bytes_per_token if process_fit else None,
        "logged_kv": logged_fit.bytes_per_token if logged_fit else None,
    }
    return {
        "model": points[0].model,
        "cache_type": cache_type,
        "arch": asdict(arch) if arch else None,
        "points": [asdict(p) for p in points],
        "fits": {
            "ollama_ps": ps_fit.to_json() if ps_fit else None,
            "nvml": nvml_fit.to_json() if nvml_fit else None,
            "process_rss": process_fit.to_json() if process_fit else None,
            "logged_kv": logged_fit.to_json() if logged_fit else None,
        },
        "nvml_source": next((p.nvml_source for p in points if p.nvml_source), None),
        "process_source": next((p.process_source for p in points if p.process_source), None),
        "bytes_per_token": per_token,
        "measured_source": measured_source,
        "ratio_to_measured": {
            # /api/ps against itself is 1.00 by construction: no ratio when it is the measured source.
            name: None if name == measured_source else _ratio(value, measured)
            for name, value in per_token.items()
            if name in ("rule_of_thumb", "exact", "exact_stored", "ollama_ps", "logged_kv")
        },
        "measurement_note": None if nvml_measures or engine_measured else (
            "no KV measurement: no NVML reading of the server and no llama-server process (the simulated "
            "engine holds no KV cache); the figures are /api/ps's estimate and the formulas"),
    }


def analyze_run(run: Run) -> dict[str, Any]:
    """The kv.json payload for a loaded run: one group per (model, cache type) with ≥ 2 context sizes."""
    points, notes = kv_points(run)
    groups: list[dict[str, Any]] = []
    keys = sorted({(p.model, p.cache_type) for p in points})
    for model, cache_type in keys:
        group_points = [p for p in points if (p.model, p.cache_type) == (model, cache_type)]
        if len({p.ctx_total for p in group_points}) < 2:
            notes.append(f"{model} {cache_type}: one context size only; no fit")
        groups.append(analyze_group(group_points, _arch_for(run.manifest, model), cache_type))
    return {
        "schema_version": KV_SCHEMA_VERSION,
        "run_id": run.manifest.run_id,
        "groups": groups,
        "notes": notes,
    }


def write_kv_analysis(run: Run) -> Path | None:
    """Analyse a finished run (loaded back) and write kv.json when some model has ≥ 2 context sizes.

    For the runner's end of run: a run that never varied num_ctx / NUM_PARALLEL gets no kv.json.
    """
    payload = analyze_run(run)
    if not any(any(group["fits"].values()) for group in payload["groups"]):
        return None
    path = run.path / KV_JSON
    write_json(path, payload)
    return path
