"""The OLLAMA_NUM_PARALLEL recommendation from a sweep: the most throughput that meets the SLOs and
fits in GPU memory, the runner-up, and why every other setting lost.

Pure analysis on a loaded run; bench.cli.recommend_cmd prints it and stores recommendation.json.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd

from bench.errors import UsageError
from bench.analysis.gpu_fit import memory_fit
from bench.analysis.metrics import cell_summary, higher_is_better, parse_metric_name
from bench.analysis.recommend_basis import TIE_FRACTION, SampleBasis
from bench.records.manifest import Manifest
from bench.records import Run, missing_as_none
from bench.scenario import seconds_of
from bench import numbers as fmt
from bench.numbers import gib

SETTING = "OLLAMA_NUM_PARALLEL"

Outcome = Literal["chosen", "runner-up", "lost"]


@dataclass(frozen=True)
class Slo:
    """One service-level objective: `metric` (user name) bounded by `threshold` (seconds or rate)."""

    metric: str
    column: str  # the cell_summary column
    threshold: float
    higher_is_better: bool

    def met_by(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def describe(self) -> str:
        return f"{self.metric} {'≥' if self.higher_is_better else '≤'} {_format_value(self.column, self.threshold)}"


def parse_duration_s(text: str) -> float:
    """`2s`, `100ms`, `1.5` (seconds), `1m` → seconds; UsageError otherwise."""
    try:
        return seconds_of(str(text))
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_slo(text: str) -> Slo:
    """`ttft_p95=2s` → Slo; unknown metric or malformed value → UsageError (one line)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise UsageError(f"--slo {text!r}: expected METRIC=VALUE, e.g. ttft_p95=2s")
    column = parse_metric_name(name.strip())
    try:
        threshold = parse_duration_s(value) if column.endswith("_s") else float(value)
    except (UsageError, ValueError):
        raise UsageError(f"--slo {text!r}: {value.strip()!r} is not a number or a duration like 2s, 100ms") from None
    return Slo(name.strip(), column, threshold, higher_is_better(column))


def declared_slos(declared: Mapping[str, Any]) -> tuple[Slo, ...]:
    """A scenario's `slos:` mapping, parsed like --slo."""
    return tuple(parse_slo(f"{metric}={value}") for metric, value in declared.items())


def scenario_slos(manifest: Manifest) -> tuple[Slo, ...]:
    """The SLOs the run's scenario declared (`slos:`), parsed like --slo."""
    return declared_slos(manifest.scenario.get("slos") or {})


def num_parallel_of(run: Run) -> dict[str, int]:
    """cell_id -> the OLLAMA_NUM_PARALLEL the cell's server ran with, for the cells that set it."""
    values = {cell_id: settings.server_setting(SETTING) for cell_id, settings in run.manifest.cell_settings().items()}
    return {cell_id: int(value) for cell_id, value in values.items() if value is not None and value.isdigit()}


def is_num_parallel_sweep(run: Run) -> bool:
    """Whether the run's cells set more than one OLLAMA_NUM_PARALLEL value."""
    return len(set(num_parallel_of(run).values())) > 1


def _format_value(column: str, value: float | None) -> str:
    """A summary figure in a one-line reason: durations '512ms'/'1.50s', rates 3 figures, else 1 decimal."""
    if column.endswith("_s"):
        return fmt.compact_seconds(value)
    if "rate" in column:
        return fmt.significant(value, 3, missing=fmt.NOT_AVAILABLE)
    return fmt.figure(value, 1, missing=fmt.NOT_AVAILABLE)


@dataclass(frozen=True)
class Candidate:
    """The best cell of one NUM_PARALLEL value, and how it fared."""

    num_parallel: int
    cell_id: str | None  # best cell meeting the SLOs (None: no cell did)
    concurrency: int | None
    output_tps: float
    ttft_p95_s: float
    tpot_p95_s: float
    user_tps_p50: float
    fits_in_gpu: bool | None  # None: no /api/ps data
    size_bytes: int | None
    size_vram_bytes: int | None
    outcome: Outcome
    reason: str
    missed: str = ""  # why a faster cell of this setting was not taken ('' when none was faster)


