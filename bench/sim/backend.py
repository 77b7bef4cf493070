"""The seam between the sim's Ollama front and what serves a loaded model (a "runner").

Ollama v0.33 keeps the registry, the scheduler, option defaults, prompt rendering and response
shaping, and hands each loaded model to one llama-server child process (llm/llama_server.go).
This module is that boundary inside `bench sim`: the front (scheduler.py, native.py,
openai_api.py) decides *what* to load and *which* request runs when; a `Backend` turns a
`LoadRequest` into a running `Runner` that does the model's work. `simulated.py` is the first
implementation (the roofline model); `bench sim --engine llama-server` (bench/engine) is meant
to be the second, driving a real llama-server.

Contract (every method is a coroutine on the server's event loop unless noted):

`Backend.load(request) -> Runner`
    Start a runner with exactly the resolved options in `request` (what Ollama would pass as
    `-c num_ctx*num_parallel -np num_parallel -b/-ub num_batch [--cache-type-k/v] [--flash-attn]
    [--context-shift --keep n] [-ngl n] [-t n]`) and return only once it is healthy (Ollama's
    `Load` waits for `/health` = ok). The scheduler is blocked meanwhile; how long this takes is
    the cold-load time clients see. Raise `LoadOutOfMemory` when the load failed for lack of
    memory (Ollama matches llama-server's OOM text: it may then retry once with a smaller
    automatic context or after evicting other models); raise `LoadFailed` for anything else.
    Cancellation (the first requester left) must stop the child and release its memory.

`Runner.memory -> LoadReport` (attribute, fixed after load)
    The buffers llama-server logged (`<backend> <kind> buffer size = N MiB`), how many layers
    were offloaded, and the per-slot context it runs with. /api/ps size and size_vram are
    derived from it by `LoadReport.size_bytes` / `size_vram_bytes` (Ollama's MemorySize rules).

`Runner.tokenize(text) -> list[int]`
    llama-server `/tokenize` (Ollama uses it to truncate over-long prompts).

`Runner.count_tokens(text) -> int`
    How many tokens `text` is (llama-server: `len(/tokenize)`); what Ollama's chatPrompt counts to
    fit a chat history into the context (at least one call per chat request).

`Runner.apply_template(messages) -> str`
    llama-server `/apply-template`: the model's own (Jinja) chat template applied to `messages`.
    Ollama's native chat path renders candidate histories with it to truncate them
    (truncateNativeChatMessages), and /api/generate on that path renders its prompt with it.

`Runner.completion(request) -> AsyncIterator[str | CompletionTimings]`
    llama-server `/completion` with `stream: true, cache_prompt: true`: yields each generated
    text piece as it is produced, then exactly one `CompletionTimings` (the final event's
    `timings` + stop type) and stops. The front calls it only while holding one of the
    runner's NUM_PARALLEL slots (Ollama's semaphore), so at most `num_parallel` run at once.
    Slot choice and the prompt cache are the runner's (llama-server's): `cache_n` tokens reused
    from a slot, `prompt_n` evaluated in `prompt_ms`. Closing the iterator early (client gone)
    must free the slot at once. With `request.messages` set (OLLAMA_GO_TEMPLATE=false), the same
    stream comes from llama-server `/v1/chat/completions` (SSE, `cache_prompt: true`, the model's
    Jinja template; llm/llama_server.go Chat 1885-2081), its final chunk's `timings` and
    `finish_reason` ("length" → stop type "limit") ending it.

`Runner.embed(texts, truncate) -> EmbedResult`
    Ollama's EmbedHandler per input, in order (P is 1 for embedding models, so Ollama's concurrent
    inputs run one after another): tokenise, cut to the context (or, with `truncate` false, raise
    `RunnerRequestError(400, "the input length exceeds the context length")`), then llama-server
    `/v1/embeddings` with that one input. Returns the raw vectors (the front normalises them, as
    Ollama does) and the prompt tokens the engine reported. An error llama-server answered with a
    status is a `RunnerRequestError` (Ollama's api.StatusError); anything else the front answers 400.

`Runner.health() -> bool`
    llama-server `/health` answers ok. False makes the scheduler reload the model.

`Runner.close()`
    Kill the child and wait for it to exit (Ollama's `stopProcess`); memory is free afterwards.

Registration: `bench sim --engine llama-server` (or BENCH_SIM_ENGINE) makes bench/sim/state.py import
`bench.engine.sim_backend.create_backend(config: SimConfig) -> Backend` lazily; an ImportError is
one line ("not available in this installation"), exit 2.

Nothing here imports from bench outside bench/sim; implementations may (bench/engine).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.sim.catalog import ModelSpec

MIB = 2**20
# Buffers on these backends are host memory (llm/llama_server.go isGPUBuffer).
_HOST_BACKENDS = ("CPU", "BLAS")


class LoadOutOfMemory(Exception):
    """The runner could not allocate its buffers (llama-server's "out of memory" / "failed to allocate")."""


class LoadFailed(Exception):
    """The runner did not come up for another reason; str() is the error text Ollama returns (500)."""


class RunnerRequestError(Exception):
    """The runner refused one request with an HTTP status (Ollama's api.StatusError); the front answers with it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LoadRequest:
    """A runner's launch options, resolved by the scheduler (what Ollama passes to llama-server)."""

    model: ModelSpec
    num_ctx: int  # per slot, already clamped to the training context; `-c` is num_ctx × num_parallel
    num_parallel: int  # `-np`
    num_batch: int  # `-b` and `-ub`
    flash_attention: str = "auto"  # `--flash-attn on|off|auto`
    kv_cache_type: str | None = None  # `--cache-type-k/-v`, None when OLLAMA_KV_CACHE_TYPE is unset
    context_shift: bool = True  # `--context-shift`
    num_keep: int = 4  # `--keep`
    num_gpu: int = -1  # -1: no `-ngl` (llama-server fits layers itself); else `-ngl n`
    num_thread: int = 0  # `-t n` when > 0
    use_mmap: bool | None = None  # False → `--load-mode none`
    embedding: bool = False  # `--embedding`
    # `--no-jinja --chat-template chatml`: Ollama renders the prompt itself (Go TEMPLATE), so
    # llama-server's Jinja engine is switched off (appendJinjaArgs, llm/llama_server.go 776-787).
    disable_jinja: bool = False
    # Free VRAM the scheduler saw (total − loaded runners): a simulated backend places layers by it;
    # a real one asks the device.
    gpu_free_bytes: int = 0
    host_free_bytes: int = 0


@dataclass(frozen=True)
class MemoryBuffer:
    """One `<backend> <kind> buffer size = N MiB` line of llama-server's log."""

    backend: str  # CUDA0, CPU, CPU_Mapped, CUDA_Host, MTL0_Mapped, ...
    kind: str  # model | KV | compute | output | RS
    size_bytes: int

    @property
    def on_gpu(self) -> bool:
        name = self.backend
        return not (name in _HOST_BACKENDS or name.startswith("CPU_") or name.endswith("_Host"))


@dataclass(frozen=True)
class LoadReport:
    """What a loaded runner holds, as Ollama parses it from llama-server's output."""

    buffers: tuple[MemoryBuffer, ...]
    gpu_layers: int  # "offloaded N/M layers to GPU"
    total_layers: int  # M: repeating layers + the output layer
    context_length: int  # per slot (llama.ContextLength())
    num_batch: int
    fit_overflow: bool = False  # llama-server's fit logged "overflowing" (some layers on the CPU)

    @property
    def size_vram_bytes(self) -> int:
        return sum(b.size_bytes for b in self.buffers if b.on_gpu)

    @property
    def size_bytes(self) -> int:
        """Ollama's MemorySize (llm/llama_server.go 2638-2676): all layers on the GPU ⇒ total = vram."""
        if not self.buffers:
            return 0
        if self.gpu_layers >= self.total_layers and not self.fit_overflow:
            return self.size_vram_bytes
        return sum(b.size_bytes for b in self.buffers)

    @property
    def gpu_fraction(self) -> float:
        return self.gpu_layers / self.total_layers if self.total_layers else 0.0

    def bytes_of(self, kind: str, *, gpu: bool | None = None) -> int:
        return sum(b.size_bytes for b in self.buffers if b.kind == kind and (gpu is None or b.on_gpu == gpu))


@dataclass(frozen=True)
class CompletionRequest:
    """One llama-server `/completion` call as Ollama makes it (cache_prompt is always on)."""

    prompt: str | Sequence[int]  # the rendered prompt, or token ids after Ollama's truncation
    n_predict: int  # already bounded (v0.33: at most 10 × num_ctx)
    n_keep: int = 4
    options: dict[str, Any] = field(default_factory=dict)  # temperature, seed, top_k, top_p, stop, ...
    json_schema: Any = None  # `format` (a schema, or "json")
    # A key for deterministic simulated output; a real engine ignores it.
    sample_key: str = ""
    # Ollama's native chat path (OLLAMA_GO_TEMPLATE=false): the messages go to llama-server's own
    # Jinja `/v1/chat/completions` instead of `prompt` to `/completion` (`prompt` stays the rendered
    # text, for a backend that has no template engine).
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class CompletionTimings:
    """The final event's `timings` and stop type; Ollama maps these to its metrics (§3.3).

    prompt_eval_count = cache_n + prompt_n, prompt_eval_duration = prompt_ms,
    eval_count = predicted_n, eval_duration = predicted_ms; stop_type "limit" → done_reason "length".
    """

    cache_n: int
    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float
    stop_type: str = "eos"  # eos | word | limit


@dataclass(frozen=True)
class EmbedResult:
    vectors: list[list[float]]
    prompt_n: int


class Runner(Protocol):
    """A loaded model served by one backend process (see the module docstring for the contract)."""

    memory: LoadReport

    async def health(self) -> bool: ...

    async def tokenize(self, text: str) -> list[int]: ...

    async def count_tokens(self, text: str) -> int: ...

    async def apply_template(self, messages: Sequence[dict[str, Any]]) -> str: ...

    def completion(self, request: CompletionRequest) -> AsyncIterator[str | CompletionTimings]: ...

    async def embed(self, texts: Sequence[str], truncate: bool = True) -> EmbedResult: ...

    async def close(self) -> None: ...


class Backend(Protocol):
    """Starts runners (see the module docstring for the contract)."""

    name: str

    async def load(self, request: LoadRequest) -> Runner: ...
