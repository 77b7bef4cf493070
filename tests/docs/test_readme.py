"""The README is part of the product: its quick start, its metric definitions and CI agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bench.cli import cli
from bench.analysis.metrics import metrics_readme

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))]
    quick_start = _shell_blocks(README.split("## Quick start", 1)[1])
    assert ci_lines == [quick_start[1].strip()]


def test_quick_start_runs_a_scenario_that_exists() -> None:
    first = _shell_blocks(README.split("## Quick start", 1)[1])[0].strip()
    scenario = first.split("bench run ", 1)[1].split()[0]
    assert (ROOT / scenario).is_file()


def test_metric_definitions_in_the_readme_match_the_code() -> None:
    assert metrics_readme().strip() in README


def test_every_command_in_the_commands_table_exists() -> None:
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    commands = set(re.findall(r"^\| `bench ([a-z-]+)", table, flags=re.M))
    registered = set(cli.commands)
    assert commands and commands <= registered, commands - registered
    assert registered <= commands | {"schema", "validate", "kv-analyze", "baseline"}, registered - commands


def test_every_scenario_mentioned_in_the_readme_validates() -> None:
    mentioned = sorted(set(re.findall(r"scenarios/[a-z0-9-]+\.yaml", README)))
    assert mentioned
    result = CliRunner().invoke(cli, ["validate", *[str(ROOT / name) for name in mentioned]])
    assert result.exit_code == 0, result.output
