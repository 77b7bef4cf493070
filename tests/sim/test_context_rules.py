"""Pure context and batch rules of Ollama v0.33 (server/sched.go, server/routes.go, llm/llama_server.go)."""

from __future__ import annotations

import pytest

from bench.sim import context

GIB = 2**30


@pytest.mark.parametrize(("total_gib", "overhead_gib", "expected"),
                         [(80, 0, 262144), (47, 0, 262144), (46.9, 0, 32768), (24, 0, 32768), (24, 1.5, 4096),
                          (16, 0, 4096), (0, 0, 4096)])
def test_default_num_ctx_tiers(total_gib: float, overhead_gib: float, expected: int) -> None:
    """Server.Serve: ≥ 47 GiB → 262144, ≥ 23 GiB → 32768, else 4096 (CPU only: 4096)."""
    assert context.default_num_ctx(int(total_gib * GIB), int(overhead_gib * GIB)) == expected


def test_auto_context_steps_down_once_per_tier() -> None:
    """nextLowerAutoNumCtx: > 32768 → 32768, > 4096 → 4096, else none."""
    assert context.next_lower_auto_num_ctx(131072) == 32768
    assert context.next_lower_auto_num_ctx(32768) == 4096
    assert context.next_lower_auto_num_ctx(4096) is None
    assert context.effective_context(262144, 131072) == 131072
    assert context.effective_context(8192, 131072) == 8192


def test_generation_batch_by_context_and_headroom() -> None:
    """automaticGenerationBatch / generationBatchFits: 2048 needs predicted ≤ 60 % of free, 1024 ≤ 75 %."""
    batch = context.automatic_generation_batch
    assert batch(131072, 10 * GIB, 80 * GIB, False, 80 * GIB) == 2048
    assert batch(131072, 50 * GIB, 80 * GIB, False, 80 * GIB) == 1024  # 62 % of free: no 2048
    assert batch(131072, 62 * GIB, 80 * GIB, False, 80 * GIB) == 512  # 77 %: no 1024 either
    assert batch(8192, 4 * GIB, 24 * GIB, False, 24 * GIB) == 1024
    assert batch(4096, 4 * GIB, 24 * GIB, False, 24 * GIB) == 512
    assert batch(131072, 0, 0, False, 0) == 2048  # nothing predicted (CPU only): by context
    # Flash attention off on CUDA: 512, or 256 on a card of 8 GiB or less above 4096 tokens.
    assert batch(131072, 4 * GIB, 80 * GIB, True, 80 * GIB) == 512
    assert batch(8192, 1 * GIB, 8 * GIB, True, 8 * GIB) == 256
    assert context.generation_batch_surcharge(2048) == 2 * GIB
    assert context.generation_batch_surcharge(1024) == 768 * 2**20


def test_prompt_truncation_keeps_num_keep_and_the_tail() -> None:
    """completionPromptForRequest: limit = num_ctx − max((num_ctx − num_keep) / 2, 1)."""
    tokens = list(range(5000))
    kept = context.truncate_prompt(tokens, 1024, 4, context_shift=True)
    assert len(kept) == 1024 - 510 and kept[:4] == [0, 1, 2, 3] and kept[-1] == 4999
    assert context.truncate_prompt(tokens[:1023], 1024, 4, True) == tokens[:1023]
    with pytest.raises(context.PromptTooLong):
        context.truncate_prompt(tokens, 1024, 4, context_shift=False)
