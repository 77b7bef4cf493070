"""Section 1, the answer: the recommendation, headline figures per cell, and what to distrust."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.analysis.recommend import Slo, slo_failures, slo_verdict
from bench.records.manifest import Manifest
from bench import numbers as fmt
from bench.report.data import RunView
from bench.report.gates import gate_blocks
from bench.report.page import Block, Note, Section, Table, Warnings

_HEADLINE_COLUMNS = ("requests", "ok", "TTFT p50", "TTFT p95", "TPOT p50", "TPOT p95",
                     "output tok/s", "rejected", "errors")


def build(views: list[RunView]) -> Section:
    blocks: list[Block] = []
    for current in views[1:]:
        # A comparison opens with its verdicts: the gates of `bench compare`, with n and intervals.
        blocks.extend(gate_blocks(views[0], current))
    for view in views:
        prefix = _prefix(views, view)
        recommendation = _recommendation(view, prefix)
        blocks.extend(recommendation or _slo_verdict(view, prefix))
        speed_note = _speed_note(view, prefix)
        if speed_note is not None:
            blocks.append(speed_note)
    blocks.append(_headline_table(views))
    if len(views) > 1:
        blocks.extend(_comparison_tables(views))
    warnings = [note for view in views for note in run_warnings(view, _prefix(views, view))]
    blocks.append(Warnings(tuple(warnings)) if warnings else Note("No warnings: every request "
                                                                    "succeeded, no cold loads or CPU spill seen during measurement."))
    intro = ("Headline figures per cell (measured requests only; warm-up excluded). TTFT: time to "
             "first token; TPOT: time per output token after the first; output tok/s: all output "
             "tokens of the cell over its measurement window.")
    return Section("answer", "The answer", intro, tuple(blocks))


def _prefix(views: list[RunView], view: RunView) -> str:
    return f"[{view.label}] " if len(views) > 1 else ""


def _slos(view: RunView) -> tuple[Slo, ...]:
    """The SLOs every verdict of this run's report uses (bench.analysis.run_analysis chose them)."""
    return view.analysis.slos


def _recommendation(view: RunView, prefix: str) -> list[Any]:
    """The NUM_PARALLEL verdict: the one `bench recommend` stored, else the one computed for a sweep."""
    analysis = view.analysis
    if analysis.recommendation_error is not None:
        return [Note(f"{prefix}No NUM_PARALLEL recommendation: {analysis.recommendation_error}", "warning")]
    recommendation = analysis.recommendation
    if recommendation is None:
        return []
    source = ("stored by bench recommend (recommendation.json)" if analysis.recommendation_stored else
              "computed by the report from the scenario's SLOs; `bench recommend RUN_DIR --slo METRIC=VALUE` "
              "stores one for other SLOs")
    settled = recommendation.num_parallel is not None and not recommendation.provisional
    blocks: list[Block] = [Note(f"{prefix}{_sentence(recommendation.verdict)}", "answer" if settled else "warning")]
    basis = recommendation.speed_basis or view.run.manifest.target.speed_basis
    if basis:
        blocks.append(Note(f"{prefix}Speed basis (bench sim): {basis}.", "info"))
    fits_words = {True: "fits", False: "spills to CPU", None: "unknown"}
    rows = tuple((fmt.text(c.num_parallel), fmt.text(c.concurrency), fmt.rate(c.output_tps),
                  fmt.seconds(c.ttft_p95_s), fmt.seconds(c.tpot_p95_s), fmt.rate(c.user_tps_p50),
                  fits_words[c.fits_in_gpu], fmt.text(c.outcome), fmt.text(c.reason))
                 for c in recommendation.candidates)
    chosen = tuple(index for index, c in enumerate(recommendation.candidates) if c.outcome == "chosen")
    if rows:
        slos = ", ".join(_describe_slo(slo.metric, slo.threshold) for slo in recommendation.slos)
        blocks.append(Table(
            ("NUM_PARALLEL", "best concurrency", "output tok/s", "TTFT p95", "TPOT p95",
             "user tok/s p50", "GPU memory", "outcome", "why"),
            rows, caption=f"{prefix}OLLAMA_NUM_PARALLEL candidates: the best cell of each setting"
            + (f" (SLOs: {slos})" if slos else "") + f"; {source}",
            numeric=(True, True, True, True, True, True, False, False, False), highlight_rows=chosen))
    return blocks


