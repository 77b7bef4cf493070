"""End to end: a run against the simulator as Ollama v0.33 and as v0.12.6 — the report says which
meanings it applied and shows the effective context of every load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli

pytestmark = pytest.mark.e2e


def _run_and_report(tmp_path: Path, version: str) -> str:
    scenario = {
        "name": f"versions-{version}", "target": "sim",
        "sim": {"speed": 20, "gpu": "h100", "ollama_version": version},
        "workload": {"endpoint": "native/chat", "model": "llama3.2:1b", "prompt": {"tokens": 64}, "max_tokens": 4},
        "load": {"concurrency": 1, "requests": 3, "warmup_requests": 0},
        "pace": {"gap_s": 0.6},  # a few /api/ps polls while the model is loaded
    }
    path = tmp_path / f"{version}.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / version
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (out / "report.html").read_text()))


def test_report_names_the_meanings_and_the_effective_context(tmp_path: Path) -> None:
    new = _run_and_report(tmp_path, "0.33.0")
    assert "Ollama 0.33.0: v0.30+ (llama-server) meanings" in new
    # No num_ctx in the scenario: the 80 GB profile's 262144 clamped to llama3.2:1b's 131072.
    assert "131,072" in new and "clamped to the training context 131072" in new
    old = _run_and_report(tmp_path, "0.12.6")
    assert "Ollama 0.12.6: pre-v0.30 (Ollama runner) meanings" in old
    assert "4,096" in old  # v0.12.6's fixed default context