@dataclass(frozen=True)
class Recommendation:
    num_parallel: int | None
    cell_id: str | None
    concurrency: int | None
    output_tps: float | None
    runner_up: int | None
    slos: tuple[Slo, ...]
    min_user_tps: float | None
    memory_checked: bool
    candidates: tuple[Candidate, ...]
    verdict: str
    provisional: bool = False  # the chosen or runner-up cell has fewer requests than the SLOs' percentiles need
    tie_with: int | None = None  # the runner-up when the two cannot be told apart (intervals overlap)
    samples: dict[str, Any] | None = None  # n and output tok/s interval of the chosen and runner-up cells
    speed_basis: str | None = None  # a simulated target: what its speed rests on (manifest target)

    @property
    def basis_line(self) -> str | None:
        """"Speed basis: ..." for answers measured on bench sim; None on a real server."""
        return f"Speed basis (bench sim): {self.speed_basis}." if self.speed_basis else None

    def to_json(self) -> dict[str, Any]:
        """recommendation.json (schema in docs/sizing.md)."""
        runner_up = next((c for c in self.candidates if c.outcome == "runner-up"), None)
        return {
            "setting": SETTING,
            "num_parallel": self.num_parallel,
            "cell_id": self.cell_id,
            "concurrency": self.concurrency,
            "output_tps": missing_as_none(self.output_tps),
            "runner_up": None if runner_up is None else {
                "num_parallel": runner_up.num_parallel, "cell_id": runner_up.cell_id,
                "output_tps": missing_as_none(runner_up.output_tps), "reason": runner_up.reason,
            },
            "slos": {slo.metric: slo.threshold for slo in self.slos},
            "min_user_tps": self.min_user_tps,
            "memory_checked": self.memory_checked,
            "verdict": self.verdict,
            "provisional": self.provisional,
            "tie_with": self.tie_with,
            "samples": self.samples,
            "speed_basis": self.speed_basis,
            "candidates": [
                {key: missing_as_none(value) for key, value in asdict(candidate).items()}
                for candidate in self.candidates
            ],
        }


def slo_failures(row: pd.Series | dict[str, Any], slos: tuple[Slo, ...], min_user_tps: float | None = None) -> list[str]:
    """What one cell_summary row misses, one phrase per SLO ('ttft_p95 1.20s (SLO 500ms)'); [] = meets all."""
    failures = [f"{slo.metric} {_format_value(slo.column, row.get(slo.column))} (SLO {_format_value(slo.column, slo.threshold)})"
                for slo in slos if not slo.met_by(float(row.get(slo.column, math.nan)))]
    if min_user_tps is not None and not float(row.get("user_tps_p50", math.nan)) >= min_user_tps:
        failures.append(f"user tok/s p50 {_format_value('user_tps_p50', row.get('user_tps_p50'))} "
                        f"(min {min_user_tps:g})")
    if not row.get("ok", 0) > 0:
        failures.append("no successful request")
    return failures


def slo_verdict(row: pd.Series | dict[str, Any], slos: tuple[Slo, ...]) -> str:
    """`met` / `misses ttft_p95 1.2s (SLO 500ms)`, with `(n=16: too few for ttft_p95)` when a
    percentile SLO was judged on fewer requests than bench.analysis.samples asks for."""
    from bench.analysis.samples import min_samples_for

    failures = slo_failures(row, slos)
    text = "met" if not failures else "misses " + "; ".join(failures)
    ok = int(row.get("ok", 0) or 0)
    thin = [slo.metric for slo in slos if 0 < ok < min_samples_for(slo.metric)]
    return text + (f" (n={ok}: too few for {', '.join(thin)})" if thin else "")


def _candidate(run: Run, num_parallel: int, cells: pd.DataFrame, slos: tuple[Slo, ...],
               min_user_tps: float | None) -> Candidate:
    failures = {cell_id: slo_failures(row, slos, min_user_tps) for cell_id, row in cells.iterrows()}
    meeting = cells[[not failures[cell_id] for cell_id in cells.index]]
    fits, size, vram = memory_fit(run, list(cells.index), set(cells["model"].dropna().astype(str)))
    if len(meeting):
        best = meeting.loc[meeting["output_tps"].idxmax()]
        reason = ""
        # The cell a person looks at first is the fastest one; say why it was not taken.
        faster = cells[cells["output_tps"] > (1 + TIE_FRACTION) * float(best["output_tps"])]
        if len(faster):
            # The nearest miss (fewest SLOs missed, then most throughput) is the one worth naming.
            top = min((row for _, row in faster.iterrows()),
                      key=lambda row: (len(failures[row.name]), -_nan_to(row["output_tps"])))
            missed = (f"concurrency {_int(top.get('concurrency'))} gives {float(top['output_tps']):.1f} tok/s "
                      f"but misses " + ", ".join(failures[top.name]))
        else:
            missed = ""
    else:
        # Explain with the cell that came closest (fewest misses, then most throughput).
        best = min(cells.iterrows(), key=lambda item: (len(failures[item[0]]), -_nan_to(item[1]["output_tps"])))[1]
        reason = f"no cell met the SLOs; closest (concurrency {_int(best.get('concurrency'))}) missed " + ", ".join(
            failures[best.name])
        missed = ""
    return Candidate(
        num_parallel=num_parallel, cell_id=str(best.name) if len(meeting) else None,
        concurrency=_int(best.get("concurrency")), output_tps=float(best["output_tps"]),
        ttft_p95_s=float(best.get("ttft_p95_s", math.nan)), tpot_p95_s=float(best.get("tpot_p95_s", math.nan)),
        user_tps_p50=float(best.get("user_tps_p50", math.nan)), fits_in_gpu=fits, size_bytes=size,
        size_vram_bytes=vram, outcome="lost", reason=reason, missed=missed,
    )


