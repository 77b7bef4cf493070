"""Shared fixtures: `sim` starts in-process simulators (bench.sim.testing.running_sim) and stops them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.sim.testing import running_sim
from endless_server import EndlessServer


@pytest.fixture
def sim() -> Iterator[Callable[..., str]]:
    """Factory: `base_url = sim(speed=50, env={"OLLAMA_NUM_PARALLEL": "2"})`; all stopped at teardown."""
    with ExitStack() as stack:

        def start(**kwargs: Any) -> str:
            return stack.enter_context(running_sim(**kwargs))

        yield start


@pytest.fixture
def endless() -> Iterator[Callable[[str], EndlessServer]]:
    """Starts raw-socket servers whose answers never end (tests/endless_server.py); stops them after."""
    started: list[EndlessServer] = []

    def start(mode: str) -> EndlessServer:
        server = EndlessServer(mode)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
