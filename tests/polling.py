"""Waiting in tests: on a condition with a deadline, never a fixed sleep.

A plain module (not conftest.py): tests/report has its own conftest, so `import conftest` would
find whichever conftest pytest loaded last.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout_s`.

    The one wait of the suite (`from polling import wait_for`): tests wait on a condition with a
    deadline, never sleep a fixed time. The deadline only matters when the condition never holds,
    so it is generous for a loaded 2-core machine.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout_s:.0f}s")
        time.sleep(0.02)

