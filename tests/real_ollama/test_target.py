"""`target: ollama` / `--target ollama` plumbing, with a stand-in `ollama` executable that runs
`bench sim` for `serve` and logs `create`: restarts per server env cell, bench's own variables,
one import per run, and one-line refusals before any run directory exists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli
from bench.errors import TargetError
from bench.ollama.pins import OLLAMA_VERSION
from bench.ollama.serve import preset_of, stand_ins
from bench.scenario.loading import parse_scenario

FAKE_OLLAMA = """#!/bin/sh
echo "$1 HOME=$HOME OLLAMA_MODELS=$OLLAMA_MODELS OLLAMA_NO_CLOUD=$OLLAMA_NO_CLOUD OLLAMA_NUM_PARALLEL=$OLLAMA_NUM_PARALLEL $2" >> "{calls}"
if [ "$1" = serve ]; then exec "{python}" -m bench sim --speed 50; fi
exit 0
"""


@pytest.fixture
def fake_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A built-looking Ollama in a private cache whose `ollama` is the stand-in above; its call log."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "cache" / "ollama" / OLLAMA_VERSION
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "ollama").mkdir(parents=True)
    calls = tmp_path / "calls.log"
    binary = root / "bin" / "ollama"
    binary.write_text(FAKE_OLLAMA.format(calls=calls, python=sys.executable))
    binary.chmod(0o755)
    (root / "lib" / "ollama" / "llama-server").write_text("")
    (root / "build.json").write_text("{}")
    return calls


def _scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


SWEEP = """
name: np
server:
  command: bench sim --engine llama-server
  env: {OLLAMA_NUM_PARALLEL: [1, 2], OLLAMA_MODELS: /home/user/.ollama/models}
workload: {model: llama3.2:1b, prompt: {tokens: 32, calibrate: false}, max_tokens: 4}
load: {concurrency: 1, requests: 2, warmup_requests: 0}
"""


def test_target_ollama_restarts_per_server_env_cell_with_its_own_models_dir(fake_install: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, SWEEP)), "--target", "ollama",
                                      "--out", str(run_dir), "--no-report"])
    assert result.exit_code == 0, result.output
    calls = fake_install.read_text().splitlines()
    serves = [line for line in calls if line.startswith("serve")]
    creates = [line for line in calls if line.startswith("create")]
    assert [line.split("OLLAMA_NUM_PARALLEL=")[1].split()[0] for line in serves] == ["1", "2"]
    assert len(creates) == 1 and creates[0].endswith("llama3.2:1b")  # OLLAMA_MODELS outlives restarts
    cache = tmp_path / "cache" / "ollama" / "state"
    for line in serves + creates:
        assert f"HOME={cache / 'home'}" in line and f"OLLAMA_MODELS={cache / 'models'}" in line
        assert "OLLAMA_NO_CLOUD=1" in line
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["target"]["kind"] == "ollama"
    assert [server["env"]["OLLAMA_NUM_PARALLEL"] for server in manifest["servers"]] == ["1", "2"]
    assert any("llama3.2:1b = preset tiny-llama3.2-1b" in note for note in manifest["notes"])


def test_a_sim_scenario_runs_unchanged_with_its_sim_env(fake_install: Path, tmp_path: Path) -> None:
    text = ("name: q\ntarget: sim\nsim: {env: {OLLAMA_NUM_PARALLEL: '3'}}\n"
            "workload: {model: tiny-llama3.2-1b, prompt: {tokens: 32, calibrate: false}, max_tokens: 4}\n"
            "load: {concurrency: 1, requests: 2, warmup_requests: 0}\n")
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, text)), "--target", "ollama",
                                      "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 0, result.output
    assert "OLLAMA_NUM_PARALLEL=3" in fake_install.read_text()


def test_without_a_build_the_run_is_one_line_and_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, SWEEP)), "--target", "ollama"])
    assert result.exit_code == 2
    assert "bench ollama build" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


def test_a_model_no_preset_serves_is_refused_in_one_line(fake_install: Path, tmp_path: Path) -> None:
    text = SWEEP.replace("llama3.2:1b", "mistral:7b")
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, text)), "--target", "ollama",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert 'model "mistral:7b"' in result.output and "tiny-llama3.2-1b" in result.output
    assert not (tmp_path / "run").exists()


def test_catalog_names_map_to_the_presets_scaled_from_them() -> None:
    assert stand_ins()["llama3.2:1b"] == "tiny-llama3.2-1b"
    assert stand_ins()["nomic-embed-text:latest"] == "tiny-embed"
    assert preset_of("qwen2.5:0.5b") == "tiny-qwen2.5-0.5b" and preset_of("kv-heavy:latest") == "kv-heavy"
    with pytest.raises(TargetError):
        preset_of("llama3.3:70b")


def test_target_ollama_with_another_server_command_is_refused() -> None:
    text = yaml.safe_dump({"target": "ollama", "server": {"command": "bench sim"}, "workload": {"model": "m"}})
    with pytest.raises(Exception, match="leave server.command out"):
        parse_scenario(text)
    parse_scenario(yaml.safe_dump({"target": "ollama", "server": {"env": {"OLLAMA_NUM_PARALLEL": [1, 2]}},
                                       "workload": {"model": "m"}}))
