"""`bench run` against a bare llama-server (not Ollama): OpenAI surface only, models from /v1/models."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli
from bench.processes import free_port
from tests.engine.runs import run_scenario

pytestmark = pytest.mark.engine


@pytest.fixture
def bare_llama_server(llama_server_binary: Path, tiny_gguf: Path, tmp_path: Path):
    """llama-server started by hand, as a user would: its own defaults, an alias for the model name
    (and one thread: llama.cpp's two spin-wait for each other on a busy 2-core box, docs/engine.md)."""
    port = free_port()
    log = open(tmp_path / "llama-server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(llama_server_binary), "--model", str(tiny_gguf), "--alias", "peer", "--host", "127.0.0.1",
         "--port", str(port), "-c", "2048", "-np", "2", "-t", "1", "--no-webui"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "llama-server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _scenario(tmp_path: Path, base_url: str, endpoint: str, model: str = "peer") -> Path:
    scenario = {
        "name": "bare-llama-server", "target": base_url,
        "workload": {"endpoint": endpoint, "model": model, "prompt": {"tokens": 64}, "max_tokens": 24,
                     "temperature": 0.7},
        "load": {"arrival": "closed", "concurrency": [1, 2], "requests": 6, "warmup_requests": 1},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def test_openai_chat_run_against_bare_llama_server_gets_max_tokens_every_time(
    bare_llama_server: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    records = run_scenario(_scenario(tmp_path, bare_llama_server, "openai/chat"), run_dir)
    measured = [r for r in records if r["phase"] == "measure"]
    assert len(measured) == 12
    assert all(r["error_class"] is None for r in records)
    assert [r["output_tokens"] for r in measured] == [24] * 12
    assert all(len(r["chunk_times_s"]) == 24 for r in measured)  # one streamed chunk per token
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["target"]["api"] == "openai-compatible"
    assert manifest["target"]["server"].startswith("llama.cpp llama-server")
    assert any("/api/ps probes skipped" in note for note in manifest["notes"])
    assert not (run_dir / "ps.parquet").exists()


def test_native_surface_against_a_non_ollama_server_is_one_line_before_any_load(
    bare_llama_server: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, bare_llama_server, "native/chat")),
                                      "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 2
    assert "not Ollama: the native surface" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_model_the_server_does_not_list_names_what_it_offers(bare_llama_server: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(_scenario(tmp_path, bare_llama_server, "openai/chat", "llama3")),
                                      "--out", str(tmp_path / "run"), "--no-report"])
    assert result.exit_code == 2
    assert 'model "llama3" not offered' in result.output and "peer" in result.output
