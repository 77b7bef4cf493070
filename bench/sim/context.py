"""Context length, generation batch and prediction bounds, as Ollama v0.33 resolves them.

Pure functions; each names the Ollama function it follows (shared/ollama-v0.33.md §2, §3.2).
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.sim.memory import GIB, MIB

LEGACY_DEFAULT_NUM_CTX = 4096
AUTO_CTX_TIERS = ((47 * GIB, 262144), (23 * GIB, 32768))
BATCH_DEFAULT, BATCH_CONSTRAINED, BATCH_MEDIUM, BATCH_LARGE = 512, 256, 1024, 2048


class PromptTooLong(Exception):
    """Context shift off and the prompt does not fit: Ollama answers 400 with this text (llm/llama_server.go 298)."""

    def __init__(self) -> None:
        super().__init__(
            "the prompt is longer than the context length currently available to the model; "
            "shorten the prompt, adjust the context length in settings, or use a model with a longer context length"
        )


def default_num_ctx(total_vram_bytes: int, gpu_overhead_bytes: int) -> int:
    """Server.Serve (routes.go 2040-2058): 262144 / 32768 / 4096 by total VRAM minus the overhead."""
    usable = total_vram_bytes - gpu_overhead_bytes
    if total_vram_bytes <= 0 or usable <= 0:
        return LEGACY_DEFAULT_NUM_CTX
    for threshold_bytes, num_ctx in AUTO_CTX_TIERS:
        if usable >= threshold_bytes:
            return num_ctx
    return LEGACY_DEFAULT_NUM_CTX


def effective_context(num_ctx: int, train_ctx: int) -> int:
    """effectiveContext (sched.go 161-167): a request's context capped at the training context."""
    return train_ctx if 0 < train_ctx < num_ctx else num_ctx


def next_lower_auto_num_ctx(num_ctx: int) -> int | None:
    """nextLowerAutoNumCtx (sched.go 917-926): one step down after an out-of-memory load."""
    if num_ctx > 32768:
        return 32768
    if num_ctx > 4096:
        return 4096
    return None


def generation_batch_surcharge(batch: int) -> int:
    """generationBatchSurcharge (sched.go 906-915)."""
    if batch >= BATCH_LARGE:
        return 2 * GIB
    if batch >= BATCH_MEDIUM:
        return 768 * MIB
    return 0


def _batch_fits(batch: int, predicted: int, available: int) -> bool:
    """generationBatchFits + generationBatchHasHeadroom (sched.go 870-895)."""
    if predicted == 0 or available == 0:
        return True
    threshold = available * 80 // 100
    if predicted > threshold:
        return False
    if batch >= BATCH_LARGE and predicted > available * 60 // 100:
        return False
    if BATCH_MEDIUM <= batch < BATCH_LARGE and predicted > available * 75 // 100:
        return False
    return generation_batch_surcharge(batch) <= threshold - predicted


def automatic_generation_batch(
    ctx_tokens: int, predicted_bytes: int, available_bytes: int, flash_attention_off: bool, cuda_memory_bytes: int
) -> int:
    """automaticGenerationBatch (sched.go 822-868) for `ctx_tokens` = effective ctx × NUM_PARALLEL."""
    if flash_attention_off and cuda_memory_bytes > 0:
        constrained = ctx_tokens > 4096 and cuda_memory_bytes <= 8 * GIB
        return BATCH_CONSTRAINED if constrained else BATCH_DEFAULT
    batch = BATCH_LARGE if ctx_tokens > 32768 else BATCH_MEDIUM if ctx_tokens > 4096 else BATCH_DEFAULT
    while batch > BATCH_DEFAULT and not _batch_fits(batch, predicted_bytes, available_bytes):
        batch = BATCH_MEDIUM if batch > BATCH_MEDIUM else BATCH_DEFAULT
    return batch


def bounded_num_predict(num_predict: int, num_ctx: int, bounded: bool = True) -> int:
    """boundedNumPredict (llama_server.go 106-118): -1 or > 10 × num_ctx becomes 10 × num_ctx.

    0 stays unbounded (-1): Ollama sends `n_predict` with omitempty, so llama-server gets none and
    generates until the model stops (measured: a made model that never stops ran past 700 tokens
    at num_ctx 64, bench conformance). With `bounded` False (v0.12.6) a non-positive value means
    "until the model stops": -1.
    """
    limit = 10 * num_ctx
    if not bounded or num_predict == 0:
        return num_predict if num_predict > 0 else -1
    if num_predict < 0 or num_predict > limit:
        return limit
    return num_predict


def truncate_prompt(tokens: Sequence[int], num_ctx: int, num_keep: int, context_shift: bool) -> list[int]:
    """completionPromptForRequest (llama_server.go 279-331) for a prompt of `tokens`.

    Fits (≤ num_ctx − 1 tokens): unchanged. Shift off: PromptTooLong (400). Shift on: keep the
    first num_keep tokens and the tail, to num_ctx − max((num_ctx − num_keep) / 2, 1) in all.
    """
    if len(tokens) <= num_ctx - 1:
        return list(tokens)
    if not context_shift:
        raise PromptTooLong()
    keep = max(0, min(num_keep, num_ctx - 1))
    limit = num_ctx - max((num_ctx - keep) // 2, 1)
    tail = max(0, limit - keep)
    return list(tokens[:keep]) + list(tokens[len(tokens) - tail :]) if tail else list(tokens[:keep])
