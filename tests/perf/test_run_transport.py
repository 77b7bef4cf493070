"""`bench run --transport fast` records the same requests as httpx's transport, and says so."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.clients.http import make_http_client
from bench.errors import TargetError
from bench.records import RECORD_FIELDS, load_run

pytestmark = pytest.mark.e2e

SCENARIO = """\
name: transport
workload:
  endpoint: [native/chat, openai/chat]
  model: llama3.2:1b
  prompt: {tokens: 40}
  max_tokens: 9
  seed: 3
load:
  concurrency: [1, 4]
  requests: 8
  warmup_requests: 1
"""


def _run(scenario: Path, base_url: str, out: Path, transport: str) -> dict:
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                      "--no-report", "--transport", transport],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())


def test_fast_transport_run_records_what_the_httpx_run_records(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "4"})
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    runs = {}
    for transport in ("httpx", "fast"):
        manifest = _run(scenario, base_url, tmp_path / transport, transport)
        assert manifest["status"] == "complete"
        assert manifest["transport"] == transport
        runs[transport] = load_run(tmp_path / transport).requests

    httpx_records, fast_records = runs["httpx"], runs["fast"]
    assert list(fast_records.columns) == list(httpx_records.columns)
    assert set(RECORD_FIELDS) <= set(fast_records.columns)
    assert len(fast_records) == len(httpx_records)
    assert (fast_records["phase"] == "measure").sum() == 4 * 8
    assert fast_records["error_class"].isna().all()

    def shape(frame):  # noqa: ANN001, ANN202
        # What a run is made of, per request: everything but the times.
        columns = ["cell_id", "phase", "request_index", "surface", "status", "done_reason",
                   "output_tokens", "output_chars"]
        return (frame.assign(chunks=frame["chunk_times_s"].map(len))[columns + ["chunks"]]
                .sort_values(["cell_id", "phase", "request_index"]).reset_index(drop=True))

    assert shape(fast_records).equals(shape(httpx_records))
    measured = fast_records[fast_records["phase"] == "measure"]
    assert measured["chunk_times_s"].map(len).eq(9).all()
    for column in ("sent_s", "headers_s", "first_token_s", "end_s"):
        assert measured[column].notna().all()
    assert (measured["first_token_s"] >= measured["headers_s"]).all()
    assert (measured["end_s"] >= measured["first_token_s"]).all()


def test_fast_transport_refuses_https_targets() -> None:
    with pytest.raises(TargetError, match="plain http://"):
        make_http_client("https://example.invalid", None, 4, transport="fast")


def test_fast_transport_reports_a_refused_connection_as_httpx_does() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    async def send(transport: str) -> type[BaseException]:
        async with make_http_client(closed_url, None, 2, transport=transport) as http:
            try:
                await http.get("/")
            except BaseException as error:  # noqa: BLE001
                return type(error)
        raise AssertionError("a closed port answered")

    assert asyncio.run(send("fast")) is asyncio.run(send("httpx"))


def test_auto_transport_is_fast_for_http_and_httpx_for_https() -> None:
    from bench.clients.http import resolve_transport

    assert resolve_transport("auto", "http://127.0.0.1:11434") == "fast"
    assert resolve_transport("auto", "https://ollama.example.com") == "httpx"
    assert resolve_transport("httpx", "http://127.0.0.1:11434") == "httpx"
