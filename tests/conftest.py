"""Shared fixtures: `sim` starts in-process simulators (bench.sim.testing.running_sim) and stops them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.sim.testing import running_sim
from endless_server import EndlessServer

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
    """Under pytest-xdist (`-n 4 --dist loadgroup`, the README's test command), the tests that share
    a module- or session-scoped fixture of ours (a Ray cluster, a real `ollama serve`, a rendered
    report, a baseline run) run on one worker, so each such fixture is built once, not once per
    worker. Runs before xdist's own hook, which reads the marks (tryfirst)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue  # grouped by its own file (the Ray tests)
        group = _shared_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _shared_fixture_group(item: pytest.Item) -> str | None:
    """Where the first module/session fixture of ours that `item` uses is defined (its module or
    conftest folder), or None; pytest's own fixtures (tmp_path_factory, ...) have no base id."""
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return None
    for name in fixture_info.names_closure:
        definitions = fixture_info.name2fixturedefs.get(name)
        if not definitions:
            continue
        definition = definitions[-1]
        if definition.scope in ("module", "session") and definition.baseid:
            return definition.baseid
    return None
