"""Run a scenario through the CLI as a user would, for the engine tier's end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from bench.cli import cli


def run_scenario(scenario: dict[str, Any] | Path, run_dir: Path) -> list[dict[str, Any]]:
    """`bench run SCENARIO --out RUN_DIR --no-report` (a dict is written beside RUN_DIR first);
    asserts exit 0 and returns every stored record, warmup included."""
    if isinstance(scenario, dict):
        path = run_dir.parent / f"{run_dir.name}-scenario.yaml"
        path.write_text(yaml.safe_dump(scenario))
    else:
        path = scenario
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(run_dir), "--no-report"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]
