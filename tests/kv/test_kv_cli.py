"""`bench kv`: the calculator's output from a server or a GGUF file, and its one-line errors."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.endpoints import resolve_ollama_host

from .test_kv_formulas import write_tiny_gguf


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def sim_url(sim: Callable[..., str]) -> str:
    return sim(speed=100.0)


def test_worked_example_from_a_server(sim_url: str) -> None:
    code, output = run_cli("kv", "llama3.1:8b", "--ctx", "8192", "--parallel", "4", "--gpu-memory", "80GiB",
                           "--graph", "1GiB", "--target", sim_url)  # fmt: skip
    assert code == 0, output
    assert "32 layers, hidden 4096, 32 heads / 8 KV heads, head_dim 128" in output
    assert "num_ctx 8192 x NUM_PARALLEL 4 = 32768 tokens, cache f16" in output
    assert "  weights                         4.58 GiB" in output
    assert "  KV, rule of thumb               8.00 GiB (ctx x layers x hidden x 2 B)" in output
    assert "  KV, exact                       4.00 GiB (2 x layers x ctx x kv_heads x" in output
    assert "rule of thumb vs exact" in output and "2.00x (2x too high)" in output
    # (80 GiB - 1 GiB fit margin - 4.58 GiB weights - 1 GiB graph) / 1 GiB per slot at num_ctx 8192.
    assert "  largest NUM_PARALLEL that fits  73 (in 80.0 GiB less llama-server's 1 GiB fit" in output
    assert max(len(line) for line in output.splitlines()) <= 80


def test_quantised_cache_shows_nominal_and_stored_sizes(sim_url: str) -> None:
    code, output = run_cli("kv", "llama3.1:8b", "--parallel", "4", "--cache-type", "q8_0", "--target", sim_url)
    assert code == 0, output
    assert "KV, exact as stored             2.12 GiB (q8_0 blocks)" in output
    assert "largest NUM_PARALLEL that fits" in output and "give --gpu-memory" in output


def test_target_defaults_to_ollama_host(sim_url: str) -> None:
    host_port = sim_url.removeprefix("http://")
    code, output = run_cli("kv", "qwen2.5:0.5b", env={"OLLAMA_HOST": host_port})
    assert code == 0, output
    assert "qwen2.5:0.5b: qwen2, 24 layers, hidden 896, 14 heads / 2 KV heads" in output


def test_all_models_table_shows_each_rule_of_thumb_error(sim_url: str) -> None:
    code, output = run_cli("kv", "--all", "--gpu-memory", "24GiB", "--target", sim_url)
    assert code == 0, output
    rows = {line.split()[0]: line for line in output.splitlines() if line and line.split()[0].count(":") == 1}
    assert "2x too high" in rows["llama3.1:8b"]
    assert "3.5x too high" in rows["qwen2.5:0.5b"]
    assert "4x too high" in rows["llama3.3:70b"]
    assert "2x too low" in rows["nomic-embed-text:latest"]  # multi-head attention: K and V forgotten
    assert rows["llama3.3:70b"].split()[-1] == "0"  # 70B weights alone exceed 24 GiB


def test_missing_model_is_one_line_error(sim_url: str) -> None:
    code, output = run_cli("kv", "nosuch:7b", "--target", sim_url)
    assert code == 2
    assert output.strip().splitlines() == [f'error: model "nosuch:7b" not found on {sim_url}: try "ollama pull nosuch:7b"']


def test_unreachable_server_is_one_line_error() -> None:
    port = free_port()
    code, output = run_cli("kv", "llama3.1:8b", "--target", f"127.0.0.1:{port}")
    assert code == 2
    (line,) = output.strip().splitlines()
    assert line.startswith(f"error: http://127.0.0.1:{port}/api/tags: unreachable")


def test_gguf_file_metadata(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    code, output = run_cli("kv", "--gguf", str(path), "--ctx", "1024", "--gpu-memory", "1025MiB", "--graph", "0")
    assert code == 0, output
    assert "tiny.gguf: llama, 2 layers, hidden 64, 4 heads / 2 KV heads, head_dim 16" in output
    assert "24.0 KiB" in output  # weights: 4096 f16 + 4096 f32 elements
    # exact: 2 x 2 layers x 1024 x 2 heads x 16 x 2 B = 256 KiB; rule: 1024 x 2 x 64 x 2 = 256 KiB.
    assert "1.00x (exact)" in output
    # (1025 MiB - 1024 MiB fit margin - 24 KiB) / 256 KiB per slot = 3.9 -> 3
    assert "largest NUM_PARALLEL that fits  3 (in 1.00 GiB" in output


def test_bad_sizes_and_combinations_are_usage_errors(tmp_path: Path) -> None:
    assert run_cli("kv", "llama3.1:8b", "--gpu-memory", "lots")[0] == 2
    assert run_cli("kv", "--gguf", str(tmp_path / "missing.gguf"))[0] == 2
    code, output = run_cli("kv")
    assert code == 2 and "give a MODEL, --all, or --gguf FILE" in output


@pytest.mark.parametrize(
    ("ollama_host", "base_url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("example.com:8080", "http://example.com:8080"),
        ("https://example.com", "https://example.com:443"),
        ("http://10.0.0.5", "http://10.0.0.5:80"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("0.0.0.0:11500", "http://127.0.0.1:11500"),
    ],
)
def test_ollama_host_resolves_like_ollama_clients(ollama_host: str, base_url: str) -> None:
    assert resolve_ollama_host(ollama_host) == base_url


def test_catalog_models_are_answered_offline_in_80_columns() -> None:
    # No server anywhere: no --target, no OLLAMA_HOST; bench sim's catalog knows llama3.1:8b.
    offline = {"OLLAMA_HOST": "", "COLUMNS": "80"}
    for args in (("kv", "llama3.1:8b", "--ctx", "32768", "--parallel", "4", "--gpu-memory", "24GiB"),
                 ("kv", "llama3.1:8b", "--target", "sim"), ("kv", "--all", "--target", "sim", "--gpu-memory", "24GiB")):
        code, output = run_cli(*args, env=offline)
        assert code == 0, output
        assert output.startswith("from bench sim's catalog (no server asked")
        assert max(len(line) for line in output.splitlines()) <= 80, output
        if "--ctx" in args:
            assert "largest NUM_PARALLEL that fits  4 (in 24.0 GiB" in output


def test_a_model_outside_the_catalog_without_a_server_is_one_line_naming_the_ways_out() -> None:
    code, output = run_cli("kv", "nosuch:7b", env={"OLLAMA_HOST": f"127.0.0.1:{free_port()}", "COLUMNS": "80"})
    assert code == 2
    (line,) = output.strip().splitlines()
    assert line.startswith("error: ")
