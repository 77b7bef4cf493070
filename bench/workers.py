"""Client processes: N spawned workers on one clock, released together, streaming results back.

Used by `bench run --workers N` (bench.run.cell_workers) and `bench perf --workers N`
(bench.perf.workers). Every process stamps time.monotonic() (CLOCK_MONOTONIC: one clock for
every process on a Linux host) relative to the parent's t0, so merged records lie on one time
axis with no offset to correct. Workers warm up, then wait on one barrier (`WorkerLink.ready`),
so their measured windows start together. The parent can ask them to stop dispatching
(`WorkerPool.stop_dispatch`), e.g. when a cell's stop_when is met or on Ctrl-C.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Spawning N interpreters that import bench, then warming each up, on a busy machine.
READY_DEADLINE_S = 120.0
# How often a worker checks that its parent still lives (see _end_with_parent).
PARENT_CHECK_S = 0.5


def split_evenly(total: int, workers: int) -> list[int]:
    """`total` shared over at most `workers` parts: as even as possible, every part at least one."""
    workers = max(1, min(workers, total))
    share, extra = divmod(total, workers)
    return [share + (1 if index < extra else 0) for index in range(workers)]


@dataclass
class WorkerLink:
    """A worker process's side: the shared t0, the start barrier, the way back, the stop flag."""

    worker: int
    workers: int
    t0: float
    _barrier: Any
    _results: Any
    _stop: Any
    parent_pid: int  # the process that started the pool
    _abort: Any = None  # set with _stop when in-flight requests must end now (grace over)

    def ready(self) -> None:
        """Block until every worker is ready (call after warmup, right before measuring)."""
        self._barrier.wait(READY_DEADLINE_S)

    def send(self, item: Any) -> None:
        """Stream one item (a record) to the parent as soon as it exists."""
        self._results.put(("item", self.worker, item))

    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def wait_stop(self, timeout_s: float) -> bool:
        return bool(self._stop.wait(timeout_s))

    def abort_requested(self) -> bool:
        return self._abort is not None and self._abort.is_set()


WorkerMain = Callable[[Any, WorkerLink], Any]


def _end_with_parent(parent_pid: int) -> None:
    """End this worker when its parent dies (SIGKILLed: a lost Ray task, `kill -9` of bench) rather
    than send load for nobody; a dead parent's children are re-parented, so getppid() changes.
    (PR_SET_PDEATHSIG would fire when the parent's starting *thread* ends, not the process.)"""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _entry(main: WorkerMain, plan: Any, link: WorkerLink) -> None:
    _end_with_parent(link.parent_pid)
    try:
        result = main(plan, link)
        link._results.put(("done", link.worker, result, None))
    except BaseException:  # noqa: BLE001 - the parent must hear of any failure, not hang
        link._barrier.abort()
        link._results.put(("done", link.worker, None, traceback.format_exc()))


class WorkerPool:
    """N spawned processes running `main(plan, link)`; `collect()` gathers what they send."""

    def __init__(self, main: WorkerMain, plans: list[Any], t0: float) -> None:
        # spawn: no forked copy of a parent's event loop, threads or open sockets.
        context = multiprocessing.get_context("spawn")
        self._barrier = context.Barrier(len(plans))
        self._results = context.Queue()
        self._stop = context.Event()
        self._abort = context.Event()
        self.processes = [
            context.Process(target=_entry, daemon=True, args=(main, plan, WorkerLink(
                index, len(plans), t0, self._barrier, self._results, self._stop, os.getpid(), self._abort)))
            for index, plan in enumerate(plans)
        ]
        for process in self.processes:
            process.start()

    def stop_dispatch(self) -> None:
        """Ask every worker to send no new requests (those in flight finish)."""
        self._stop.set()

    def abort(self) -> None:
        """Ask every worker to end its in-flight requests now (recorded as interrupted)."""
        self._abort.set()
        self._stop.set()

    def collect(self, on_item: Callable[[int, Any], None], deadline_s: float,
                cancelled: threading.Event | None = None) -> list[Any]:
        """Pass streamed items to on_item until every worker is done; their results in worker order.

        Raises RuntimeError when a worker failed or none answered within deadline_s.
        """
        results: dict[int, Any] = {}
        failures: list[str] = []
        try:
            while len(results) + len(failures) < len(self.processes):
                if cancelled is not None and cancelled.is_set():
                    raise RuntimeError("client workers cancelled")
                try:
                    message = self._results.get(timeout=deadline_s)
                except queue.Empty:
                    raise RuntimeError(f"client workers sent nothing for {deadline_s:g} s") from None
                if message[0] == "item":
                    on_item(message[1], message[2])
                elif message[3] is not None:
                    failures.append(message[3])
                    results[message[1]] = None
                else:
                    results[message[1]] = message[2]
        finally:
            self.close()
        if failures:
            raise RuntimeError(f"a client worker failed:\n{failures[0]}")
        return [results[index] for index in sorted(results)]

    def close(self) -> None:
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