def _describe_slo(name: str, value: Any) -> str:
    number = fmt.seconds(value) if name.startswith(("ttft", "tpot", "itl", "e2e", "queue")) else fmt.text(value)
    return f"{name} {'≥' if 'tps' in name or 'rps' in name else '≤'} {number}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _slo_verdict(view: RunView, prefix: str) -> list[Any]:
    """For runs that are not a NUM_PARALLEL sweep: which cells meet the scenario's SLOs, and the best one."""
    slos = _slos(view)
    cells = view.cells
    if not slos or cells.empty or "ok" not in cells:
        return []
    goals = ", ".join(slo.describe() for slo in slos)
    meeting = [cid for cid, row in cells.iterrows() if not slo_failures(row, slos)]
    if not meeting:
        return [Note(f"{prefix}No cell meets the SLOs ({goals}); the SLOs column below says what each missed.",
                     "warning")]
    best = max(meeting, key=lambda cid: float(cells.at[cid, "output_tps"]))
    row = cells.loc[best]
    from bench.analysis.recommend_basis import needed_samples

    needed, needed_by = needed_samples([slo.metric for slo in slos])
    ok = int(row.get("ok", 0) or 0)
    basis = f" (n={ok})" if ok >= needed else f" Provisional: n={ok} where {needed_by} needs ≥{needed}."
    return [Note(f"{prefix}{len(meeting)} of {len(cells)} cells meet the SLOs ({goals}). The most output "
                 f"throughput among them: {row['label']}, {fmt.rate(row.get('output_tps'))} tok/s at TTFT p95 "
                 f"{fmt.seconds(row.get('ttft_p95_s'))} and TPOT p95 {fmt.seconds(row.get('tpot_p95_s'))}."
                 + basis, "answer" if ok >= needed else "warning")]


def _speed_note(view: RunView, prefix: str) -> Note | None:
    from bench.analysis.server_studies import time_scale

    server_ids = {c.server_id for c in view.manifest.cells} or {None}
    speeds = sorted({time_scale(view.run, sid) for sid in server_ids} - {1.0})
    if not speeds:
        return None
    return Note(prefix + speed_sentence(speeds), "info")


def speed_sentence(speeds: list[float]) -> str:
    """What the simulator's speed does to every figure, faster (--speed 10) or slower (0.7)."""
    factor = "/".join(f"{speed:g}" for speed in speeds)
    if all(speed > 1 for speed in speeds):
        return (f"The simulator ran {factor}× faster than real time: every duration in this report is 1/{factor} of "
                f"the modelled GPU's and every tokens/s {factor}× it (SLOs are checked in these wall-clock terms).")
    if all(speed < 1 for speed in speeds):
        slower = "/".join(f"{1 / speed:.3g}" for speed in speeds)
        return (f"The simulator ran {slower}× slower than real time (speed {factor}): every duration in this report "
                f"is {slower}× the modelled GPU's and every tokens/s {factor}× it (SLOs are checked in these "
                "wall-clock terms).")
    return (f"The simulator ran at speeds {factor} (×real time) on different servers: durations and tokens/s are "
            "scaled by each server's speed; compare cells of one speed only.")


def _slo_cell(row: pd.Series, slos: tuple[Slo, ...]) -> str:
    if not slos:
        return fmt.DASH
    return slo_verdict(row, slos)


def headline_row(cells: pd.DataFrame, cell_id: str) -> tuple[str, ...]:
    row = cells.loc[cell_id]
    return (fmt.integer(row.get("requests")), fmt.integer(row.get("ok")),
            fmt.seconds(row.get("ttft_p50_s")), fmt.seconds(row.get("ttft_p95_s")),
            fmt.seconds(row.get("tpot_p50_s")), fmt.seconds(row.get("tpot_p95_s")),
            fmt.rate(row.get("output_tps")), fmt.percent(row.get("rejection_rate")),
            fmt.percent(row.get("error_rate")))


def _headline_table(views: list[RunView]) -> Table:
    several = len(views) > 1
    slos = {view.label: _slos(view) for view in views}
    with_slos = any(slos.values())
    rows = []
    for view in views:
        # A pruned cell was never measured: say so, not "misses every SLO".
        skipped = {c.cell_id for c in view.manifest.cells if c.status == "skipped"}
        for cell_id in view.cells.index:
            verdict = ("skipped: not measured (see the warnings)" if cell_id in skipped
                       else _slo_cell(view.cells.loc[cell_id], slos[view.label]))
            rows.append(((view.label,) if several else ()) + (view.cells.at[cell_id, "label"],)
                        + headline_row(view.cells, cell_id) + ((verdict,) if with_slos else ()))
    columns = (("run",) if several else ()) + ("cell",) + _HEADLINE_COLUMNS + (("SLOs",) if with_slos else ())
    numeric = ((False,) if several else ()) + (False,) + (True,) * len(_HEADLINE_COLUMNS) + (
        (False,) if with_slos else ())
    return Table(columns, tuple(rows), caption="Headline figures per cell", numeric=numeric)


