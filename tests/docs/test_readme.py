"""The README and docs/ are part of the product: the quick start, the metric definitions, CI, the
commands table, the scenarios and every link agree with the code and with each other."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from bench.cli import cli
from bench.analysis.metrics import metrics_readme

ROOT = Path(__file__).resolve().parents[2]
README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
DOC_PATHS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README_PATH, *DOC_PATHS]

# The README is the front page: a screen or two, details in docs/ (issue 25).
README_MAX_LINES = 300


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def _section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith("#")
                and not line.startswith(("set ", "cd ", "source .ci/step-times.bash"))]
    development = _shell_blocks(_section(README, "Development"))
    assert ci_lines == [development[0].strip()]


def _run_ci_with_stand_ins(tmp_path: Path, failing: str = "") -> subprocess.CompletedProcess[str]:
    """.ci/run, unchanged, with every tool it calls replaced by a script that only records it."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / ".ci", repo / ".ci")
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("apt-get", "pip", "bench", "python", "go"):  # no chromium: the apt step runs
        fails = f'[ "$2" = "{failing}" ] && exit 1\n' if failing else ""
        (tools / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls"\n{fails}exit 0\n')
        (tools / name).chmod(0o755)
    for name in ("mktemp", "rm", "dirname"):
        found = shutil.which(name)
        assert found, name
        (tools / name).symlink_to(found)
    return subprocess.run([shutil.which("bash") or "bash", str(repo / ".ci" / "run")], capture_output=True,
                          text=True, env={"PATH": str(tools)}, timeout=60)


def test_ci_prints_one_timing_line_per_step(tmp_path: Path) -> None:
    done = _run_ci_with_stand_ins(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line.split(" took ")[0] for line in lines[:-1]] == [
        "ci: apt", "ci: pip", "ci: ollama", "ci: mypy", "ci: pytest"]
    assert all(re.fullmatch(r"ci: \w+ took \d+ s", line) for line in lines[:-1])
    assert re.fullmatch(r"ci: total \d+ s \(exit 0\)", lines[-1])
    assert "python -m pytest -q" in (tmp_path / "calls").read_text()


def test_ci_timing_keeps_a_failing_steps_exit_status(tmp_path: Path) -> None:
    done = _run_ci_with_stand_ins(tmp_path, failing="mypy")
    assert done.returncode == 1
    *_, mypy, total = done.stderr.splitlines()
    assert mypy.startswith("ci: mypy took ") and re.fullmatch(r"ci: total \d+ s \(exit 1\)", total)
    assert "pytest" not in (tmp_path / "calls").read_text()


def test_quick_start_runs_a_scenario_that_exists() -> None:
    first = _shell_blocks(_section(README, "Quick start"))[0].strip()
    assert first.startswith("pip install -e . && bench run ")
    scenario = first.split("bench run ", 1)[1].split()[0]
    assert (ROOT / scenario).is_file()


def test_the_readme_fits_on_a_page_with_a_picture() -> None:
    assert README.count("\n") <= README_MAX_LINES, "put the detail in docs/ and link it"
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", README)
    assert pictures and all((ROOT / picture).is_file() for picture in pictures)


def test_metric_definitions_in_the_docs_match_the_code() -> None:
    assert metrics_readme().strip() in (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")


def test_every_command_in_the_commands_table_exists() -> None:
    table = _section(README, "Commands")
    commands = set(re.findall(r"^\| `bench ([a-z-]+)", table, flags=re.M))
    registered = set(cli.commands)
    assert commands and commands <= registered, commands - registered
    assert registered <= commands | {"schema", "validate", "kv-analyze", "baseline"}, registered - commands


def test_every_scenario_mentioned_in_the_readme_and_docs_validates() -> None:
    text = "".join(page.read_text(encoding="utf-8") for page in PAGES)
    mentioned = sorted(set(re.findall(r"scenarios/[a-z0-9-]+\.yaml", text)))
    assert mentioned
    result = CliRunner().invoke(cli, ["validate", *[str(ROOT / name) for name in mentioned]])
    assert result.exit_code == 0, result.output


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {github_anchor(heading) for heading in re.findall(r"(?m)^#{1,6} (.+)$", text)}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [link for link in re.findall(r"\]\(([^)\s]+)\)", text)
            if not re.match(r"[a-z]+:", link)]


def test_github_anchor_follows_github() -> None:
    assert github_anchor("All cores and many hosts: `--workers N` and `--ray`") == \
        "all-cores-and-many-hosts---workers-n-and---ray"
    assert github_anchor("The real engine: llama.cpp's llama-server") == "the-real-engine-llamacpps-llama-server"


def test_every_relative_link_and_anchor_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for page in PAGES:
        for link in _links(page):
            path_part, _, anchor = link.partition("#")
            target = (page.parent / path_part).resolve() if path_part else page
            if not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{page.relative_to(ROOT)}: {link} (no such heading)")
    assert broken == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(README_PATH)}
    assert [str(page.relative_to(ROOT)) for page in DOC_PATHS if page.resolve() not in linked] == []
