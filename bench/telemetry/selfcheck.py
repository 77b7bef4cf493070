"""Check the NVML sampler on a real GPU: allocate a known amount of CUDA memory, see it in the timeline.

    python -m bench.telemetry.selfcheck [--gib 1] [--out DIR]

Allocates through PyTorch or CuPy when installed, else straight through the CUDA driver
(libcuda, present wherever the NVIDIA driver is). The baseline is taken after the CUDA context
exists, so the context's own few hundred MiB do not count. Exit 0 when the device's used memory
and this process's memory both rose by the allocation (within 5%), 1 otherwise, 3 without a GPU.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.telemetry import start_telemetry

GIB = 1024**3


def _allocator() -> tuple[str, Callable[[int], Callable[[], None]]]:
    """(name, allocate(bytes) -> free()) using the first CUDA library available; context made now."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.zeros(1, device="cuda")  # create the context before the baseline

            def torch_alloc(size_bytes: int) -> Callable[[], None]:
                block = torch.empty(size_bytes, dtype=torch.uint8, device="cuda")
                torch.cuda.synchronize()

                def free() -> None:
                    nonlocal block
                    del block
                    torch.cuda.empty_cache()

                return free

            return "torch", torch_alloc
    except ImportError:
        pass
    try:
        import cupy

        cupy.zeros(1)
        cupy.cuda.set_allocator(None)  # no memory pool: frees go back to the driver at once

        def cupy_alloc(size_bytes: int) -> Callable[[], None]:
            memory = cupy.cuda.Memory(size_bytes)
            return lambda: memory.free()  # type: ignore[no-any-return]

        return "cupy", cupy_alloc
    except ImportError:
        pass
    libcuda = ctypes.CDLL("libcuda.so.1")

    def check(status: int, call: str) -> None:
        if status != 0:
            raise RuntimeError(f"{call} failed with CUDA error {status}")

    check(libcuda.cuInit(0), "cuInit")
    device = ctypes.c_int()
    check(libcuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    context = ctypes.c_void_p()
    check(libcuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    check(libcuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")

    def driver_alloc(size_bytes: int) -> Callable[[], None]:
        pointer = ctypes.c_uint64()
        check(libcuda.cuMemAlloc_v2(ctypes.byref(pointer), ctypes.c_size_t(size_bytes)), "cuMemAlloc")
        return lambda: check(libcuda.cuMemFree_v2(pointer), "cuMemFree")

    return "libcuda", driver_alloc


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _levels(session: object, since_s: float, t0: float) -> tuple[float, float]:
    samples = [s for s in session.nvml_sampler.samples if s.device == 0 and s.t_s >= since_s - t0]  # type: ignore[attr-defined]
    used = _median([s.mem_used_bytes for s in samples])
    proc = _median([float(s.server_proc_mem_bytes or 0) for s in samples])
    return used, proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="GiB to allocate")
    parser.add_argument("--out", type=Path, default=Path("."), help="where gpu.parquet is written")
    parser.add_argument("--hold-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    size_bytes = int(args.gib * GIB)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    session = start_telemetry(args.out, t0, None, [os.getpid()], interval_s=0.1)
    if not session.nvml_sampler.available:
        print(*session.notes, sep="\n")
        return 3
    try:
        print(f"GPU: {session.gpu_info}")
        library, allocate = _allocator()
        time.sleep(args.hold_s)
        baseline_since = time.monotonic() - args.hold_s / 2
        base_used, base_proc = _levels(session, baseline_since, t0)
        free = allocate(size_bytes)
        allocated_at = time.monotonic()
        time.sleep(args.hold_s)
        held_used, held_proc = _levels(session, allocated_at + args.hold_s / 2, t0)
        free()
        freed_at = time.monotonic()
        time.sleep(args.hold_s)
        after_used, _ = _levels(session, freed_at + args.hold_s / 2, t0)
    finally:
        session.stop()
    used_delta, proc_delta = held_used - base_used, held_proc - base_proc
    print(f"allocated {size_bytes / GIB:.3f} GiB through {library}; samples: {len(session.nvml_sampler.samples)}"
          f" over {time.monotonic() - t0:.1f} s")  # fmt: skip
    print(f"device used:      {base_used / GIB:.3f} -> {held_used / GIB:.3f} GiB (delta {used_delta / GIB:.3f} GiB),"
          f" after free {after_used / GIB:.3f} GiB")  # fmt: skip
    print(f"this process:     {base_proc / GIB:.3f} -> {held_proc / GIB:.3f} GiB (delta {proc_delta / GIB:.3f} GiB)")
    for note in session.notes:
        print(f"note: {note}")
    print(f"timeline: {args.out / 'gpu.parquet'}")
    used_ok = abs(used_delta - size_bytes) <= 0.05 * size_bytes
    proc_ok = abs(proc_delta - size_bytes) <= 0.05 * size_bytes
    if not proc_ok:
        print("per-process memory did not match: NVML may report host PIDs (container PID namespace)")
    print("OK" if used_ok and proc_ok else "MISMATCH")
    return 0 if used_ok and proc_ok else 1


if __name__ == "__main__":
    sys.exit(main())