def _int(value: Any) -> int | None:
    value = missing_as_none(value)
    return None if value is None else int(value)


def _nan_to(value: Any, default: float = -1.0) -> float:
    return default if value is None or math.isnan(float(value)) else float(value)


def sweep_cells(run: Run, summary: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-cell summary (`summary`, else computed) joined with the settings of the cells that set
    OLLAMA_NUM_PARALLEL."""
    num_parallel = num_parallel_of(run)
    if not num_parallel:
        raise UsageError(f"{run.path}: not a NUM_PARALLEL sweep (no cell has an {SETTING} setting); "
                         "run a scenario with server.env.OLLAMA_NUM_PARALLEL: [1, 2, 4, 8]")
    if summary is None:
        summary = cell_summary(run.requests)
    settings_of = run.manifest.cell_settings()
    columns = pd.DataFrame.from_dict(
        {cell_id: {"model": settings_of[cell_id].model, "concurrency": settings_of[cell_id].concurrency,
                   "num_parallel": value} for cell_id, value in num_parallel.items()}, orient="index")
    swept = summary.join(columns, how="inner")
    if swept.empty:
        raise UsageError(f"{run.path}: the NUM_PARALLEL sweep has no measured requests")
    return swept


def recommend(run: Run, slos: tuple[Slo, ...] = (), min_user_tps: float | None = None,
              summary: pd.DataFrame | None = None) -> Recommendation:
    """Pick the NUM_PARALLEL with the most output tok/s that meets the SLOs and does not spill to CPU
    (`summary`: the run's cell_summary when the caller has it)."""
    swept = sweep_cells(run, summary)
    candidates = [_candidate(run, int(np_value), cells, slos, min_user_tps)
                  for np_value, cells in swept.groupby("num_parallel", sort=True)]
    candidates = sorted(candidates + _unmeasured(run, {c.num_parallel for c in candidates}),
                        key=lambda c: c.num_parallel)
    eligible = [c for c in candidates if c.cell_id is not None and c.fits_in_gpu is not False]
    ranked = sorted(eligible, key=lambda c: -c.output_tps)
    chosen: Candidate | None = None
    if ranked:
        best_tps = ranked[0].output_tps
        tied = [c for c in ranked if c.output_tps >= (1 - TIE_FRACTION) * best_tps]
        chosen = min(tied, key=lambda c: c.num_parallel)
    others = [c for c in ranked if c is not chosen]
    runner_up = others[0] if others else None
    basis = SampleBasis.of(run, chosen, runner_up, slos)
    if basis.tie and runner_up is not None and chosen is not None and runner_up.num_parallel < chosen.num_parallel:
        # Within the noise of each other: the smaller setting, for its memory.
        chosen, runner_up = runner_up, chosen
        basis = SampleBasis.of(run, chosen, runner_up, slos)
    final = tuple(_with_outcome(c, chosen, runner_up, basis.tie) for c in candidates)
    memory_checked = any(c.fits_in_gpu is not None for c in candidates)
    verdict = _verdict(chosen, runner_up, slos, min_user_tps, memory_checked, final)
    if chosen is not None:
        verdict = basis.framed(verdict, chosen, runner_up)
    return Recommendation(
        num_parallel=chosen.num_parallel if chosen else None, cell_id=chosen.cell_id if chosen else None,
        concurrency=chosen.concurrency if chosen else None, output_tps=chosen.output_tps if chosen else None,
        runner_up=runner_up.num_parallel if runner_up else None, slos=slos, min_user_tps=min_user_tps,
        memory_checked=memory_checked, candidates=final, verdict=verdict,
        provisional=chosen is not None and basis.provisional,
        tie_with=runner_up.num_parallel if basis.tie and runner_up is not None else None,
        samples=basis.to_json() if chosen is not None else None,
        speed_basis=run.manifest.target.speed_basis,
    )


def _unmeasured(run: Run, measured: set[int]) -> list[Candidate]:
    """Settings with no measured request (a pruned study skipped them): listed, with the reason."""
    reasons: dict[int, str] = {}
    for cell in run.manifest.cells:
        value = cell.settings.server_setting(SETTING)
        if value is None or not value.isdigit() or int(value) in measured:
            continue
        reason = f"skipped: {cell.skip_reason}" if cell.skip_reason else "no measured request"
        reasons.setdefault(int(value), reason)
    nan = math.nan
    return [Candidate(num_parallel=value, cell_id=None, concurrency=None, output_tps=nan, ttft_p95_s=nan,
                      tpot_p95_s=nan, user_tps_p50=nan, fits_in_gpu=False if "spilled" in reason else None,
                      size_bytes=None, size_vram_bytes=None, outcome="lost", reason=reason)
            for value, reason in reasons.items()]


def _with_outcome(candidate: Candidate, chosen: Candidate | None, runner_up: Candidate | None,
                  tie: bool = False) -> Candidate:
    outcome: Outcome = "lost"
    reason = candidate.reason
    if candidate is chosen:
        outcome, reason = "chosen", "most output tok/s meeting the SLOs"
        if candidate.fits_in_gpu is None:
            reason += " (GPU fit unknown: no /api/ps data)"
    elif candidate.fits_in_gpu is False and candidate.cell_id is not None:
        spilled = (candidate.size_bytes or 0) - (candidate.size_vram_bytes or 0)
        reason = (f"spills to CPU: size_vram {gib(candidate.size_vram_bytes)} of size {gib(candidate.size_bytes)} "
                  f"({spilled / max(1, candidate.size_bytes or 1):.0%} on CPU)")
    elif candidate.cell_id is not None and chosen is not None:
        close = abs(candidate.output_tps - chosen.output_tps) <= TIE_FRACTION * max(candidate.output_tps,
                                                                                    chosen.output_tps)
        if close and candidate.num_parallel > chosen.num_parallel:
            reason = (f"{candidate.output_tps:.1f} tok/s is within {TIE_FRACTION:.0%} of NUM_PARALLEL="
                      f"{chosen.num_parallel}'s {chosen.output_tps:.1f}: no real gain for more KV memory")
        elif candidate is runner_up and tie and candidate.num_parallel > chosen.num_parallel:
            reason = (f"{candidate.output_tps:.1f} tok/s ties NUM_PARALLEL={chosen.num_parallel}'s "
                      f"{chosen.output_tps:.1f} (the 95% interval of the difference holds 0): no real gain "
                      "for more KV memory")
        else:
            reason = f"lower throughput: {candidate.output_tps:.1f} vs {chosen.output_tps:.1f} tok/s"
    if candidate.missed and not (candidate.fits_in_gpu is False and candidate.cell_id is not None):
        reason += f"; {candidate.missed}"
    if candidate is runner_up:
        outcome = "runner-up"
    return Candidate(**{**asdict(candidate), "outcome": outcome, "reason": reason})



def _verdict(chosen: Candidate | None, runner_up: Candidate | None, slos: tuple[Slo, ...],
             min_user_tps: float | None, memory_checked: bool, candidates: tuple[Candidate, ...]) -> str:
    goals = [slo.describe() for slo in slos] + ([f"user tok/s p50 ≥ {min_user_tps:g}"] if min_user_tps else [])
    goal_text = f" meeting {', '.join(goals)}" if goals else ""
    if chosen is None:
        return (f"no {SETTING} setting gives a cell{goal_text} that fits in GPU memory: "
                + "; ".join(f"{c.num_parallel}: {c.reason}" for c in candidates))
    text = (f"recommended {SETTING}={chosen.num_parallel}: {chosen.output_tps:.1f} output tok/s at concurrency "
            f"{chosen.concurrency}{goal_text}")
    if runner_up is not None:
        text += f"; runner-up {runner_up.num_parallel} ({runner_up.output_tps:.1f} tok/s)"
    if not memory_checked:
        text += "; GPU fit not checked (no /api/ps data in this run)"
    return text


def candidates_table(recommendation: Recommendation) -> list[dict[str, str]]:
    """Rows for a printed table: one per NUM_PARALLEL value."""
    rows = []
    for c in recommendation.candidates:
        memory = {True: "fits", False: "spills", None: "unknown"}[c.fits_in_gpu]
        rows.append({
            "NUM_PARALLEL": str(c.num_parallel), "concurrency": "-" if c.concurrency is None else str(c.concurrency),
            "output tok/s": _format_value("output_tps", c.output_tps), "ttft p95": _format_value("ttft_p95_s", c.ttft_p95_s),
            "tpot p95": _format_value("tpot_p95_s", c.tpot_p95_s),
            "user tok/s p50": _format_value("user_tps_p50", c.user_tps_p50), "GPU memory": memory,
            "outcome": c.outcome, "why": c.reason,
        })
    return rows
