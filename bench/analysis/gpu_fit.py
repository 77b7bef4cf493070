"""Whether a cell's model stayed wholly in GPU memory, from the /api/ps timeline: the worst reading
of its model while the cell's requests ran (size_vram < size: part of it spilled to the CPU).

Pure functions on a loaded run; the recommendation rules a spilled setting out with it, the
report draws no "offer more load" for one.
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
