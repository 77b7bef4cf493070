"""bench reads Ollama's fields with the meaning of the server version a run measured."""

from __future__ import annotations

import pandas as pd

from bench.analysis.model_loads import loads_from_ps
from bench.analysis.metrics import request_metrics
from bench.analysis.ollama_semantics import default_num_ctx, effective_num_ctx, semantics_for

GIB = 2**30


def test_versions_choose_the_semantics_and_say_so() -> None:
    new, old, unknown = semantics_for("0.33.0-rc2"), semantics_for("0.12.6"), semantics_for(None)
    assert new.llama_server and new.tiered_default_context and not new.assumed
    assert not old.llama_server and not old.tiered_default_context
    assert unknown.llama_server and unknown.assumed and "assumed" in unknown.label
    assert semantics_for("0.0.0").assumed  # a source build reports 0.0.0
    assert "pre-v0.30" in old.describe() and "requested num_ctx" in old.describe()
    assert "prompt cache" in new.describe()


def test_effective_context_is_clamped_client_side_only_for_old_servers() -> None:
    assert effective_num_ctx(131072, 131072, semantics_for("0.33.0")) == 131072
    assert effective_num_ctx(262144, 131072, semantics_for("0.12.6")) == 131072
    assert default_num_ctx(80 * GIB, 0, semantics_for("0.33.0")) == 262144
    assert default_num_ctx(24 * GIB, 0, semantics_for("0.33.0")) == 32768
    assert default_num_ctx(24 * GIB, 2 * GIB, semantics_for("0.33.0")) == 4096
    assert default_num_ctx(80 * GIB, 0, semantics_for("0.12.6")) == 4096


def test_loads_from_ps_splits_reloads_and_flags_partial_offload() -> None:
    ps = pd.DataFrame([
        {"t_s": 0.0, "name": None, "size_bytes": None, "size_vram_bytes": None, "context_length": None},
        {"t_s": 1.0, "name": "m:1", "size_bytes": 10 * GIB, "size_vram_bytes": 10 * GIB, "context_length": 32768},
        {"t_s": 2.0, "name": "m:1", "size_bytes": 10 * GIB, "size_vram_bytes": 10 * GIB, "context_length": 32768},
        {"t_s": 3.0, "name": "m:1", "size_bytes": 30 * GIB, "size_vram_bytes": 22 * GIB, "context_length": 131072},
    ])
    first, second = loads_from_ps(ps, semantics_for("0.33.0"), {"m:1": 131072})
    assert (first.effective_num_ctx, first.first_seen_s, first.last_seen_s) == (32768, 1.0, 2.0)
    assert not first.partial_offload and first.notes(32768) == []
    assert second.partial_offload and round(second.gpu_share, 2) == 0.73
    assert second.notes(None)[0].startswith("partial offload: 73% on the GPU")
    assert "clamped to the training context 131072" in second.notes(262144)
    assert "reduced by the server" in first.notes(65536)[0]


def test_slot_wait_and_prefix_cache_hits_follow_v033_field_meanings() -> None:
    rows = []
    for index in range(6):
        cached = index == 5
        rows.append({
            "cell_id": "c", "surface": "native", "sent_s": 0.0, "first_token_s": 0.5, "end_s": 1.0,
            "load_duration_ns": 100_000_000, "prompt_eval_duration_ns": 5_000_000 if cached else 200_000_000,
            "eval_duration_ns": 400_000_000, "total_duration_ns": 900_000_000, "prompt_tokens": 1000,
            "output_tokens": 10, "chunk_times_s": [0.5, 1.0], "error_class": None,
        })
    frame = request_metrics(pd.DataFrame(rows))
    # total − load − prompt_eval − eval: the wait for a runner slot (not in load_duration since v0.30)
    assert round(float(frame["slot_wait_s"].iloc[0]), 3) == 0.2
    assert frame["prefix_cache_hit"].tolist() == [False] * 5 + [True]


def test_prompts_counted_short_of_what_was_sent_are_reported_as_truncated() -> None:
    from bench.analysis.model_loads import truncated_prompts

    requests = pd.DataFrame({"cell_id": ["a", "a", "b", "b"], "prompt_tokens": [2050, 2050, 990, 1010],
                             "error_class": [None] * 4})
    assert truncated_prompts(requests, {"a": 6000, "b": 1000}) == {"a": (6000.0, 2050.0)}
