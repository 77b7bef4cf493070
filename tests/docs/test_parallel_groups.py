"""The README's test command runs the suite over pytest-xdist workers; its grouping must hold.

`--dist loadgroup` keeps the tests that share a module fixture on one worker and tests/run_wide.py
makes a run-wide fixture once. pytest 9.2 silently broke the first (xdist 3.8 writes the group into
a node id field pytest 9.2 no longer reads: every group was spread over the workers, each building
its own Ray cluster and baseline run), so a tiny suite is run here the README's way and checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import pytest
from run_wide import group_by_shared_fixture, once_per_run, run_wide

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    group_by_shared_fixture(items)

@pytest.fixture(scope="session")
@run_wide
def made_once(tmp_path_factory):
    def make(folder):
        (folder.parent / "makes").open("a").write("x")
        return folder
    return once_per_run(tmp_path_factory, "probe", make)
"""

GROUPED = """
import os, pathlib, pytest

@pytest.fixture(scope="module")
def shared():
    return "module fixture"

@pytest.mark.parametrize("n", range(6))
def test_shared(shared, n, tmp_path_factory):
    folder = tmp_path_factory.getbasetemp().parent
    (folder / f"grouped-{n}").write_text(os.environ.get("PYTEST_XDIST_WORKER", "main"))
"""

SPREAD = """
import os, time, pytest

@pytest.mark.parametrize("n", range(6))
def test_run_wide(made_once, n):
    time.sleep(0.2)
"""


@pytest.mark.timeout(120)
def test_tests_sharing_a_module_fixture_run_on_one_worker_and_run_wide_ones_are_made_once(tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_spread.py").write_text(SPREAD)
    base = tmp_path / "base"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           "--basetemp", str(base), str(tmp_path)], capture_output=True, text=True, timeout=110,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = {path.read_text() for path in base.glob("grouped-*")}
    assert len(list(base.glob("grouped-*"))) == 6 and len(workers) == 1, workers
    assert (base / "makes").read_text() == "x"  # the run-wide fixture, made once for both workers