def _comparison_tables(views: list[RunView]) -> list[Any]:
    """Current runs against the first (the baseline), cell by cell (same settings → same cell_id)."""
    baseline = views[0]
    blocks: list[Block] = []
    metrics = (("TTFT p95", "ttft_p95_s", fmt.seconds), ("TPOT p95", "tpot_p95_s", fmt.seconds),
               ("output tok/s", "output_tps", fmt.rate))
    for current in views[1:]:
        shared = [cid for cid in current.cells.index if cid in baseline.cells.index]
        if not shared:
            blocks.append(Note(f"{current.label} and the baseline {baseline.label} share no cell "
                               "(no cell has the same settings in both).", "warning"))
            continue
        rows = []
        for cell_id in shared:
            row: tuple[str, ...] = (str(current.cells.at[cell_id, "label"]),)
            for _, column, show in metrics:
                before, after = baseline.cells.at[cell_id, column], current.cells.at[cell_id, column]
                row += (show(before), show(after), fmt.change(before, after))
            rows.append(row)
        columns = ("cell",) + tuple(f"{name} {part}" for name, _, _ in metrics
                                    for part in (baseline.label, current.label, "change"))
        blocks.append(Table(columns, tuple(rows), numeric=(False,) + (True,) * (len(columns) - 1),
                            caption=f"{current.label} against the baseline {baseline.label}"))
    return blocks


def run_warnings(view: RunView, prefix: str = "") -> list[Note]:
    """Everything that makes the figures less trustworthy, one line each."""
    notes: list[Note] = []
    manifest = view.manifest
    status = manifest.status
    if status and status != "complete":
        pending = [c.label or c.cell_id for c in manifest.cells if c.status != "complete"]
        notes.append(Note(f"{prefix}The run is {status}: {len(pending)} cell(s) did not complete"
                          + (f" ({', '.join(str(p) for p in pending[:6])}{', …' if len(pending) > 6 else ''})" if pending else "")
                          + ".", "error"))
        for cell in manifest.cells:
            if cell.status != "complete" and cell.unfinished_reason:
                state = "partial" if cell.status == "partial" else "not run"
                notes.append(Note(f"{prefix}{cell.label or cell.cell_id}: {state}, {cell.unfinished_reason}.", "error"))
    client = manifest.client
    if client is not None and client.saturated:
        lag = client.dispatch_lag_p99_s
        notes.append(Note(f"{prefix}bench's own client was saturated (dispatch lag p99 {fmt.seconds(lag)}): "
                          "the load generator, not the server, may have limited throughput.", "error"))
    cells = view.cells
    for cell_id, row in cells.iterrows():
        if row.get("rejected", 0) > 0:
            notes.append(Note(f"{prefix}{row['label']}: {int(row['rejected'])} of {int(row['requests'])} requests "
                              "rejected with 503 (server's pending queue full).", "warning"))
        if row.get("errors", 0) > 0:
            notes.append(Note(f"{prefix}{row['label']}: {int(row['errors'])} of {int(row['requests'])} requests "
                              "failed (see Rejections and errors).", "error"))
    if len(cells) and "requests" in cells and int(cells["requests"].sum()) == 0:
        notes.append(Note(f"{prefix}No measured request was recorded.", "error"))
    elif len(cells) and "requests" in cells and (cells["requests"] == 0).any():
        skipped = {c.cell_id for c in manifest.cells if c.status == "skipped"}
        unmeasured = (cells["requests"] == 0) & ~cells.index.isin(list(skipped))
        empty = [str(label) for label in cells.loc[unmeasured, "label"]]
        if empty:
            notes.append(Note(f"{prefix}{len(empty)} cell(s) have no measured request and appear in no plot: "
                              + ", ".join(empty[:8]) + (", …" if len(empty) > 8 else "") + ".", "warning"))
    notes.extend(_adaptive_notes(manifest, prefix))
    notes.extend(sample_size_warnings(view, prefix))
    notes.extend(_spill_warnings(view, prefix))
    notes.extend(_cold_warnings(view, prefix))
    notes.extend(saturation_warnings(view, prefix))
    return notes


def saturation_warnings(view: RunView, prefix: str = "") -> list[Note]:
    """Closed-loop series whose throughput went flat while TTFT climbed, with the server's NUM_PARALLEL
    (found by bench.analysis.saturation when the run was analysed)."""
    return [Note(prefix + saturation.sentence(), "warning") for saturation in view.analysis.saturations]


