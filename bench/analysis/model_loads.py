"""Model loads seen in a run's /api/ps timeline: effective context, memory, partial offload.

Pure: ps timeline rows (bench.telemetry.ollama_ps columns) in, one row per load out. A load is a
run of consecutive polls listing the model with the same context_length and sizes; a new load
of the same model (reload, or unload and load again) starts a new row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.ollama_semantics import Semantics, effective_num_ctx


@dataclass(frozen=True, slots=True)
class Load:
    model: str
    first_seen_s: float
    last_seen_s: float
    reported_context: int | None  # /api/ps context_length as sent
    effective_num_ctx: int | None  # per slot, after the clamp (and any OOM step-down)
    size_bytes: int | None
    size_vram_bytes: int | None
    training_context: int | None

    @property
    def gpu_share(self) -> float | None:
        if not self.size_bytes or self.size_vram_bytes is None:
            return None
        return self.size_vram_bytes / self.size_bytes

    @property
    def partial_offload(self) -> bool:
        return self.size_bytes is not None and self.size_vram_bytes is not None and self.size_vram_bytes < self.size_bytes

    def notes(self, requested_num_ctx: int | None = None) -> list[str]:
        notes: list[str] = []
        if self.partial_offload and self.gpu_share is not None:
            notes.append(f"partial offload: {self.gpu_share:.0%} on the GPU, the rest runs on the CPU")
        if self.training_context and self.effective_num_ctx == self.training_context and (
                requested_num_ctx is None or requested_num_ctx > self.training_context):
            notes.append(f"clamped to the training context {self.training_context}")
        elif requested_num_ctx and self.effective_num_ctx and self.effective_num_ctx < requested_num_ctx:
            notes.append(f"below the requested {requested_num_ctx}: reduced by the server")
        return notes


def loads_from_ps(ps: pd.DataFrame, semantics: Semantics, training_contexts: dict[str, int] | None = None) -> list[Load]:
    """One Load per stretch of polls showing a model with unchanged context and sizes."""
    if ps is None or ps.empty or "name" not in ps:
        return []
    training_contexts = training_contexts or {}
    frame = ps.sort_values("t_s")
    polls = np.sort(frame["t_s"].dropna().unique())
    loads: list[Load] = []
    for model, rows in frame[frame["name"].notna()].groupby("name", sort=True):
        model = str(model)
        training = training_contexts.get(model)
        current: dict[str, Any] | None = None
        previous_poll_index = -2
        for row in rows.itertuples(index=False):
            poll_index = int(np.searchsorted(polls, row.t_s))
            key = (_int(row.context_length), _int(row.size_bytes), _int(row.size_vram_bytes))
            contiguous = poll_index == previous_poll_index + 1
            if current is not None and contiguous and current["key"] == key:
                current["last"] = float(row.t_s)
            else:
                if current is not None:
                    loads.append(_load(model, current, semantics, training))
                current = {"key": key, "first": float(row.t_s), "last": float(row.t_s)}
            previous_poll_index = poll_index
        if current is not None:
            loads.append(_load(model, current, semantics, training))
    return sorted(loads, key=lambda load: load.first_seen_s)


def _int(value: Any) -> int | None:
    """A /api/ps field read from the frame: a number, or None where the poll had none."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return int(value)


def _load(model: str, current: dict[str, Any], semantics: Semantics, training: int | None) -> Load:
    context, size, size_vram = current["key"]
    return Load(model=model, first_seen_s=current["first"], last_seen_s=current["last"], reported_context=context,
                effective_num_ctx=effective_num_ctx(context, training, semantics), size_bytes=size,
                size_vram_bytes=size_vram, training_context=training)


def truncated_prompts(requests: pd.DataFrame, intended_tokens: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Cells whose server-counted prompt tokens fell well short of the prompt sent.

    {cell_id: (intended tokens, median counted)} where the median prompt_tokens of successful
    requests is under 80 % of the cell's prompt length: Ollama cut the prompt to fit the
    context (v0.33 keeps num_keep tokens and the tail, about half the context).
    """
    if requests.empty or "prompt_tokens" not in requests or "cell_id" not in requests:
        return {}
    ok = requests["error_class"].isna() if "error_class" in requests else pd.Series(True, index=requests.index)
    counted = pd.to_numeric(requests.loc[ok, "prompt_tokens"], errors="coerce").groupby(requests.loc[ok, "cell_id"]).median()
    found: dict[str, tuple[float, float]] = {}
    for cell_id, median in counted.items():
        intended = intended_tokens.get(str(cell_id))
        if intended and np.isfinite(median) and median < 0.8 * float(intended):
            found[str(cell_id)] = (float(intended), float(median))
    return found
