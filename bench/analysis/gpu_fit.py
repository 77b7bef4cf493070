"""GPU memory per cell from the /api/ps timeline: whether a cell's model stayed wholly in it (the
worst reading of its model while the cell's requests ran; size_vram < size: part of it spilled to
the CPU), and the most the server said it held during the cell.

Pure functions on a loaded run; the recommendation rules a spilled setting out with the fit, the
report draws no "offer more load" for one, and shows the peaks where NVML measured nothing.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.records import Run

# /api/ps polls this long after a cell's last answer still count as the cell's.
_PS_SLACK_S = 1.0


def memory_fit(run: Run, cell_ids: list[str], models: set[str]) -> tuple[bool | None, int | None, int | None]:
    """Whether the server behind these cells kept the model wholly on the GPU (size_vram == size)."""
    if run.ps is None or run.ps.empty:
        return None, None, None
    requests = run.requests[run.requests["cell_id"].isin(cell_ids)]
    if requests.empty or requests["sent_s"].isna().all():
        return None, None, None
    start, end = float(requests["sent_s"].min()), float(requests["end_s"].max())
    later = run.requests.loc[~run.requests["cell_id"].isin(cell_ids) & (run.requests["sent_s"] > end), "sent_s"]
    return _fit_between(run.ps, start, end, float(later.min()) if len(later) else math.inf, models)


def memory_fits(run: Run) -> dict[str, bool | None]:
    """memory_fit's verdict per cell (cell_id → fits; None: no /api/ps reading of its model), for
    every cell with records: one pass over them, not one per cell."""
    if run.ps is None or run.ps.empty or run.requests.empty:
        return {}
    models = {cell_id: settings.model for cell_id, settings in run.manifest.cell_settings().items()}
    sent = run.requests[run.requests["sent_s"].notna()].sort_values("sent_s", kind="stable")
    sends, senders = sent["sent_s"].to_numpy(float), sent["cell_id"].astype(str).to_numpy()
    spans = run.requests.groupby("cell_id", sort=False).agg(start=("sent_s", "min"), end=("end_s", "max"))
    fits: dict[str, bool | None] = {}
    for cell_id, span in spans.iterrows():
        model = models.get(str(cell_id))
        if model is None or not math.isfinite(span["start"]):
            continue
        # The first send after the cell's last answer by another cell: where its server's time ends.
        after = np.searchsorted(sends, span["end"], side="right") if math.isfinite(span["end"]) else len(sends)
        others = np.flatnonzero(senders[after:] != str(cell_id))
        next_send = float(sends[after + others[0]]) if len(others) else math.inf
        fits[str(cell_id)] = _fit_between(run.ps, float(span["start"]), float(span["end"]), next_send, {model})[0]
    return fits


def _fit_between(ps: pd.DataFrame, start: float, end: float, next_send: float,
                 models: set[str]) -> tuple[bool | None, int | None, int | None]:
    """(fits, size, size_vram) of the worst /api/ps reading of `models` from `start` to `end`."""
    # Polls just after the last request still see this server (the next one starts cold), so
    # cells shorter than the poll interval still get a reading; stop at the next server's first send.
    end = min(end + _PS_SLACK_S, next_send)
    rows = ps[(ps["t_s"] >= start) & (ps["t_s"] <= end) & ps["name"].isin(models)]
    rows = rows.dropna(subset=["size_bytes", "size_vram_bytes"])
    if rows.empty:
        return None, None, None
    worst = rows.loc[(rows["size_bytes"] - rows["size_vram_bytes"]).idxmax()]
    size, vram = int(worst["size_bytes"]), int(worst["size_vram_bytes"])
    if not (ps["size_vram_bytes"].fillna(0) > 0).any():
        # A CPU-only server (a real `ollama serve` with no GPU) reports size_vram 0 for every
        # model: there is no GPU to fit in, so the fit is not a question, not a spill.
        return None, size, vram
    return vram >= size, size, vram


def ps_peaks(ps: pd.DataFrame | None, requests: pd.DataFrame, cell_ids: list[str]) -> pd.DataFrame:
    """Per cell (index cell_id, in `cell_ids` order): the largest /api/ps size and size_vram, summed
    over the models loaded at one poll, among the polls between the cell's first send and last end;
    cells without such a poll are left out."""
    columns = ["size_bytes", "size_vram_bytes"]
    if ps is None or ps.empty or requests.empty or "size_bytes" not in ps:
        return pd.DataFrame(columns=columns)
    polls = ps.groupby("t_s")[columns].sum(min_count=1)
    rows = {}
    for cell_id in cell_ids:
        cell = requests[requests["cell_id"] == cell_id]
        start, end = pd.to_numeric(cell["sent_s"], errors="coerce").min(), pd.to_numeric(cell["end_s"], errors="coerce").max()
        during = polls[(polls.index >= start) & (polls.index <= end)]
        if len(during) and during["size_bytes"].notna().any():
            rows[cell_id] = {"size_bytes": during["size_bytes"].max(), "size_vram_bytes": during["size_vram_bytes"].max()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)