def _adaptive_notes(manifest: Manifest, prefix: str) -> list[Note]:
    """An adaptive run (bench run --adaptive): every skip, and every cell that hit its maximum."""
    adaptive = manifest.adaptive or {}
    notes = [Note(f"{prefix}skipped: {skip.get('reason')}", "info") for skip in adaptive.get("skips") or []]
    stopped = [(cell, cell.stop) for cell in manifest.cells if cell.stop is not None]
    for cell, stop in stopped:
        if not stop.get("met"):
            notes.append(Note(f"{prefix}{cell.label}: {stop.get('reason')}", "warning"))
    if stopped:
        met = sum(1 for _, stop in stopped if stop.get("met"))
        notes.append(Note(f"{prefix}stop_when met in {met} of {len(stopped)} cells; the target was busy "
                          f"{adaptive.get('target_busy_s', 0):.1f} s.", "info"))
    return notes


def _spill_warnings(view: RunView, prefix: str) -> list[Note]:
    ps = view.run.ps
    if ps is None or ps.empty or not {"size_bytes", "size_vram_bytes", "name"} <= set(ps.columns):
        return []
    rows = ps.dropna(subset=["name", "size_bytes", "size_vram_bytes"])
    spilled = rows[rows["size_vram_bytes"] < rows["size_bytes"]]
    notes = []
    for model, group in spilled.groupby("name"):
        worst = group.loc[(group["size_bytes"] - group["size_vram_bytes"]).idxmax()]
        share = 1 - worst["size_vram_bytes"] / worst["size_bytes"] if worst["size_bytes"] else 0.0
        notes.append(Note(
            f"{prefix}CPU spill: /api/ps shows {model} with only {fmt.size_gib(worst['size_vram_bytes'])} of "
            f"{fmt.size_gib(worst['size_bytes'])} on the GPU ({share:.0%} on CPU) at t={worst['t_s']:.1f} s; "
            "throughput there is limited by CPU memory.", "error"))
    return notes


def _cold_warnings(view: RunView, prefix: str) -> list[Note]:
    measured = view.measured
    if measured.empty or "cold" not in measured:
        return []
    studied = {cid for cid, settings in view.manifest.cell_settings().items() if settings.keep_alive is not None}
    cold = measured[measured["cold"].astype(bool) & ~measured["cell_id"].isin(studied)]
    if cold.empty:
        return []
    labels = view.cells["label"].to_dict()
    by_cell = cold.groupby("cell_id").size()
    listed = ", ".join(f"{labels.get(cid, cid)} ({count})" for cid, count in by_cell.items())
    return [Note(f"{prefix}{len(cold)} measured request(s) paid a model load (load_duration > 100 ms) "
                 f"in cells meant to measure a warm model: {listed}. Their TTFT includes the load.",
                 "warning")]


def _listed(labels: list[str], limit: int = 6) -> str:
    return ", ".join(labels[:limit]) + (", …" if len(labels) > limit else "")


def sample_size_warnings(view: RunView, prefix: str = "") -> list[Note]:
    """Cells too small for what the report shows of them: fewer requests than workers, and tail
    percentiles from too few successful requests (bench.analysis.samples)."""
    from bench.analysis.samples import min_samples_for_percentile

    cells = view.cells
    if cells.empty or "requests" not in cells:
        return []
    notes: list[Note] = []
    measured = cells[cells["requests"] > 0]
    concurrency = pd.to_numeric(measured.get("concurrency", pd.Series(dtype=float)), errors="coerce")
    closed = measured["arrival_kind"] == "closed" if "arrival_kind" in measured else True
    short = measured[closed & (measured["requests"] < concurrency)]
    if len(short):
        labels = [f"{row['label']} ({int(row['requests'])} at concurrency {int(concurrency[cid])})"
                  for cid, row in short.iterrows()]
        notes.append(Note(f"{prefix}{len(short)} cell(s) measured fewer requests than their concurrency: "
                          f"{_listed(labels)}. The load never reached steady state there; their figures "
                          "describe the start of the cell (raise load.requests).", "warning"))
    needed = min_samples_for_percentile(95)
    thin = measured[measured["ok"] < needed]
    if len(thin):
        counts = sorted({int(n) for n in thin["ok"]})
        if len(thin) == len(measured):
            where = "every cell (n=" + (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}") + ")"
        else:
            where = f"{len(thin)} of {len(measured)} cells: " + _listed(
                [f"{row['label']} (n={int(row['ok'])})" for _, row in thin.iterrows()])
        notes.append(Note(f"{prefix}p95 figures rest on fewer than {needed} successful requests in {where}. "
                          "They are close to the largest value seen, not a "
                          "95th percentile; no interval is drawn for them and `bench compare` gives them "
                          "no verdict (not enough samples).", "warning"))
    return notes
