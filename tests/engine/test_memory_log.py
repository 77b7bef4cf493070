"""Buffer-size log lines → /api/ps size and size_vram, as Ollama v0.33's memoryParsingWriter does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.engine.memory_log import MIB, MemoryLog, is_gpu_buffer, kv_bytes_per_launch

# Lines as llama-server prints them with --no-log-prefix (llama.cpp src/llama-model.cpp,
# llama-kv-cache.cpp, llama-context.cpp), CPU build.
CPU_LOAD_LOG = """\
load_tensors: loading model tensors, this can take a while... (mmap = true, direct_io = false)
load_tensors: offloading 0 repeating layers to GPU
load_tensors: offloaded 0/5 layers to GPU
load_tensors:   CPU_Mapped model buffer size =     3.82 MiB
llama_context:        CPU  output buffer size =     0.02 MiB
llama_kv_cache:        CPU KV buffer size =     8.00 MiB
llama_context:        CPU compute buffer size =    66.51 MiB
"""


def test_cpu_buffers_sum_into_size_with_no_vram() -> None:
    log = MemoryLog()
    log.feed(CPU_LOAD_LOG)
    memory = log.memory(model_file_bytes=4_200_000)  # the file also holds metadata
    assert memory.size_vram_bytes == 0
    assert memory.size_bytes == int(3.82 * MIB) + int(0.02 * MIB) + 8 * MIB + int(66.51 * MIB)
    assert memory.kind_bytes("KV") == 8 * MIB


def test_full_offload_reports_size_equal_to_vram() -> None:
    log = MemoryLog()
    log.feed(
        "load_tensors: offloaded 33/33 layers to GPU\n"
        "load_tensors:        CUDA0 model buffer size =  4403.49 MiB\n"
        "load_tensors:   CPU_Mapped model buffer size =   281.81 MiB\n"
        "llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB\n"
        "llama_context:      CUDA0 compute buffer size =   560.00 MiB\n"
        "llama_context:  CUDA_Host compute buffer size =    24.01 MiB\n"
    )
    memory = log.memory(model_file_bytes=4_920_753_328)
    vram = int(4403.49 * MIB) + 1024 * MIB + 560 * MIB
    assert memory.size_vram_bytes == vram
    assert memory.size_bytes == vram  # host compute and mapped buffers drop out of size


def test_partial_offload_counts_host_buffers_in_size_only() -> None:
    log = MemoryLog()
    log.feed(
        "load_tensors: offloaded 20/33 layers to GPU\n"
        "load_tensors:        CUDA0 model buffer size =  2600.00 MiB\n"
        "load_tensors:   CPU_Mapped model buffer size =  1900.00 MiB\n"
        "llama_kv_cache:      CUDA0 KV buffer size =   640.00 MiB\n"
        "llama_kv_cache:        CPU KV buffer size =   384.00 MiB\n"
    )
    memory = log.memory(model_file_bytes=5_000 * MIB)
    assert memory.size_vram_bytes == (2600 + 640) * MIB
    assert memory.size_bytes == (2600 + 1900 + 640 + 384) * MIB


def test_a_repeated_buffer_line_replaces_the_fit_probe_value() -> None:
    log = MemoryLog()
    log.feed("llama_kv_cache:        CPU KV buffer size =  4096.00 MiB\n")
    log.feed("llama_kv_cache:        CPU KV buffer size =    64.00 MiB\n")
    assert log.memory(1).size_bytes == 64 * MIB


def test_no_buffer_lines_falls_back_to_the_file_size() -> None:
    memory = MemoryLog().memory(model_file_bytes=123_456)
    assert (memory.size_bytes, memory.size_vram_bytes) == (123_456, 123_456)


def test_gpu_buffer_names_follow_ollama() -> None:
    assert not any(is_gpu_buffer(n) for n in ("CPU", "BLAS", "CPU_Mapped", "CPU_REPACK", "CUDA_Host"))
    assert all(is_gpu_buffer(n) for n in ("CUDA0", "ROCm0", "MTL0_Mapped", "Vulkan0"))


@given(st.text(max_size=300))
def test_arbitrary_output_never_breaks_the_parser(text: str) -> None:
    log = MemoryLog()
    log.feed(text)
    memory = log.memory(10)
    assert memory.size_bytes >= 0 and memory.size_vram_bytes >= 0


def test_an_ollama_serve_log_gives_the_kv_buffer_of_each_launch() -> None:
    """Ollama logs `starting llama-server cmd=...` and then passes every llama-server line on."""
    log = "\n".join([
        'time=2026-12-07T18:00:00Z level=INFO source=llama_server.go:433 msg="starting llama-server" '
        'cmd="/c/lib/ollama/llama-server --model /m/blobs/sha256-1 --port 40001 -c 4096 -np 2 --flash-attn auto"',
        CPU_LOAD_LOG,
        'time=2026-12-07T18:00:09Z level=INFO source=llama_server.go:433 msg="starting llama-server" '
        'cmd="/c/lib/ollama/llama-server --model /m/blobs/sha256-1 --port 40002 -c 8192 -np 2"',
        CPU_LOAD_LOG.replace("KV buffer size =     8.00", "KV buffer size =    16.00"),
        'msg="starting llama-server" cmd="/c/lib/ollama/llama-server --model x --port 1 -c 2048"',
        "load_tensors: the load failed before any KV buffer",
    ])
    assert kv_bytes_per_launch(log) == {4096: 8 * MIB, 8192: 16 * MIB}
