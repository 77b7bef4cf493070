"""The llama-server command line Ollama v0.33 builds (`startLlamaServer`, llm/llama_server.go).

Only what applies to a text GGUF without projectors, adapters or drafts: always
`--model --port --host 127.0.0.1 --no-webui --offline -c num_ctx×P -np P --log-verbosity 4
--no-log-prefix --no-log-timestamps`, then `--no-jinja --chat-template chatml` when Ollama renders
the prompt itself (a Go TEMPLATE; not with OLLAMA_GO_TEMPLATE=false, which leaves llama-server's
Jinja on for /v1/chat/completions), `--load-mode none` (mmap off, as for every CPU-only load), the KV cache type (iff OLLAMA_KV_CACHE_TYPE is set,
passed verbatim), `--flash-attn on|off|auto`, the batch (`--embedding` for embedding models),
`-ngl` only when num_gpu is set, `-t` only when num_thread > 0, and `--context-shift --keep
num_keep` when context shift is on (the default for every family but deepseek2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path



@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """One runner's settings, resolved by the scheduler before launch."""

    model_path: Path
    num_ctx: int  # per slot (already clamped to the model's training context)
    num_parallel: int = 1
    kv_cache_type: str = ""  # OLLAMA_KV_CACHE_TYPE, lower-cased; "" passes no flag
    flash_attention: str = "auto"  # on | off | auto
    num_batch: int = 512
    embedding: bool = False
    disable_jinja: bool = False  # Ollama renders the prompt: `--no-jinja --chat-template chatml`
    num_gpu: int | None = None  # None: Ollama's default -1, no -ngl flag
    num_thread: int | None = None
    context_shift: bool = True
    num_keep: int = 4
    # Ollama disables mmap for a CPU-only load (server/sched.go applyLlamaServerMmapDefaults):
    # `--load-mode none`, as the real Ollama v0.33.0 launched it here (its log, b10488).
    use_mmap: bool = False

    @property
    def ctx_total(self) -> int:
        """-c: the whole KV cache, num_ctx × NUM_PARALLEL."""
        return self.num_ctx * self.num_parallel


def automatic_generation_batch(ctx_total: int) -> int:
    """Ollama's num_batch when the request sets none and no GPU memory figure is known (CPU).

    `generationBatchForContext` (server/sched.go): ctx > 32768 → 2048, ctx > 4096 → 1024, else 512;
    the GPU step-down needs predicted/available memory, which CPU-only loads do not have.
    """
    if ctx_total > 32768:
        return 2048
    if ctx_total > 4096:
        return 1024
    return 512


def llama_server_args(settings: LaunchSettings, port: int) -> list[str]:
    """The arguments after the binary, in Ollama's order."""
    args = [
        "--model", str(settings.model_path),
        "--port", str(port),
        "--host", "127.0.0.1",
        "--no-webui",
        "--offline",
        "-c", str(settings.ctx_total),
        "-np", str(settings.num_parallel),
        "--log-verbosity", "4",
        "--no-log-prefix",
        "--no-log-timestamps",
    ]  # fmt: skip
    if settings.disable_jinja:
        args += ["--no-jinja", "--chat-template", "chatml"]
    if not settings.use_mmap:
        args += ["--load-mode", "none"]
    if settings.kv_cache_type:
        args += ["--cache-type-k", settings.kv_cache_type, "--cache-type-v", settings.kv_cache_type]
    args += ["--flash-attn", settings.flash_attention]
    if settings.embedding:
        args.append("--embedding")
        batch = min(settings.num_batch, settings.ctx_total)
        if batch > 0:
            args += ["-b", str(batch), "-ub", str(batch)]
    elif settings.num_batch > 0:
        args += ["-b", str(settings.num_batch), "-ub", str(settings.num_batch)]
    if settings.num_gpu is not None and settings.num_gpu >= 0:
        args += ["-ngl", str(settings.num_gpu)]
    if settings.num_thread:
        args += ["-t", str(settings.num_thread)]
    if settings.context_shift:
        args.append("--context-shift")
        if settings.num_keep > 0:
            args += ["--keep", str(settings.num_keep)]
    return args
