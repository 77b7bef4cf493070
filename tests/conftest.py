"""Shared fixtures: `sim` starts in-process simulators (bench.sim.testing.running_sim) and stops them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.sim.testing import running_sim
from endless_server import EndlessServer
from run_wide import group_by_shared_fixture

# bench's console takes COLUMNS as the width when stdout is not a terminal (bench.cli.console);
# pytest-xdist's workers get COLUMNS=80, a shell may export its own: the CLI's tables in these
# tests are laid out at the one non-terminal width whoever runs them.
os.environ.pop("COLUMNS", None)


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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`-n 4 --dist loadgroup`, the README's test command) the tests that share
    a module- or session-scoped fixture of ours run on one worker (tests/run_wide.py). Runs before
    xdist's own hook, which reads the marks (tryfirst)."""
    group_by_shared_fixture(items)
