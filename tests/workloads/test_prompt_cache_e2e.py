"""Against the simulator's per-slot prompt cache: turn k's prefill follows its new tokens, and the
cache-defeating variant of the same scenario pays for the whole history (both directions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.analysis.conversations import cache_effect, cache_pairs, turn_table
from bench.analysis.metrics import request_metrics
from bench.cli import cli
from bench.records import load_run

pytestmark = pytest.mark.e2e

SCENARIO = """\
workload:
  model: llama3.2:1b
  prompt: {tokens: 300, cache: [reuse, defeat]}
  conversation: {turns: 4}
  max_tokens: 24
  seed: 5
load: {concurrency: 2, requests: 16, warmup_requests: 0}
"""


def test_turn_prefill_follows_new_tokens_with_the_cache_and_history_without(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=5.0, gpu="l4", env={"OLLAMA_NUM_PARALLEL": "2"})
    scenario = tmp_path / "chat.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                      "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run = load_run(out)
    turns = turn_table(request_metrics(run.requests))
    cells = run.cells.set_index("cell_id")
    reuse_id = cells.index[cells["prompt_cache"] == "reuse"][0]
    defeat_id = cells.index[cells["prompt_cache"] == "defeat"][0]
    by_turn = turns.set_index(["cell_id", "turn"])
    assert set(turns["turn"]) == {1, 2, 3, 4} and (turns["requests"] == 4).all()

    def prefill(cell_id: str, turn: int) -> float:
        return float(by_turn.loc[(cell_id, turn), "prefill_s_mean"])

    # The prompt (prompt_eval_count) grows by a user message and a reply every turn in both cells.
    for cell_id in (reuse_id, defeat_id):
        prompt = [by_turn.loc[(cell_id, k), "prompt_tokens_mean"] for k in (1, 2, 3, 4)]
        assert prompt[3] > 3 * prompt[0]
    # With the cache, turn 4 evaluates about what turn 1 did (its new tokens), not 3x more.
    assert prefill(reuse_id, 4) < 1.5 * prefill(reuse_id, 1)
    # Defeated, every turn pays for the whole history: turn 4 costs well over turn 1.
    assert prefill(defeat_id, 4) > 2.0 * prefill(defeat_id, 1)
    # Same first turn either way; by turn 4 the cache saves most of the prefill.
    assert 0.67 < prefill(reuse_id, 1) / prefill(defeat_id, 1) < 1.5
    (effect,) = cache_effect(turns, cache_pairs(run.manifest.cell_settings())).query("turn == 4").itertuples()
    assert effect.prefill_saved_share > 0.5
    # The tokens the cache left to evaluate (inferred) are about the turn's new tokens.
    assert effect.evaluated_tokens_inferred == pytest.approx(effect.new_prompt_tokens_mean, rel=0.5)
    # (TTFT follows too, but it is wall-clock time: the server's prefill durations are what a busy
    # test machine cannot disturb.)
