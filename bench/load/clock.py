"""The load's clock and its event loop: run-relative monotonic time, and `run_async`.

Every time is seconds since the run's t0 on time.monotonic() (CLOCK_MONOTONIC: one clock for
every process on a Linux host, so client processes share it).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")
LoopT = TypeVar("LoopT", bound=asyncio.AbstractEventLoop)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (less client CPU per request).

    The one event loop policy of every load bench drives: `bench run`, `bench perf` and its workers.
    The coroutine is closed on the way out, so one interrupted before its loop started is not
    reported "never awaited" at exit.
    """
    try:
        with asyncio.Runner(loop_factory=uninterrupted(_loop_factory())) as runner:
            return runner.run(coroutine)
    finally:
        coroutine.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # optional: not every platform has it (Windows)
    except ModuleNotFoundError as error:
        if error.name != "uvloop":
            raise
        return asyncio.new_event_loop
    return uvloop.new_event_loop  # type: ignore[no-any-return]


def uninterrupted(factory: Callable[[], LoopT]) -> Callable[[], LoopT]:
    """`factory` with SIGINT and SIGTERM handled only after it returns.

    Ctrl-C (or a SIGTERM handler that raises KeyboardInterrupt, as `bench perf` installs) landing
    inside an event loop's constructor leaves a half-built loop whose __del__ prints a traceback at
    exit (AttributeError: no attribute '_ssock'). The Python-level handlers are swapped for a
    recorder instead of masking the signal, because a mask covers one thread and the kernel hands
    a process signal to any thread that does not block it. Held signals then go to the handlers
    that were in place, with the loop whole (and closed, if one raises).
    """
    def make() -> LoopT:
        if threading.current_thread() is not threading.main_thread():
            return factory()  # only the main thread may set handlers, and only it receives them
        held: list[tuple[int, FrameType | None]] = []
        previous = {signum: signal.signal(signum, lambda number, frame: held.append((number, frame)))
                    for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            loop = factory()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        try:
            for number, frame in held:
                _deliver(number, frame, previous[signal.Signals(number)])
        except BaseException:
            loop.close()
            raise
        return loop

    return make


def _deliver(signum: int, frame: FrameType | None, handler: Any) -> None:
    """Hand a held signal to the handler that was in place when it arrived."""
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action (SIGTERM: end the process), now


class Clock:
    """Run-relative monotonic time."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.t0_epoch_s = time.time() - (time.monotonic() - self.t0)

    def now_s(self) -> float:
        return time.monotonic() - self.t0
