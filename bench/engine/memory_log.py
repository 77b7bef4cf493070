"""llama-server's "buffer size" log lines → /api/ps size and size_vram, as Ollama v0.33 computes them.

Mirrors `memoryParsingWriter` and `MemorySize` in ollama/llm/llama_server.go: every line matching
`bufferSizeRegex` is keyed by (log component, backend, kind) and a repeated key replaces the old
value (llama-server logs fit probes before the final load). total = Σ buffers; vram = Σ buffers on
GPU backends (not CPU, BLAS, CPU_*, *_Host). With every layer offloaded and no fit overflow,
total = vram. Without any buffer line, both are the GGUF file size.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

MIB = 1024 * 1024

BUFFER_SIZE_RE = re.compile(
    r"(?:^|\n)[^\n:]*?([A-Za-z_][A-Za-z0-9_]*):\s+(\S+)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB"
)
OFFLOADED_LAYERS_RE = re.compile(r"offloaded\s+(\d+)/(\d+)\s+layers to GPU")
FIT_OVERFLOW_RE = re.compile(r"common_params_fit_impl:\s+-\s+.+:\s+\d+\s+layers\s+\(\s*(\d+)\s+overflowing\)")


def is_gpu_buffer(backend: str) -> bool:
    """Ollama's isGPUBuffer: CPU, BLAS, CPU_* and *_Host are host memory; MTL0_Mapped is GPU."""
    if backend in ("CPU", "BLAS") or backend.startswith("CPU_"):
        return False
    return not backend.endswith("_Host")


@dataclass(frozen=True, slots=True)
class EngineBuffer:
    component: str  # the llama.cpp function that logged it, e.g. llama_kv_cache
    backend: str  # CPU, CPU_Mapped, CUDA0, CUDA_Host, MTL0_Mapped, ...
    kind: str  # model, KV, compute, output, RS
    size_bytes: int

    @property
    def on_gpu(self) -> bool:
        return is_gpu_buffer(self.backend)


@dataclass(frozen=True, slots=True)
class EngineMemory:
    """What /api/ps shows for one runner, and the buffers it came from."""

    size_bytes: int
    size_vram_bytes: int
    buffers: tuple[EngineBuffer, ...]

    def kind_bytes(self, kind: str) -> int:
        """Σ buffers of one kind (e.g. "KV")."""
        return sum(b.size_bytes for b in self.buffers if b.kind == kind)


class MemoryLog:
    """Feed it llama-server's output lines; ask `memory(file_size)` at any time (thread-safe)."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, str, str], int] = {}
        self._gpu_layers = 0
        self._total_layers = 0
        self._overflow_layers = 0
        self._lock = threading.Lock()

    def feed(self, text: str) -> None:
        """Parse one chunk of output (a line or several)."""
        # Cheap pre-checks: nearly every log line matches none of the patterns.
        if "buffer size" not in text and "layers" not in text:
            return
        with self._lock:
            for match in OFFLOADED_LAYERS_RE.finditer(text):
                self._gpu_layers, self._total_layers = int(match.group(1)), int(match.group(2))
            for match in FIT_OVERFLOW_RE.finditer(text):
                self._overflow_layers += int(match.group(1))
            for match in BUFFER_SIZE_RE.finditer(text):
                component, backend, kind, mib = match.groups()
                self._buffers[(component, backend, kind)] = int(float(mib) * MIB)

    def layers(self) -> tuple[int, int, bool]:
        """(layers offloaded to GPU, total layers, fit overflowed) as logged; (0, 0, False) if never logged."""
        with self._lock:
            return self._gpu_layers, self._total_layers, self._overflow_layers > 0

    def memory(self, model_file_bytes: int) -> EngineMemory:
        """size / size_vram as Ollama's MemorySize computes them."""
        with self._lock:
            buffers = tuple(EngineBuffer(c, b, k, size) for (c, b, k), size in self._buffers.items())
            all_layers_on_gpu = (
                self._total_layers > 0 and self._gpu_layers >= self._total_layers and self._overflow_layers == 0
            )
        if not buffers:
            return EngineMemory(model_file_bytes, model_file_bytes, ())
        total = sum(b.size_bytes for b in buffers)
        vram = sum(b.size_bytes for b in buffers if b.on_gpu)
        file_backed = sum(b.size_bytes for b in buffers if b.kind == "model" and (b.on_gpu or b.backend.endswith("_Mapped")))
        cpu_mapped = sum(b.size_bytes for b in buffers if b.kind == "model" and not b.on_gpu and b.backend.endswith("_Mapped"))
        # Partial offload with mmap: CPU_Mapped spans re-count weights already on the device.
        if cpu_mapped and file_backed > model_file_bytes:
            total -= min(cpu_mapped, file_backed - model_file_bytes)
        if all_layers_on_gpu:
            total = vram
        return EngineMemory(total, vram, buffers)


_LAUNCH_MARK = "starting llama-server"  # Ollama's slog line before each runner (llm/llama_server.go)
_CTX_ARG_RE = re.compile(r"\s-c\s+(\d+)")


def kv_bytes_per_launch(log_text: str) -> dict[int, int]:
    """{-c (num_ctx × NUM_PARALLEL): KV bytes llama-server logged} for each runner an `ollama serve`
    log shows starting; a later launch with the same -c replaces an earlier one.

    Ollama writes every llama-server line to its own stderr after its `starting llama-server
    cmd=...` line, so a server's log splits into one section per launch; within a section the KV
    buffers are summed as Ollama's MemorySize sums them (last value per component and backend).
    """
    found: dict[int, int] = {}
    sections = log_text.split(_LAUNCH_MARK)[1:]
    for section in sections:
        head = section.split("\n", 1)[0]
        ctx = _CTX_ARG_RE.search(head)
        if ctx is None:
            continue
        log = MemoryLog()
        log.feed(section)
        kv_bytes = log.memory(0).kind_bytes("KV")
        if kv_bytes:
            found[int(ctx.group(1))] = kv_bytes
    return found
