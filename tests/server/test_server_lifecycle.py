"""bench.run.managed_server: a managed server starts on a loopback port, reports failures with its log,
is seen to die, stops even when it ignores SIGTERM, and its models are checked."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from bench.errors import TargetError
from bench.processes import free_port
from bench.run.managed_server import ManagedServer, check_models, server_pids, sim_command
from polling import wait_for

FAKE_OLLAMA = str(Path(__file__).with_name("fake_ollama.py"))
DEADLINE_S = 60.0  # generous: the box is shared and loaded


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still "exists" until reaped by its parent; count it as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., ManagedServer]]:
    """Factory of ManagedServers that are all stopped at teardown, even when a test fails."""
    made: list[ManagedServer] = []

    def make(command: list[str], env: dict[str, str] | None = None, **kwargs: object) -> ManagedServer:
        server = ManagedServer(command, env or {}, tmp_path / f"server-{len(made)}.log", **kwargs)  # type: ignore[arg-type]
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop(grace_s=1)


def test_ready_server_listens_on_free_loopback_port_with_its_env(servers) -> None:
    server = servers([sys.executable, FAKE_OLLAMA], {"OLLAMA_NUM_PARALLEL": "4"})
    server.start()
    server.wait_ready(DEADLINE_S)
    assert server.base_url.startswith("http://127.0.0.1:")
    assert httpx.get(server.base_url + "/", trust_env=False).text == "Ollama is running"
    assert server.is_alive()
    wait_for(lambda: any("NUM_PARALLEL=4" in line for line in server.last_log_lines()))
    assert f"Listening on 127.0.0.1:{server.port} NUM_PARALLEL=4" in server.last_log_lines()


def test_command_that_exits_at_once_fails_with_its_last_log_lines(servers) -> None:
    script = "import sys; print('starting'); print('Error: listen tcp: bind: address already in use'); sys.exit(1)"
    server = servers([sys.executable, "-c", script])
    server.start()
    with pytest.raises(TargetError) as failure:
        server.wait_ready(DEADLINE_S)
    message = str(failure.value)
    assert "exited with code 1" in message
    assert "starting | Error: listen tcp: bind: address already in use" in message
    assert "\n" not in message


def test_missing_command_fails_with_one_line(servers) -> None:
    server = servers(["/nonexistent/bin/ollama", "serve"])
    with pytest.raises(TargetError, match="cannot start server '/nonexistent/bin/ollama'"):
        server.start()
    server.stop()  # nothing started: still safe


def test_server_that_never_answers_times_out_with_log(servers) -> None:
    server = servers([sys.executable, "-c", "import time; print('loading model', flush=True); time.sleep(60)"])
    server.start()
    wait_for(lambda: server.last_log_lines() == ["loading model"])
    with pytest.raises(TargetError, match=r"not ready on http://127\.0\.0\.1:\d+ after 0\.3s .*loading model"):
        server.wait_ready(timeout_s=0.3)


def test_server_dying_mid_run_is_detected(servers) -> None:
    server = servers([sys.executable, FAKE_OLLAMA])
    server.start()
    server.wait_ready(DEADLINE_S)
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base_url + "/die", trust_env=False)
    wait_for(lambda: not server.is_alive())
    assert server.returncode() == 3
    assert server.last_log_lines(1) == ["fatal: simulated crash"]


def test_stop_kills_a_server_that_ignores_sigterm(servers) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(120)"
    )
    server = servers([sys.executable, "-c", script])
    server.start()
    wait_for(lambda: server.last_log_lines() == ["ignoring SIGTERM"])
    server.stop(grace_s=0.5)
    assert not server.is_alive()
    assert server.returncode() == -signal.SIGKILL
    server.stop(grace_s=0.5)  # idempotent


def test_stop_ends_the_whole_process_group(servers) -> None:
    server = servers([sys.executable, FAKE_OLLAMA], {"FAKE_OLLAMA_CHILD": "1"})
    server.start()
    server.wait_ready(DEADLINE_S)
    wait_for(lambda: len(server_pids(server)) == 2)
    pids = server_pids(server)
    assert server.pid in pids
    server.stop(grace_s=5)
    assert server_pids(server) == []
    wait_for(lambda: not any(pid_exists(pid) for pid in pids))


def test_context_manager_stops_the_server_on_error(tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, FAKE_OLLAMA], {}, tmp_path / "server.log")
    with pytest.raises(RuntimeError, match="boom"), server:
        server.wait_ready(DEADLINE_S)
        raise RuntimeError("boom")
    assert not server.is_alive()


def test_non_loopback_host_is_refused(tmp_path: Path) -> None:
    server = ManagedServer([sys.executable, FAKE_OLLAMA], {}, tmp_path / "server.log", host="0.0.0.0")
    with pytest.raises(TargetError, match="not a loopback address"):
        server.start()
    assert server.pid is None


def test_missing_model_names_the_model_and_ollama_pull(servers) -> None:
    server = servers([sys.executable, FAKE_OLLAMA], {"FAKE_OLLAMA_MODELS": "llama3.2:1b"})
    server.start()
    server.wait_ready(DEADLINE_S)
    shown = check_models(server.base_url, ["llama3.2:1b"])
    assert shown["llama3.2:1b"]["details"]["family"] == "llama"
    with pytest.raises(TargetError) as failure:
        check_models(server.base_url, ["llama3.2:1b", "mistral:7b"])
    assert str(failure.value) == f'model "mistral:7b" not found on {server.base_url}: try "ollama pull mistral:7b"'


def test_check_models_against_nothing_listening_is_a_target_error() -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TargetError, match="connection refused"):
        check_models(base_url, ["llama3.2:1b"], timeout_s=2)


def test_managed_bench_sim_starts_checks_models_and_stops(servers) -> None:
    server = servers(sim_command(["--speed", "50"]), {"OLLAMA_NUM_PARALLEL": "2"})
    server.start()
    server.wait_ready(DEADLINE_S)
    shown = check_models(server.base_url, ["llama3.2:1b"])
    assert "model_info" in shown["llama3.2:1b"]
    with pytest.raises(TargetError, match='model "no-such-model" not found'):
        check_models(server.base_url, ["no-such-model"])
    server.stop()
    assert not server.is_alive()
