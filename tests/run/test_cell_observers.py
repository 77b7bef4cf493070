"""The cell loop tells its observers each step of a cell in one order (bench.run.observers): a given
observer hears a cell's start, its calibration probes, its load's start, the warmup's end and the cell's
end, after the loop's own features have settled it (status, stop verdict, the manifest written); the stop
rule's verdict is printed before the cell's line."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from bench.records import RequestRecord
from bench.run.observers import CellRun, SilentObserver
from bench.run.runner import RunOptions, run_scenario
from bench.scenario import Scenario

pytestmark = pytest.mark.e2e

SCENARIO = {
    "workload": {"endpoint": "native/chat", "model": "llama3.2:1b", "prompt": {"tokens": 64}, "max_tokens": 8},
    "load": {"concurrency": [1, 2], "requests": 8, "warmup_requests": 1},
    "stop_when": {"within": {"output_tps": "90%"}, "min_requests": 4},
}


class Recorder(SilentObserver):
    """Writes down what it hears, and what the cell looked like when it heard it."""

    def __init__(self, run_dir: Path) -> None:
        self.heard: list[str] = []
        self.manifest = run_dir / "manifest.json"

    def cell_started(self, run: CellRun) -> None:
        self.heard.append(f"started {run.cell.cell_index}")

    def load_started(self, run: CellRun) -> None:
        self.heard.append(f"load {run.cell.cell_index} requests={run.load.requests}")

    def record_seen(self, record: RequestRecord) -> None:
        kind = "probe" if (record.request_index or 0) < 0 else record.phase
        if not self.heard or self.heard[-1] != kind:  # one entry per run of records of a kind
            self.heard.append(kind)

    async def load_warm(self, run: CellRun) -> None:
        self.heard.append(f"warm {run.cell.cell_index}")

    async def cell_ended(self, run: CellRun) -> None:
        stop = "verdict" if run.stop is not None else "no verdict"
        stored = json.loads(self.manifest.read_text())["cells"][run.cell.cell_index]["status"]
        self.heard.append(f"ended {run.cell.cell_index} {run.status} {stop} manifest={stored}")


def test_an_observer_hears_each_step_of_each_cell_after_the_loops_own_features(
        sim: Callable[..., str], tmp_path: Path) -> None:
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "2"})
    recorder, out = Recorder(tmp_path / "run"), io.StringIO()
    result = run_scenario(Scenario.model_validate(SCENARIO),
                          RunOptions(target=base_url, out_dir=tmp_path / "run", report=False),
                          Console(file=out, width=200), observers=(recorder,))
    assert result.status == "complete"
    # stop_when has no maximum: the cell's own 8 requests bound it; the probes come before the load.
    assert recorder.heard == [
        "started 0", "probe", "load 0 requests=8", "warmup", "warm 0", "measure", "ended 0 complete verdict manifest=complete",
        "started 1", "load 1 requests=8", "warmup", "warm 1", "measure", "ended 1 complete verdict manifest=complete"]
    # The stop rule's verdict is printed before the line that ends its cell.
    lines = out.getvalue().splitlines()
    for index, label in enumerate(cell.label for cell in result.manifest.cells):
        verdict = next(n for n, line in enumerate(lines) if line.startswith(f"{label}: "))
        cell_line = next(n for n, line in enumerate(lines) if line.startswith(f"cell {index + 1}/2 {label}: "))
        assert verdict < cell_line, out.getvalue()

