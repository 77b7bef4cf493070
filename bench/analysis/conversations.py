"""Multi-turn runs: latency and prefill by turn, and what the server's prompt cache saved.

Pure functions on request frames that carry bench.analysis.metrics.request_metrics columns.

What Ollama reports and what is inferred (ollama-v0.33.md §3.3): the native API's
prompt_eval_count is cache_n + prompt_n, the whole prompt, cached or not; prompt_eval_duration
is the time of the uncached part only. So the tokens a cached request really evaluated are not
reported; bench infers them two ways:
- `new_prompt_tokens`: what a perfect prefix cache leaves to evaluate, from the client's own
  bookkeeping: turn k's prompt_eval_count minus turn k-1's prompt_eval_count and eval_count (the
  previous request and its reply are the prefix). Exact arithmetic on reported counts; whether
  the server really kept that prefix is what prefill time shows.
- `evaluated_tokens_inferred`: prompt tokens x prefill(reuse) / prefill(defeat) at the same turn,
  when the run has both cache settings (cells equal in everything else): the cache-defeating
  cell measures what the whole prompt costs.
A server that reports cached tokens (OpenAI usage.prompt_tokens_details.cached_tokens) fills
`cached_prompt_tokens_mean`; Ollama does not send it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bench.records.cell_settings import CellSettings

TURN_COLUMNS: tuple[str, ...] = (
    "cell_id", "turn", "requests", "ttft_p50_s", "ttft_p95_s", "prefill_s_mean",
    "prompt_tokens_mean", "new_prompt_tokens_mean", "prefill_ms_per_prompt_token",
    "prefill_ms_per_new_token", "cached_prompt_tokens_mean",
)


def multi_turn(requests: pd.DataFrame) -> bool:
    """Whether any record belongs to a conversation."""
    return "turn" in requests.columns and bool(pd.to_numeric(requests["turn"], errors="coerce").notna().any())


def new_prompt_tokens(requests: pd.DataFrame) -> pd.Series:
    """Per record: prompt tokens not in the same conversation's previous request and reply.

    Turn 1 (and a turn whose previous turn failed or is missing): all its prompt tokens.
    """
    frame = requests[["cell_id", "conversation_id", "turn", "prompt_tokens", "output_tokens"]].copy()
    frame["repeat"] = requests["repeat"] if "repeat" in requests.columns else 0
    frame["turn"] = pd.to_numeric(frame["turn"], errors="coerce")
    prompt = pd.to_numeric(frame["prompt_tokens"], errors="coerce")
    previous = frame.assign(turn=frame["turn"] + 1, previous_total=prompt
                            + pd.to_numeric(frame["output_tokens"], errors="coerce"))
    keys = ["cell_id", "repeat", "conversation_id", "turn"]
    merged = frame.reset_index().merge(previous[keys + ["previous_total"]], on=keys, how="left")
    merged = merged.drop_duplicates("index").set_index("index").reindex(frame.index)
    new = prompt - merged["previous_total"]
    return new.where(new.notna() & (new > 0), prompt)


def turn_table(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, turn) over the successful measured requests of conversations."""
    if not multi_turn(requests):
        return pd.DataFrame(columns=list(TURN_COLUMNS))
    frame = requests[pd.to_numeric(requests["turn"], errors="coerce").notna()].copy()
    frame["new_prompt_tokens"] = new_prompt_tokens(frame)
    if "phase" in frame.columns:
        frame = frame[frame["phase"].fillna("measure") == "measure"]
    frame = frame[frame["error_class"].isna()] if "error_class" in frame.columns else frame
    rows = []
    for (cell_id, turn), group in frame.groupby(["cell_id", "turn"], sort=True):
        ttft = group["ttft_s"].to_numpy(float)
        prefill = pd.to_numeric(group["prefill_s"], errors="coerce")
        prompt = pd.to_numeric(group["prompt_tokens"], errors="coerce")
        new = pd.to_numeric(group["new_prompt_tokens"], errors="coerce")
        cached = pd.to_numeric(group.get("cached_prompt_tokens", pd.Series(dtype=float)),
                               errors="coerce")
        with np.errstate(divide="ignore", invalid="ignore"):
            per_prompt = float((prefill / prompt).mean() * 1000)
            per_new = float((prefill / new).mean() * 1000)
        rows.append({
            "cell_id": cell_id, "turn": int(turn), "requests": len(group),
            "ttft_p50_s": _percentile(ttft, 50), "ttft_p95_s": _percentile(ttft, 95),
            "prefill_s_mean": float(prefill.mean()), "prompt_tokens_mean": float(prompt.mean()),
            "new_prompt_tokens_mean": float(new.mean()),
            "prefill_ms_per_prompt_token": per_prompt, "prefill_ms_per_new_token": per_new,
            "cached_prompt_tokens_mean": float(cached.mean()) if cached.notna().any() else np.nan,
        })
    return pd.DataFrame(rows, columns=list(TURN_COLUMNS))


def _percentile(values: np.ndarray, p: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, p)) if len(values) else float("nan")


CACHE_COLUMNS: tuple[str, ...] = (
    "reuse_cell_id", "defeat_cell_id", "turn", "ttft_p50_reuse_s", "ttft_p50_defeat_s",
    "prefill_reuse_s", "prefill_defeat_s", "prompt_tokens_mean", "new_prompt_tokens_mean",
    "evaluated_tokens_inferred", "prefill_saved_share",
)


def cache_pairs(cells: Mapping[str, CellSettings]) -> list[tuple[str, str]]:
    """(reuse cell, defeat cell) pairs: cells whose settings differ only in prompt_cache.

    `cells`: cell_id -> settings (bench.records.Manifest.cell_settings).
    """
    def key(settings: CellSettings) -> str:
        return repr({name: value for name, value in settings.row().items() if name != "prompt_cache"})

    reuse = {key(s): cid for cid, s in cells.items() if s.prompt_cache == "reuse"}
    return [(reuse[key(s)], cid) for cid, s in cells.items()
            if s.prompt_cache == "defeat" and key(s) in reuse]


def cache_effect(turns: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Per pair and turn: prefill and TTFT with and without the cache, and what it saved."""
    rows = []
    indexed = turns.set_index(["cell_id", "turn"])
    for reuse_id, defeat_id in pairs:
        for turn in sorted(set(turns.loc[turns["cell_id"] == reuse_id, "turn"])):
            if (defeat_id, turn) not in indexed.index:
                continue
            reuse, defeat = indexed.loc[(reuse_id, turn)], indexed.loc[(defeat_id, turn)]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = reuse["prefill_s_mean"] / defeat["prefill_s_mean"]
            rows.append({
                "reuse_cell_id": reuse_id, "defeat_cell_id": defeat_id, "turn": int(turn),
                "ttft_p50_reuse_s": reuse["ttft_p50_s"], "ttft_p50_defeat_s": defeat["ttft_p50_s"],
                "prefill_reuse_s": reuse["prefill_s_mean"],
                "prefill_defeat_s": defeat["prefill_s_mean"],
                "prompt_tokens_mean": reuse["prompt_tokens_mean"],
                "new_prompt_tokens_mean": reuse["new_prompt_tokens_mean"],
                "evaluated_tokens_inferred": reuse["prompt_tokens_mean"] * ratio,
                "prefill_saved_share": 1.0 - ratio,
            })
    return pd.DataFrame(rows, columns=list(CACHE_COLUMNS))
