"""Per-turn analysis: new tokens from the counts, and the cache's effect from paired cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.records.cell_settings import CellSettings
from bench.analysis.conversations import cache_effect, cache_pairs, new_prompt_tokens, turn_table


def records(cell_id: str, prefill_per_token_s: float, cached: bool) -> list[dict]:
    """Two conversations of three turns: 100 new user tokens a turn, 20-token replies."""
    rows = []
    for conversation in ("r0-c0", "r0-c1"):
        prompt = 0
        for turn in (1, 2, 3):
            prompt += 100 if turn == 1 else 120  # the user message (+ the previous reply)
            evaluated = 100 if cached else prompt  # the slot holds the last prompt and reply
            prefill = evaluated * prefill_per_token_s
            rows.append({"cell_id": cell_id, "repeat": 0, "phase": "measure", "error_class": None,
                         "conversation_id": conversation, "turn": turn, "prompt_tokens": prompt,
                         "output_tokens": 20, "prefill_s": prefill, "ttft_s": prefill + 0.01,
                         "cached_prompt_tokens": None})
    return rows


def test_new_tokens_are_this_turns_prompt_minus_the_previous_prompt_and_reply() -> None:
    frame = pd.DataFrame(records("a", 0.001, cached=True))
    assert list(new_prompt_tokens(frame)) == [100, 100, 100] * 2


def test_turn_table_shows_prefill_following_new_tokens_only_with_the_cache() -> None:
    frame = pd.DataFrame(records("reuse", 0.001, True) + records("defeat", 0.001, False))
    turns = turn_table(frame).set_index(["cell_id", "turn"])
    assert turns.loc[("reuse", 3), "prefill_ms_per_new_token"] == pytest.approx(1.0)
    assert turns.loc[("defeat", 3), "prefill_ms_per_prompt_token"] == pytest.approx(1.0)
    assert turns.loc[("defeat", 3), "prefill_s_mean"] == pytest.approx(0.34)
    assert turns.loc[("reuse", 3), "requests"] == 2
    assert np.isnan(turns.loc[("reuse", 3), "cached_prompt_tokens_mean"])


def test_cache_effect_pairs_cells_that_differ_only_in_the_cache_setting() -> None:
    cells = {"reuse": CellSettings(prompt_cache="reuse", concurrency=1),
             "defeat": CellSettings(prompt_cache="defeat", concurrency=1),
             "other": CellSettings(prompt_cache="reuse", concurrency=2)}
    pairs = cache_pairs(cells)
    assert pairs == [("reuse", "defeat")]
    frame = pd.DataFrame(records("reuse", 0.001, True) + records("defeat", 0.001, False))
    effect = cache_effect(turn_table(frame), pairs).set_index("turn")
    assert effect.loc[1, "prefill_saved_share"] == pytest.approx(0.0)
    assert effect.loc[3, "prefill_saved_share"] == pytest.approx(1 - 100 / 340)
    assert effect.loc[3, "evaluated_tokens_inferred"] == pytest.approx(100)
