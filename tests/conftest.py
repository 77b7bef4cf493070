"""Shared fixtures: `sim` starts in-process simulators (bench.sim.testing.running_sim) and stops them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.sim.testing import running_sim


@pytest.fixture
def sim() -> Iterator[Callable[..., str]]:
    """Factory: `base_url = sim(speed=50, env={"OLLAMA_NUM_PARALLEL": "2"})`; all stopped at teardown."""
    with ExitStack() as stack:

        def start(**kwargs: Any) -> str:
            return stack.enter_context(running_sim(**kwargs))

        yield start
