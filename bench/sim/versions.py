"""Which Ollama the simulator follows: v0.33 (default) or v0.12.6, chosen by --ollama-version.

Only behaviours a load test can see and that differ between the two are switched here; each flag
names the source that decides it (see shared/ollama-v0.33.md for the v0.33 side).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.sim.config_errors import SimConfigError

# Model families Ollama forces to NUM_PARALLEL=1 (server/sched.go load, ref ollama#4165).
V033_SERIAL_FAMILIES = frozenset({
    "mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next",
    "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni",
})
V0126_SERIAL_FAMILIES = frozenset({"mllama"})
# v0.12.6 ran these architectures on the Ollama engine, whose runner loaded weights after
# returning from Load (v0.12.6:fs/ggml/ggml.go:241-253); every other arch waited synchronously.
V0126_ASYNC_LOAD_ARCHS = frozenset({
    "gemma3", "gemma3n", "mistral3", "qwen3", "qwen3moe", "llama4", "mllama", "qwen25vl", "gptoss", "gpt-oss",
})


@dataclass(frozen=True)
class OllamaRules:
    """The version-dependent behaviours of one Ollama release."""

    version: str
    # v0.33: OLLAMA_CONTEXT_LENGTH unset → 4096/32768/262144 by total VRAM (routes.go Serve);
    # v0.12.6: a fixed 4096.
    tiered_default_ctx: bool
    # v0.33 needsReload clamps num_ctx to the training context and ignores auto-vs-auto ctx/batch;
    # v0.12.6 compared the raw api.Runner values.
    reload_normalises_options: bool
    # v0.33: a `shift` toggle reloads (--context-shift is a launch attribute).
    shift_is_launch_option: bool
    serial_families: frozenset[str]
    async_load_archs: frozenset[str]
    # v0.33 boundedNumPredict: -1 → 10 × num_ctx; v0.12.6: unbounded.
    bounded_num_predict: bool
    # v0.33 middleware/openai.go: role only on the first chunk and a separate finish chunk.
    openai_split_finish_chunk: bool
    # v0.33: memory from llama-server's buffer lines, partial offload by --fit, automatic batch
    # 512/1024/2048, KV cache type without a flash-attention gate. v0.12.6: Ollama's estimate
    # (weights + KV + graph), batch 512, quantised KV only with flash attention.
    llama_server_memory: bool
    # /api/ps context_length: v0.33 the clamped per-slot value; v0.12.6 the requested num_ctx.
    ps_reports_clamped_ctx: bool


V0_33 = OllamaRules(
    version="0.33.0",
    tiered_default_ctx=True,
    reload_normalises_options=True,
    shift_is_launch_option=True,
    serial_families=V033_SERIAL_FAMILIES,
    async_load_archs=frozenset(),
    bounded_num_predict=True,
    openai_split_finish_chunk=True,
    llama_server_memory=True,
    ps_reports_clamped_ctx=True,
)
V0_12_6 = OllamaRules(
    version="0.12.6",
    tiered_default_ctx=False,
    reload_normalises_options=False,
    shift_is_launch_option=False,
    serial_families=V0126_SERIAL_FAMILIES,
    async_load_archs=V0126_ASYNC_LOAD_ARCHS,
    bounded_num_predict=False,
    openai_split_finish_chunk=False,
    llama_server_memory=False,
    ps_reports_clamped_ctx=False,
)
_BY_NAME = {"0.33.0": V0_33, "0.33": V0_33, "0.12.6": V0_12_6, "0.12": V0_12_6}
SUPPORTED = ("0.33.0", "0.12.6")


def rules_for(version: str) -> OllamaRules:
    """The rules for `--ollama-version` (accepts 0.33, 0.33.0, v0.33.0, 0.12, 0.12.6, v0.12.6)."""
    key = version.strip().lower().removeprefix("v")
    rules = _BY_NAME.get(key)
    if rules is None:
        raise SimConfigError(f"--ollama-version {version!r}: the simulator follows one of {', '.join(SUPPORTED)}")
    return rules
