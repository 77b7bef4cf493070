"""Fixtures whose product is made once per test run, also over pytest-xdist's workers.

The README's test command runs the suite in four worker processes (`-n 4 --dist loadgroup`). A
module- or session-scoped fixture would be built once per worker that needs it; tests/conftest.py
therefore keeps the tests sharing such a fixture on one worker. For a fixture that many slow tests
share (a rendered report, the gate's baseline run) that worker would be the whole run's critical
path, so these are made once per run instead: the first worker to ask makes it under a file lock
in the folder all workers' temp folders share, the others wait and read the same path. Their tests
then spread over the workers like any others (`run_wide` marks such a fixture for conftest.py).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

RUN_WIDE_FIXTURES: set[str] = set()
Function = TypeVar("Function", bound=Callable[..., object])


def run_wide(function: Function) -> Function:
    """Mark a fixture (put it under @pytest.fixture) as made once per run: not a reason to group."""
    RUN_WIDE_FIXTURES.add(function.__name__)
    return function


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]) -> Path:
    """`make(folder)`'s path, made once per test run: by this process, or by the first xdist worker
    that asked (the others wait on the lock). A make that raised is tried again by the next asker."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # pytest-of-USER/pytest-N/: every worker's basetemp is popen-gwK below it
    folder, made_file = shared / f"run-wide-{name}", shared / f"run-wide-{name}.made"
    with open(shared / f"run-wide-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if made_file.is_file():
            return Path(made_file.read_text())
        folder.mkdir(exist_ok=True)
        made = make(folder)
        made_file.write_text(str(made))
        return made


def group_by_shared_fixture(items: list[pytest.Item]) -> None:
    """Mark each test that uses a module- or session-scoped fixture of ours (a Ray cluster, a real
    `ollama serve`, a baseline run) with an xdist group, so that fixture is built once, on one
    worker; tests grouped by their own file (the Ray tests) and run-wide fixtures are left alone."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
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
        if not definitions or name in RUN_WIDE_FIXTURES:
            continue
        definition = definitions[-1]
        if definition.scope in ("module", "session") and definition.baseid:
            return str(definition.baseid)
    return None
