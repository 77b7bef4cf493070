"""One run analysed once: its requests with derived metrics, the per-cell summary, the SLOs its
verdicts use, the NUM_PARALLEL recommendation (stored or computed), where closed loops saturated,
which cells' models fit in GPU memory and each saturation sweep's answer. The terminal summary, the summary files, the report,
the recommendation printed after a run and the gate of `bench run --baseline` all draw from this
value; they format it and compute nothing of their own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.analysis.baseline import Baseline, baseline_of
from bench.analysis.metrics import PERCENTILES, cell_summary, request_metrics
from bench.analysis.model_loads import Load, loads_from_ps, truncated_prompts
from bench.analysis.ollama_semantics import Semantics, semantics_for
from bench.analysis.gpu_fit import memory_fits
from bench.analysis.recommend import (SETTING, Candidate, Recommendation, Slo, is_num_parallel_sweep, parse_slo,
                                      recommend, scenario_slos)
from bench.analysis.saturation import Saturation, run_saturations
from bench.analysis.sweep import SweepResult, run_sweeps
from bench.errors import BenchError
from bench.records import RECOMMENDATION_JSON, Run, number_or_none
from bench.records.manifest import Manifest


@dataclass(frozen=True)
class RunAnalysis:
    """Everything the outputs show of one run, computed once from the loaded run."""

    run: Run
    requests: pd.DataFrame  # every record, with bench.analysis.metrics.request_metrics columns
    measured: pd.DataFrame  # the measure phase of `requests`
    summary: pd.DataFrame  # cell_summary of `measured` (index cell_id), the scenario's percentiles and SLOs
    percentiles: tuple[float, ...]  # the scenario's (p50/p90/p95/p99 when it chose none)
    slos: tuple[Slo, ...]  # every verdict's SLOs: recommendation.json's, else the scenario's; () if unreadable
    recommendation: Recommendation | None  # None: not a NUM_PARALLEL sweep, or none could be made
    recommendation_stored: bool  # from recommendation.json (`bench recommend --write`), not computed here
    recommendation_error: str | None  # why a NUM_PARALLEL sweep has no recommendation
    semantics: Semantics  # how the target's Ollama version reads /api/ps
    model_loads: tuple[Load, ...]  # every load /api/ps showed, with the context each runner really had
    truncated_prompts: dict[str, tuple[float, float]]  # cell_id → (prompt tokens sent, median counted)
    saturations: tuple[Saturation, ...]  # closed-loop series whose throughput went flat while TTFT climbed
    gpu_fit: Mapping[str, bool | None]  # cell_id → whether /api/ps showed its model wholly on the GPU
    sweeps: tuple[SweepResult, ...]  # each saturation sweep's capacity, knee and highest load within SLOs

    @property
    def manifest(self) -> Manifest:
        return self.run.manifest

    @functools.cached_property
    def baseline(self) -> Baseline:
        """The run as `bench compare` reads it (per-cell samples, per-repeat figures): made on first
        use, once, for a comparison's gates; RunDirError when nothing was measured."""
        return baseline_of(self.run)


def scenario_percentiles(manifest: Manifest) -> tuple[float, ...]:
    """The percentiles the run's scenario chose (p50/p90/p95/p99 when it chose none)."""
    chosen = manifest.scenario.get("percentiles")
    try:
        return tuple(float(p) for p in chosen) if chosen else tuple(float(p) for p in PERCENTILES)
    except (TypeError, ValueError):
        return tuple(float(p) for p in PERCENTILES)


def analyse_run(run: Run, summary: pd.DataFrame | None = None) -> RunAnalysis:
    """The run's analysis. `summary`: the cell_summary the caller already has of this run's
    measured records (the end of `bench run` computes it from fewer columns), so it is not redone."""
    requests = request_metrics(run.requests) if len(run.requests) else run.requests
    measured = requests
    if len(requests) and "phase" in requests:
        measured = requests[requests["phase"].fillna("measure") == "measure"]
    percentiles = scenario_percentiles(run.manifest)
    stored = run.extras.get(RECOMMENDATION_JSON)
    slos = _slos(run.manifest, stored)
    if summary is None:
        summary = _summary(measured, run.manifest, percentiles)
    recommendation, error = None, None
    if isinstance(stored, dict):
        recommendation = stored_recommendation(stored, run.manifest.target.speed_basis)
    elif is_num_parallel_sweep(run):
        try:
            recommendation = recommend(run, slos, summary=summary)
        except BenchError as problem:
            error = str(problem)
    semantics = semantics_for(run.manifest.target.version)
    loads = loads_from_ps(run.ps, semantics, training_contexts(run.manifest)) if run.ps is not None else []
    return RunAnalysis(run, requests, measured, summary, percentiles, slos, recommendation,
                       isinstance(stored, dict), error, semantics, tuple(loads),
                       truncated_prompts(measured, _intended_prompt_tokens(run)),
                       run_saturations(run.manifest, summary), memory_fits(run), run_sweeps(run.manifest, summary))


