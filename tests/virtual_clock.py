"""An asyncio event loop whose clock is virtual: when nothing is ready it jumps to the next timer.

Code that sleeps with asyncio.sleep and reads loop.time() (bench/sim/live_device.py) then runs as it
does live, exactly and at once, whatever the machine's load: no test on it waits on a real clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._now_s = 0.0
        select = self._selector.select  # type: ignore[attr-defined]

        def advance(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            events = select(0)
            if not events:
                if timeout is None:
                    raise RuntimeError("deadlock: nothing is ready and no timer is set")
                self._now_s += timeout
            return events

        self._selector.select = advance  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._now_s


def run_virtual(coroutine: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()
