"""The API key: stripped and checked when read, sent on every request to the target (the probes
before any load included), redacted from error text before it is stored or shown (issue 16)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.errors import TargetError
from bench.records import RecordWriter, RequestRecord, write_json
from bench.secrets import REDACTED, read_api_key, redact, remember
from reliability.support import bench, measured, write_scenario

KEY = "sk-gateway-51c0ffee9a"


class _Gateway(BaseHTTPRequestHandler):
    """An Ollama behind a gateway that answers 401 to any request without the key."""

    seen: list[tuple[str, bool]] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _reply(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        ok = self.headers.get("Authorization") == f"Bearer {KEY}"
        self.seen.append((f"{self.command} {self.path}", ok))
        if not ok:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
        return ok

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if not self._authorized():
            return
        if self.path == "/api/version":
            self._reply(b'{"version": "0.33.0"}')
        elif self.path == "/api/ps":
            self._reply(b'{"models": []}')
        else:
            self._reply(b"Ollama is running", "text/plain")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if not self._authorized():
            return
        if self.path == "/api/show":
            self._reply(b'{"details": {"family": "llama"}, "model_info": {}}')
            return
        model = body.get("model", "m")
        lines = [
            {"model": model, "message": {"role": "assistant", "content": "hi"}, "done": False},
            {"model": model, "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "total_duration": 2_000_000, "load_duration": 1000,
             "prompt_eval_count": 12, "prompt_eval_duration": 500_000, "eval_count": 1,
             "eval_duration": 1_000_000},
        ]
        self._reply(b"".join(json.dumps(line).encode() + b"\n" for line in lines),
                    "application/x-ndjson")


@pytest.fixture
def gateway() -> Iterator[str]:
    _Gateway.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SCENARIO = """\
name: gateway
api_key_env: BENCH_GATEWAY_KEY
workload: {{model: m, max_tokens: 4, prompt: {{tokens: 16, calibrate: false}}}}
load: {{concurrency: 1, requests: 3, warmup_requests: 0}}
"""


@pytest.mark.e2e
@pytest.mark.parametrize("written_key", [KEY, KEY + "\n", f"  {KEY}\r\n"])
def test_the_key_reaches_every_request_even_with_a_trailing_newline(
        tmp_path: Path, gateway: str, written_key: str) -> None:
    scenario = write_scenario(tmp_path, SCENARIO.format())
    out = tmp_path / "run"
    env = {**os.environ, "BENCH_GATEWAY_KEY": written_key}
    result = bench("run", str(scenario), "--target", gateway, "--out", str(out), "--no-report", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _Gateway.seen and all(ok for _, ok in _Gateway.seen), _Gateway.seen
    probes = {path for path, _ in _Gateway.seen}
    assert {"GET /", "GET /api/version", "POST /api/show", "POST /api/chat"} <= probes
    records = measured(out)
    assert len(records) == 3 and all(record["error_class"] is None for record in records)
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path.name


def test_a_key_no_header_can_carry_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_GATEWAY_KEY", "sk-one\x1bsk-two")
    with pytest.raises(Exception, match="^api_key_env: BENCH_GATEWAY_KEY holds characters") as caught:
        read_api_key("BENCH_GATEWAY_KEY")
    assert "sk-one" not in str(caught.value)


def test_an_error_quoting_the_key_is_redacted_when_stored(tmp_path: Path) -> None:
    remember(KEY)
    record = RequestRecord(cell_id="c", request_index=0, surface="native", endpoint="chat", model="m",
                           error_class="client_error",
                           error_message=f"Illegal header value b'Bearer {KEY}'")
    with RecordWriter(tmp_path) as writer:
        writer.append(record)
    stored = (tmp_path / "requests.jsonl").read_text()
    assert KEY not in stored and REDACTED in stored
    write_json(tmp_path / "manifest.json", {"failure": f"target said {KEY}"})
    assert KEY not in (tmp_path / "manifest.json").read_text()
    assert redact(f"x {KEY} y") == f"x {REDACTED} y"


def test_an_error_quoting_the_key_is_redacted_when_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import bench.scenario
    from bench.cli import cli

    remember(KEY)

    def leaky(path: Path) -> None:
        raise TargetError(f"gateway refused Bearer {KEY}")
    monkeypatch.setattr(bench.scenario, "load_scenario", leaky)
    result = CliRunner().invoke(cli, ["run", "s.yaml"], env={"BENCH_DEBUG": ""})
    assert result.exit_code == 2
    assert KEY not in result.output and REDACTED in result.output

