"""The shipped kv-cache scenarios: they validate, and the sim one (trimmed) fits the true figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.mark.parametrize("name", ["kv-cache.yaml", "kv-cache-sim.yaml"])
def test_kv_scenarios_validate_to_30_cells(name: str) -> None:
    result = CliRunner().invoke(cli, ["validate", str(SCENARIOS / name)])
    assert result.exit_code == 0, result.output
    assert "ok (30 cells)" in result.output


@pytest.mark.e2e
def test_managed_sim_sweep_recovers_true_bytes_per_token(tmp_path: Path) -> None:
    scenario = yaml.safe_load((SCENARIOS / "kv-cache-sim.yaml").read_text())
    # The shipped sweep trimmed to 2 servers x 3 context sizes so the test takes seconds.
    scenario["server"]["command"] = "bench sim --speed 50 --gpu h100"
    scenario["server"]["env"]["OLLAMA_NUM_PARALLEL"] = [1, 4]
    scenario["server"]["env"]["OLLAMA_KV_CACHE_TYPE"] = "f16"
    scenario["workload"]["num_ctx"] = [2048, 8192, 32768]
    scenario["pace"]["gap_s"] = 0.3  # every runner is polled at least once between cells
    scenario_path = tmp_path / "kv.yaml"
    scenario_path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["run", str(scenario_path), "--out", str(run_dir), "--requests", "4", "--no-report"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["kv-analyze", str(run_dir)])
    assert result.exit_code == 0, result.output
    (group,) = json.loads((run_dir / "kv.json").read_text())["groups"]
    assert len(group["points"]) == 6
    assert group["bytes_per_token"]["ollama_ps"] == pytest.approx(131072, rel=0.01)
    assert group["ratio_to_measured"]["rule_of_thumb"] == pytest.approx(2.0, rel=0.01)
