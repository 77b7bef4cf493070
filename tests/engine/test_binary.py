"""Finding llama-server: --llama-server, PATH, the engine extra; none is one line naming all three."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.engine import binary
from bench.engine.binary import EngineError, find_llama_server, llama_server_build
from bench.ollama.pins import LLAMA_CPP_BUILD


def test_missing_binary_names_all_three_ways(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binary, "_from_extra", lambda: None)
    with pytest.raises(EngineError) as caught:
        find_llama_server()
    message = str(caught.value)
    assert "PATH" in message and "--llama-server" in message and "bench[engine]" in message
    assert "\n" not in message


def test_explicit_path_wins_and_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    with pytest.raises(EngineError, match="not an executable file"):
        find_llama_server(fake)
    fake.chmod(0o755)
    assert find_llama_server(fake) == fake.resolve()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_llama_server() == fake.resolve()


def test_bench_sim_without_an_engine_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(binary, "_from_extra", lambda: None)
    result = CliRunner().invoke(cli, ["sim", "--engine", "llama-server", "--port", "0"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: llama-server not found")
    assert len(result.output.strip().splitlines()) == 1


def test_bad_model_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["sim", "--engine", "llama-server", "--model-file", "tiny"])
    assert result.exit_code == 2 and "expected NAME=PATH" in result.output
    result = CliRunner().invoke(cli, ["sim", "--engine", "llama-server", "--model-file", f"x={tmp_path / 'no.gguf'}"])
    assert result.exit_code == 2 and "is not a file" in result.output


@pytest.mark.engine
def test_the_engine_is_the_llama_cpp_build_the_pinned_ollama_runs(llama_server_binary: Path) -> None:
    """bench sim --engine llama-server and the built Ollama run one llama.cpp: bench/ollama/pins.py."""
    assert llama_server_build(llama_server_binary) == LLAMA_CPP_BUILD
