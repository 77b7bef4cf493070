"""The /api/ps poller: a timeline of loaded models, tolerant of a server that fails or moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
import pytest

from bench.telemetry import start_telemetry
from bench.telemetry.ollama_ps import PS_COLUMNS, PsPoller
from polling import wait_for

LOADED = {
    "models": [
        {
            "name": "llama3.1:8b",
            "model": "llama3.1:8b",
            "size": 6_654_289_920,
            "size_vram": 6_654_289_920,
            "digest": "46e0c10c039e",
            "details": {"family": "llama"},
            "expires_at": "2026-01-01T00:05:00Z",
            "context_length": 8192,
        }
    ]
}


class ScriptedServer:
    """A MockTransport handler whose /api/ps answer a test switches while the poller runs."""

    def __init__(self) -> None:
        self.answer: Callable[[], httpx.Response] = lambda: httpx.Response(200, json={"models": []})
        self.hosts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/ps"
        with self.lock:
            self.hosts.append(f"{request.url.host}:{request.url.port}")
            return self.answer()


def test_load_and_unload_show_in_the_timeline() -> None:
    server = ScriptedServer()
    poller = PsPoller(time.monotonic(), "http://127.0.0.1:11434", 0.01, transport=httpx.MockTransport(server))
    poller.start()
    try:
        wait_for(lambda: len(poller.rows) >= 2)
        server.answer = lambda: httpx.Response(200, json=LOADED)
        wait_for(lambda: poller.rows[-1].name == "llama3.1:8b")
        server.answer = lambda: httpx.Response(200, json={"models": []})
        wait_for(lambda: poller.rows[-1].name is None)
    finally:
        poller.stop()
    timeline = poller.to_table().to_pandas()
    assert list(timeline.columns) == list(PS_COLUMNS)
    names = timeline["name"].tolist()
    first_loaded = names.index("llama3.1:8b")
    # The "nothing loaded" marker rows: null name before the load and after the unload.
    assert pd.isna(names[0]) and pd.isna(names[-1]) and first_loaded > 0
    loaded = timeline.iloc[first_loaded]
    assert loaded["size_bytes"] == 6_654_289_920
    assert loaded["size_vram_bytes"] == 6_654_289_920
    assert loaded["context_length"] == 8192
    assert loaded["expires_at"] == "2026-01-01T00:05:00Z"


def test_failed_polls_are_skipped_and_counted() -> None:
    server = ScriptedServer()
    polls = {"count": 0}

    def flaky() -> httpx.Response:
        polls["count"] += 1
        if polls["count"] % 2:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=LOADED)

    server.answer = flaky
    poller = PsPoller(0.0, "http://127.0.0.1:1", 0.01, transport=httpx.MockTransport(server))
    for _ in range(6):
        poller.poll_once()
    server.answer = lambda: httpx.Response(500, text="boom")
    poller.poll_once()
    server.answer = lambda: httpx.Response(200, text="not json")
    poller.poll_once()
    poller.stop()
    assert len(poller.rows) == 3
    assert poller.notes == ["/api/ps: 5 of 8 polls failed (server unreachable or restarting)"]


def test_set_target_follows_a_restarted_server(tmp_path: Path) -> None:
    server = ScriptedServer()
    session = start_telemetry(
        tmp_path, time.monotonic(), "http://127.0.0.1:40001", None,
        ps_interval_s=0.01, ps_transport=httpx.MockTransport(server),
        nvml=None,
    )  # fmt: skip
    try:
        wait_for(lambda: "127.0.0.1:40001" in server.hosts)
        session.set_target("http://127.0.0.1:40002/", [12345])
        wait_for(lambda: server.hosts[-1] == "127.0.0.1:40002")
    finally:
        session.stop()
    timeline = pd.read_parquet(tmp_path / "ps.parquet")
    assert len(timeline) == len(server.hosts)
    assert timeline["t_s"].is_monotonic_increasing


def test_no_successful_poll_writes_no_file(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    poller = PsPoller(0.0, "http://127.0.0.1:1", 0.01, transport=httpx.MockTransport(refuse))
    poller.poll_once()
    poller.stop()
    assert poller.write(tmp_path / "ps.parquet") is None
    assert not (tmp_path / "ps.parquet").exists()


def test_a_server_echoing_the_key_in_ps_leaves_it_out_of_ps_parquet(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A model name or expiry from /api/ps carrying the key (as sent, upper-cased, a fragment) is
    stored redacted, as every other stored text is (issue 26, class 4)."""
    import bench.secrets

    key = "sk-ps-echo-4f9a8b7c6d5e"
    monkeypatch.setattr(bench.secrets, "_KNOWN_SECRETS", set())
    bench.secrets.remember(key)

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"models": [
            {"name": f"m-{key}", "size": 10, "size_vram": 10, "context_length": 4096,
             "expires_at": f"{key.upper()[:12]}-later"}]})

    poller = PsPoller(0.0, "http://127.0.0.1:1", 0.01, transport=httpx.MockTransport(echo))
    poller.poll_once()
    poller.stop()
    written = poller.write(tmp_path / "ps.parquet")
    assert written is not None
    stored = (tmp_path / "ps.parquet").read_bytes()
    assert key.encode() not in stored and key.upper()[:12].encode() not in stored
    assert b"[redacted]" in stored
