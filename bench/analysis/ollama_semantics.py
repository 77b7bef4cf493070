"""What Ollama's fields mean for the server version a run measured (pure functions).

Ollama v0.30 moved every GGUF model into a llama.cpp `llama-server` child process; the meaning of
/api/ps and of the default context changed with it (shared/ollama-v0.33.md §2, §3.3, §4.1):

- load_duration is the time scheduleRunner took: waiting in the scheduler's pending queue plus
  any cold load (server/routes.go checkpointStart → checkpointLoaded). Waiting for one of the
  runner's NUM_PARALLEL slots is *not* in it; it is in total − load − prompt_eval − eval.
- prompt_eval_duration covers only the tokens llama-server had to evaluate: its prompt cache is
  on for every request, so a repeated prefix makes prefill small while prompt_eval_count still
  counts the whole prompt (cache_n + prompt_n).
- /api/ps context_length is the runner's per-slot context, already clamped to the model's
  training context and after any automatic out-of-memory step-down; size/size_vram are the
  buffers llama-server logged (size == size_vram when every layer is on the GPU).

Before v0.30 (the Ollama runner, e.g. v0.12.6) the timing fields meant the same, but /api/ps
reported the *requested* num_ctx (unclamped) and size/size_vram were Ollama's own estimate
(weights + KV + graph). Before v0.15.5 the default context was a fixed 4096.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LLAMA_SERVER_SINCE = (0, 30, 0)
TIERED_CONTEXT_SINCE = (0, 15, 5)


def parse_version(version: str | None) -> tuple[int, int, int] | None:
    """"0.33.0-rc2" → (0, 33, 0); None for missing, unparsable or source builds ("0.0.0")."""
    if not version:
        return None
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        return None
    parsed = (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))
    return None if parsed == (0, 0, 0) else parsed


@dataclass(frozen=True, slots=True)
class Semantics:
    """How a run's Ollama fields are read."""

    server_version: str | None
    llama_server: bool  # ≥ 0.30: llama-server buffers, clamped /api/ps context, per-slot prompt cache
    tiered_default_context: bool  # ≥ 0.15.5: default num_ctx 4096/32768/262144 by VRAM
    assumed: bool  # the version was missing or unparsable: the newest meaning is assumed

    @property
    def label(self) -> str:
        shown = self.server_version or "unknown"
        if self.llama_server:
            base = f"Ollama {shown}: v0.30+ (llama-server) meanings"
        else:
            base = f"Ollama {shown}: pre-v0.30 (Ollama runner) meanings"
        return base + (" (version unknown, assumed)" if self.assumed else "")

    def describe(self) -> str:
        """One paragraph for the report: which meanings were applied."""
        if self.llama_server:
            details = ("load_duration = scheduler queue wait + cold load; slot wait = total − load − "
                       "prompt_eval − eval; prefill counts only tokens outside llama-server's prompt cache; "
                       "/api/ps context_length = effective per-slot context (clamped, possibly reduced "
                       "after an out-of-memory load); size = llama-server's buffers, size_vram its GPU part")
        else:
            details = ("load_duration = scheduler wait + load; /api/ps context_length = the requested "
                       "num_ctx (the effective one is min(requested, training context)); size = Ollama's "
                       "estimate (weights + KV + graph)")
        return f"{self.label}. {details}."


def semantics_for(version: str | None) -> Semantics:
    parsed = parse_version(version)
    if parsed is None:
        return Semantics(version, llama_server=True, tiered_default_context=True, assumed=True)
    return Semantics(version, llama_server=parsed >= LLAMA_SERVER_SINCE,
                     tiered_default_context=parsed >= TIERED_CONTEXT_SINCE, assumed=False)


def effective_num_ctx(ps_context_length: int | None, training_context: int | None, semantics: Semantics) -> int | None:
    """The per-slot context a runner really has, from its /api/ps context_length."""
    if ps_context_length is None:
        return None
    if semantics.llama_server or not training_context:
        return ps_context_length
    return min(ps_context_length, training_context)


def default_num_ctx(total_vram_bytes: int | None, gpu_overhead_bytes: int, semantics: Semantics) -> int:
    """The num_ctx a request gets when nothing sets it (routes.go Serve; 4096 before v0.15.5)."""
    if not semantics.tiered_default_context or not total_vram_bytes:
        return 4096
    usable = total_vram_bytes - gpu_overhead_bytes
    if usable >= 47 * 2**30:
        return 262144
    if usable >= 23 * 2**30:
        return 32768
    return 4096
