"""`bench sim` reads OLLAMA_* like Ollama, rejects bad values in one line, and shuts down cleanly."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

import httpx
import pytest

from bench.sim.config import build_config, parse_host
from bench.sim.durations import keep_alive_s, parse_go_duration_s
from bench.sim.config_errors import SimConfigError


def test_defaults_match_ollama() -> None:
    """envconfig/config.go defaults: NUM_PARALLEL 1, MAX_QUEUE 512, MAX_LOADED_MODELS 0 (auto), CONTEXT_LENGTH 0 (tiered)."""
    config = build_config({})
    assert (config.host, config.port) == ("127.0.0.1", 11434)
    assert (config.num_parallel, config.max_queue, config.max_loaded_models) == (1, 512, 0)
    assert (config.keep_alive_s, config.context_length, config.effective_kv_cache_type) == (300.0, 0, "f16")
    assert config.rules.version == "0.33.0" and config.default_num_ctx == 32768  # rtx4090: 24564 MiB ≥ 23 GiB


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5m", 300), ("1h30m", 5400), ("300ms", 0.3), (0, 0), ("0", 0), (30, 30), (2.5, 2.5), ("-1m", math.inf), (-1, math.inf), ("45", 45)],
)
def test_keep_alive_accepts_every_ollama_form(value: object, seconds: float) -> None:
    assert keep_alive_s(value) == pytest.approx(seconds)


def test_go_duration_rejects_garbage() -> None:
    for bad in ("5 minutes", "m5", "", "1x"):
        with pytest.raises(ValueError):
            parse_go_duration_s(bad)


def test_ollama_host_forms() -> None:
    assert parse_host("0.0.0.0") == ("0.0.0.0", 11434)
    assert parse_host("http://example:8080") == ("example", 8080)
    assert parse_host("") == ("127.0.0.1", 11434)


@pytest.mark.parametrize(
    "env",
    [{"OLLAMA_NUM_PARALLEL": "two"}, {"OLLAMA_MAX_QUEUE": "-1"}, {"OLLAMA_KEEP_ALIVE": "soon"},
     {"OLLAMA_KV_CACHE_TYPE": "fp8"}, {"OLLAMA_FLASH_ATTENTION": "maybe"}, {"BENCH_SIM_FAULT_ERROR_RATE": "2"}],
)
def test_bad_environment_values_raise_a_config_error_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SimConfigError, match=next(iter(env))):
        build_config(env)


def test_ollama_go_template_false_selects_the_native_chat_path_on_v033_only() -> None:
    assert build_config({}).go_template is True
    assert build_config({"OLLAMA_GO_TEMPLATE": "false"}).go_template is False
    assert build_config({"OLLAMA_GO_TEMPLATE": "0"}, ollama_version="0.12.6").go_template is True  # no such variable
    with pytest.raises(SimConfigError, match="OLLAMA_GO_TEMPLATE"):
        build_config({"OLLAMA_GO_TEMPLATE": "perhaps"})


def test_simulated_engine_serves_chat_on_the_native_path_too() -> None:
    from bench.sim.testing import running_sim

    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q " * 100},
                {"role": "assistant", "content": "a"}, {"role": "user", "content": "again"}]
    with running_sim(speed=50, env={"OLLAMA_GO_TEMPLATE": "false"}) as base_url:
        answer = httpx.post(f"{base_url}/api/chat", json={"model": "llama3.2:1b", "messages": messages, "stream": False,
                                                          "options": {"num_predict": 5}}, timeout=30).json()
        generated = httpx.post(f"{base_url}/api/generate", json={"model": "llama3.2:1b", "prompt": "hi", "stream": False,
                                                                 "options": {"num_predict": 5}}, timeout=30).json()
    assert answer["done"] and answer["eval_count"] == 5 and answer["prompt_eval_count"] > 50
    assert generated["done"] and generated["eval_count"] == 5


def _cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
    env.update(extra)
    return env


def test_bad_env_value_exits_2_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "sim", "--port", "0"], env=_cli_env(OLLAMA_NUM_PARALLEL="lots"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "OLLAMA_NUM_PARALLEL" in result.stderr


def test_unknown_gpu_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "sim", "--gpu", "voodoo3"], env=_cli_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and "voodoo3" in result.stderr


def test_unknown_ollama_version_and_engine_exit_2() -> None:
    for flags, named in ((["--ollama-version", "0.20"], "0.20"), (["--engine", "vllm"], "vllm")):
        result = subprocess.run([sys.executable, "-m", "bench", "sim", "--port", "0", *flags], env=_cli_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and named in result.stderr
        assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(("flags", "env", "named"), [
    (["--host", "0.0.0.0"], {}, "--host 0.0.0.0"),
    (["--host", "192.168.1.20"], {}, "--host 192.168.1.20"),
    ([], {"OLLAMA_HOST": "0.0.0.0:11500"}, "OLLAMA_HOST=0.0.0.0:11500"),
    ([], {"OLLAMA_HOST": "[::]"}, "OLLAMA_HOST=[::]"),
])
def test_the_simulator_refuses_to_listen_beyond_loopback(flags: list[str], env: dict[str, str], named: str) -> None:
    result = subprocess.run([sys.executable, "-m", "bench", "sim", "--port", "0", *flags], env=_cli_env(**env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and named in result.stderr and "loopback only" in result.stderr


def test_loopback_addresses_are_allowed_and_a_flag_wins_over_ollama_host() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert build_config({}, host=host).host == host
    assert build_config({"OLLAMA_HOST": "0.0.0.0"}, host="127.0.0.1").host == "127.0.0.1"
    assert build_config({"OLLAMA_HOST": "localhost:11500"}).host == "localhost"


def test_version_setting_selects_the_rules() -> None:
    assert build_config({}, ollama_version="v0.12.6").rules.version == "0.12.6"
    assert build_config({"BENCH_SIM_OLLAMA_VERSION": "0.12"}).rules.version == "0.12.6"
    assert build_config({}, ollama_version="0.12.6", gpu="h100").default_num_ctx == 4096
    assert build_config({}, gpu="h100").default_num_ctx == 262144
    assert build_config({}, gpu="l4").default_num_ctx == 4096  # 23034 MiB < 23 GiB
    assert build_config({"OLLAMA_CONTEXT_LENGTH": "8192"}, gpu="h100").default_num_ctx == 8192


def test_sigterm_stops_the_server_cleanly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "sim", "--port", "0", "--speed", "100"], env=_cli_env(),
        stderr=subprocess.PIPE, text=True,
    )
    try:
        ready_line = process.stderr.readline()  # blocks until the ready line (or EOF on failure)
        assert ready_line.startswith("bench sim listening on http://127.0.0.1:"), ready_line
        base_url = ready_line.split()[4]
        assert httpx.get(base_url, timeout=10).text == "Ollama is running"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