def run_summary(run: Run) -> pd.DataFrame:
    """The run's cell_summary as analyse_run and summary.csv have it (measured requests, the
    scenario's percentiles, goodput against its SLOs): for a caller that needs only the summary
    first (`bench recommend`) and hands it to analyse_run after."""
    return _summary(run.requests, run.manifest, scenario_percentiles(run.manifest))


def training_contexts(manifest: Manifest) -> dict[str, int]:
    """Each model's training context (/api/show's `<arch>.context_length`), under its name as given
    and as /api/ps lists it (`:latest` added)."""
    contexts: dict[str, int] = {}
    for name, shown in manifest.models.items():
        info = (shown or {}).get("model_info") or {}
        arch = info.get("general.architecture")
        value = info.get(f"{arch}.context_length") if arch else None
        if isinstance(value, int):
            contexts[str(name)] = value
            contexts[str(name) if ":" in str(name) else f"{name}:latest"] = value
    return contexts


def _intended_prompt_tokens(run: Run) -> dict[str, float]:
    """Each cell's prompt length as planned, read from the typed settings (None: prompts from a file)."""
    return {cell_id: float(settings.prompt_tokens) for cell_id, settings in run.manifest.cell_settings().items()
            if settings.prompt_tokens is not None}


def _summary(measured: pd.DataFrame, manifest: Manifest, percentiles: tuple[float, ...]) -> pd.DataFrame:
    """cell_summary with goodput against the scenario's SLOs, as summary.csv has it."""
    try:
        goals = {slo.metric: slo.threshold for slo in scenario_slos(manifest)} or None
        return cell_summary(measured, slos=goals, percentiles=percentiles)
    except BenchError:  # a hand-edited SLO bench cannot read: the figures without goodput
        return cell_summary(measured, percentiles=percentiles)


def _slos(manifest: Manifest, stored: Any) -> tuple[Slo, ...]:
    """The SLOs `bench recommend --write` stored, else the scenario's (one source, so the answer and
    the per-cell SLO column cannot disagree); () for a hand-edited SLO bench cannot read."""
    try:
        if isinstance(stored, dict) and isinstance(stored.get("slos"), dict):
            return _parsed_slos(stored["slos"])
        return scenario_slos(manifest)
    except BenchError:
        return ()


def _parsed_slos(declared: Mapping[str, Any]) -> tuple[Slo, ...]:
    return tuple(parse_slo(f"{metric}={threshold}") for metric, threshold in declared.items()
                 if threshold is not None)


def stored_recommendation(payload: Mapping[str, Any], speed_basis: str | None = None) -> Recommendation:
    """recommendation.json (docs/sizing.md) read back as a Recommendation; a field it lacks (an
    older or hand-edited file) reads as unknown rather than failing the report."""
    try:
        slos = _parsed_slos(payload.get("slos") or {})
    except BenchError:
        slos = ()
    candidates = tuple(_candidate(c) for c in payload.get("candidates") or [] if isinstance(c, Mapping))
    return Recommendation(
        num_parallel=_int(payload.get("num_parallel")), cell_id=_text(payload.get("cell_id")),
        concurrency=_int(payload.get("concurrency")), output_tps=number_or_none(payload.get("output_tps")),
        runner_up=_int((payload.get("runner_up") or {}).get("num_parallel"))
        if isinstance(payload.get("runner_up"), Mapping) else None,
        slos=slos, min_user_tps=number_or_none(payload.get("min_user_tps")),
        memory_checked=bool(payload.get("memory_checked")), candidates=candidates,
        verdict=str(payload.get("verdict") or "no verdict recorded"),
        provisional=bool(payload.get("provisional")), tie_with=_int(payload.get("tie_with")),
        samples=payload.get("samples") if isinstance(payload.get("samples"), dict) else None,
        speed_basis=_text(payload.get("speed_basis")) or speed_basis,
    )


def _candidate(stored: Mapping[str, Any]) -> Candidate:
    fits = stored.get("fits_in_gpu")
    outcome = stored.get("outcome")
    return Candidate(
        num_parallel=_int(stored.get("num_parallel")) or 0, cell_id=_text(stored.get("cell_id")),
        concurrency=_int(stored.get("concurrency")), output_tps=_float(stored.get("output_tps")),
        ttft_p95_s=_float(stored.get("ttft_p95_s")), tpot_p95_s=_float(stored.get("tpot_p95_s")),
        user_tps_p50=_float(stored.get("user_tps_p50")), fits_in_gpu=fits if isinstance(fits, bool) else None,
        size_bytes=_int(stored.get("size_bytes")), size_vram_bytes=_int(stored.get("size_vram_bytes")),
        outcome=outcome if outcome in ("chosen", "runner-up") else "lost", reason=str(stored.get("reason") or ""),
        missed=str(stored.get("missed") or ""),
    )


def _float(value: Any) -> float:
    number = number_or_none(value)
    return math.nan if number is None else number


def _int(value: Any) -> int | None:
    number = number_or_none(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


__all__ = ["SETTING", "RunAnalysis", "analyse_run", "run_summary", "scenario_percentiles", "stored_recommendation"]
