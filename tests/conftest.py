"""Shared fixtures: `sim` starts in-process simulators (bench.sim.testing.running_sim) and stops them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.sim.testing import running_sim


def wait_for(condition: Callable[[], bool], timeout_s: float = 90.0, what: str = "condition") -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout_s`.

    The one wait of the suite (`from conftest import wait_for`): tests wait on a condition with a
    deadline, never sleep a fixed time. The deadline only matters when the condition never holds,
    so it is generous for a loaded 2-core machine.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout_s:.0f}s")
        time.sleep(0.02)


@pytest.fixture
def sim() -> Iterator[Callable[..., str]]:
    """Factory: `base_url = sim(speed=50, env={"OLLAMA_NUM_PARALLEL": "2"})`; all stopped at teardown."""
    with ExitStack() as stack:

        def start(**kwargs: Any) -> str:
            return stack.enter_context(running_sim(**kwargs))

        yield start
