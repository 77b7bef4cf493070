"""`targets:` — the same scenario against several existing servers side by side, in one run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import ScenarioError
from bench.plan import plan_cells
from bench.records import load_run
from bench.scenario import parse_scenario

pytestmark = pytest.mark.e2e

SCENARIO = """
name: two-servers
targets: [{first}, {second}]
workload: {{endpoint: native/chat, model: qwen2.5:0.5b, prompt: {{tokens: 128}}, max_tokens: 8, seed: 1}}
load: {{concurrency: [1, 2], requests: 6, warmup_requests: 1}}
"""


def test_targets_list_plans_one_group_of_cells_per_server() -> None:
    scenario = parse_scenario(SCENARIO.format(first="http://127.0.0.1:1", second="http://127.0.0.1:2"))
    cells = plan_cells(scenario)
    assert [(c.settings.target, c.settings.concurrency, c.server_group) for c in cells] == [
        ("http://127.0.0.1:1", 1, 0), ("http://127.0.0.1:1", 2, 0),
        ("http://127.0.0.1:2", 1, 1), ("http://127.0.0.1:2", 2, 1)]


def test_targets_list_refuses_a_target_or_server_alongside() -> None:
    with pytest.raises(ScenarioError, match="targets"):
        parse_scenario("target: http://127.0.0.1:1\n" + SCENARIO.format(first="http://127.0.0.1:1",
                                                                         second="http://127.0.0.1:2"))


def test_one_run_measures_every_listed_server(sim: Callable[..., str], tmp_path: Path) -> None:
    first, second = sim(speed=50), sim(speed=50, env={"OLLAMA_NUM_PARALLEL": "2"})
    scenario = tmp_path / "two.yaml"
    scenario.write_text(SCENARIO.format(first=first, second=second))
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    run = load_run(tmp_path / "run")
    cells = run.manifest.cells
    assert len(cells) == 4 and all(cell.status == "complete" for cell in cells)
    assert sorted(run.manifest.targets) == sorted([first, second])
    measured = run.requests[run.requests["phase"] == "measure"]
    by_target = {url: measured[measured["cell_id"].isin([c.cell_id for c in cells
                                                          if c.settings.target == url])]
                 for url in (first, second)}
    assert all(len(frame) == 12 and frame["error_class"].isna().all() for frame in by_target.values())
    assert all("target=" in cell.label for cell in cells)
