"""Section: multi-turn conversations — TTFT and prefill by turn, and the prompt cache's effect."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.conversations import cache_effect, cache_pairs, multi_turn, turn_table
from bench import numbers as fmt
from bench.report import plotting
from bench.report.data import RunView
from bench.report.page import Block, Figure, Note, Section, Table

_INTRO = ("Each virtual user sends its conversation turn by turn; every turn resends the whole "
          "history (system prompt, earlier user messages and the server's replies) plus a new user "
          "message. With a prefix cache (Ollama asks llama-server to cache prompts on every request), "
          "turn k's prefill should follow the new tokens, not the history.")
_REPORTED = ("Reported by the server: prompt tokens (prompt_eval_count, which counts cached tokens "
             "too) and prefill time (prompt_eval_duration, the uncached part only; native API). "
             "Inferred by bench: new tokens = this turn's prompt tokens minus the previous turn's "
             "prompt and reply tokens (what a perfect cache leaves to evaluate); evaluated tokens = "
             "prompt tokens × prefill(reuse) / prefill(defeat) at the same turn.")


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    for view in views:
        if not multi_turn(view.measured):
            continue
        turns = turn_table(view.measured)
        if turns.empty:
            continue
        prefix = f"{view.label}: " if len(views) > 1 else ""
        blocks.append(Figure(_by_turn_figure(view, turns),
                             f"{prefix}median TTFT and mean prefill time per turn, one line per cell."))
        blocks.append(_turn_table(view, turns))
        pairs = cache_pairs(view.manifest.cell_settings())
        effect = cache_effect(turns, pairs) if pairs else pd.DataFrame()
        if len(effect):
            blocks.append(_effect_table(view, effect))
        elif "prompt_cache" not in view.cells.columns:
            blocks.append(Note("No cache-defeating cell to compare with: add `prompt: {cache: "
                               "[reuse, defeat]}` to measure what the prompt cache saves.", "info"))
    if not blocks:
        return None
    blocks.append(Note(_REPORTED, "info"))
    return Section("conversations", "Conversations and the prompt cache", _INTRO, tuple(blocks))


def _label(view: RunView, cell_id: str) -> str:
    if cell_id in view.cells.index and "label" in view.cells.columns:
        return str(view.cells.at[cell_id, "label"])
    return cell_id


def _by_turn_figure(view: RunView, turns: pd.DataFrame) -> plotting.Plot:
    figure, (ttft_ax, prefill_ax) = plotting.new_figure(1, 2, height_in=3.4)
    names = [_label(view, cid) for cid in dict.fromkeys(turns["cell_id"])]
    ttft_scale, ttft_unit = plotting.time_unit(turns["ttft_p50_s"].to_numpy(float))
    prefill_scale, prefill_unit = plotting.time_unit(turns["prefill_s_mean"].to_numpy(float))
    for cell_id, rows in turns.groupby("cell_id", sort=False):
        name = _label(view, str(cell_id))
        style = plotting.series_style(names, name, 0, 1)
        x = rows["turn"].to_numpy(float)
        ttft_ax.plot(x, rows["ttft_p50_s"].to_numpy(float) * ttft_scale, label=name, **style)
        prefill = rows["prefill_s_mean"].to_numpy(float)
        if np.isfinite(prefill).any():
            prefill_ax.plot(x, prefill * prefill_scale, label=name, **style)
    ttft_ax.set_title("TTFT p50 by turn")
    ttft_ax.set_ylabel(f"TTFT p50 ({ttft_unit})")
    prefill_ax.set_title("Prefill (prompt_eval_duration) by turn")
    prefill_ax.set_ylabel(f"mean prefill ({prefill_unit})")
    for ax in (ttft_ax, prefill_ax):
        ax.set_xlabel("turn")
        ax.set_ylim(bottom=0)
        plotting.load_axis(ax, sorted(set(turns["turn"].astype(float))), "turn")
    plotting.figure_legend(figure, ttft_ax)
    return plotting.render(figure, "TTFT and prefill by turn",
                           "Line charts of median time to first token and mean prefill time against "
                           "the conversation turn, one line per cell.")


def _turn_table(view: RunView, turns: pd.DataFrame) -> Table:
    rows = []
    for row in turns.itertuples():
        rows.append((
            _label(view, str(row.cell_id)), str(row.turn), str(row.requests),
            fmt.seconds(row.ttft_p50_s), fmt.seconds(row.ttft_p95_s), fmt.seconds(row.prefill_s_mean),
            fmt.integer(row.prompt_tokens_mean), fmt.integer(row.new_prompt_tokens_mean),
            fmt.seconds(row.prefill_ms_per_prompt_token / 1000), fmt.seconds(row.prefill_ms_per_new_token / 1000),
            fmt.integer(row.cached_prompt_tokens_mean),
        ))
    columns = ("cell", "turn", "n", "TTFT p50", "TTFT p95", "prefill", "prompt tokens",
               "new tokens", "prefill / prompt token", "prefill / new token", "cached (reported)")
    return Table(columns, tuple(rows), "By turn (successful measured requests)",
                 numeric=(False,) + (True,) * (len(columns) - 1))


def _effect_table(view: RunView, effect: pd.DataFrame) -> Table:
    rows = []
    for row in effect.itertuples():
        rows.append((
            _label(view, str(row.reuse_cell_id)), str(row.turn),
            fmt.seconds(row.ttft_p50_reuse_s), fmt.seconds(row.ttft_p50_defeat_s),
            fmt.seconds(row.prefill_reuse_s), fmt.seconds(row.prefill_defeat_s),
            fmt.integer(row.prompt_tokens_mean), fmt.integer(row.new_prompt_tokens_mean),
            fmt.integer(row.evaluated_tokens_inferred), fmt.percent(row.prefill_saved_share),
        ))
    columns = ("cell (reuse)", "turn", "TTFT p50 reuse", "TTFT p50 defeat", "prefill reuse",
               "prefill defeat", "prompt tokens", "new tokens", "evaluated (inferred)",
               "prefill saved")
    return Table(columns, tuple(rows),
                 "The prompt cache's effect: the same cell with the cache defeated",
                 numeric=(False,) + (True,) * (len(columns) - 1))
