"""Nothing leaks: API keys stay in the environment, prompts and outputs stay out of the run unless
asked, managed servers listen on loopback only, server text is escaped where it is shown."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bench.errors import ScenarioError
from bench.scenario import parse_scenario
from reliability.support import (
    bench,
    json_lines,
    manifest_or_empty,
    measured,
    start_bench,
    wait_for,
    write_scenario,
)

pytestmark = pytest.mark.e2e

SECRET = "sk-test-9d2f7c41e8b0a6"
SIM_SCENARIO = """\
name: security
target: sim
sim: {{speed: 50, args: [--fault-error-rate, '0.3']}}
api_key_env: BENCH_RELIABILITY_KEY
workload:
  endpoint: [native/chat, openai/chat]
  model: llama3.2:1b
  prompt: {prompt}
  max_tokens: 8
load:
  concurrency: 2
  requests: 6
  warmup_requests: 1
{extra}"""


def _files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_api_key_is_never_written_to_the_run_or_printed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SIM_SCENARIO.format(prompt="{tokens: 32}", extra=""))
    env = {**os.environ, "BENCH_RELIABILITY_KEY": SECRET}
    result = bench("run", str(scenario), "--out", str(out), env=env)  # report on: it must not leak either
    assert result.returncode == 0, result.stdout + result.stderr
    files = _files_under(out)
    assert {"manifest.json", "requests.jsonl", "report.html", "server-0.log"} <= {p.name for p in files}
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path.name
    assert SECRET not in result.stdout + result.stderr
    # The manifest names the variable (so a rerun knows what to set), never its value.
    assert json.loads((out / "manifest.json").read_text())["scenario"]["api_key_env"] == "BENCH_RELIABILITY_KEY"


def test_a_key_in_the_scenario_itself_is_refused() -> None:
    with pytest.raises(ScenarioError, match="api_key_env: must be the NAME of an environment variable"):
        parse_scenario(f"api_key_env: {SECRET}\nworkload: {{model: m}}\n", "s.yaml")


@pytest.mark.parametrize("store_text", [False, True])
def test_prompts_and_outputs_are_written_only_when_asked(tmp_path: Path, store_text: bool) -> None:
    marker = "zebra-quartz-marker-5521"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"{marker} question {i}"}) + "\n" for i in range(4)))
    extra = f"store_text: {str(store_text).lower()}\n"
    scenario = write_scenario(tmp_path, SIM_SCENARIO.format(prompt=f"{{file: {prompts}}}", extra=extra))
    out = tmp_path / "run"
    env = {**os.environ, "BENCH_RELIABILITY_KEY": SECRET}
    # The report only where the test reads it: without store_text it must not hold the prompts either.
    report = [] if not store_text else ["--no-report"]
    result = bench("run", str(scenario), "--out", str(out), *report, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ok = [r for r in measured(out) if r["error_class"] is None]
    assert ok
    if store_text:
        assert all(marker in r["prompt_text"] and r["output_text"] for r in ok)
        return
    assert all(r["prompt_text"] is None and r["output_text"] is None for r in json_lines(out / "requests.jsonl"))
    for path in _files_under(out):
        assert marker.encode() not in path.read_bytes(), path.name
    # What the model said is not kept either: only its length.
    assert all(r["output_chars"] > 0 for r in ok)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) in LISTEN state on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # 0A: TCP_LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_managed_server_listens_on_loopback_only(tmp_path: Path) -> None:
    command = json.dumps([sys.executable, "-m", "bench", "sim", "--speed", "5"])
    scenario = write_scenario(tmp_path, (
        "workload: {model: llama3.2:1b, max_tokens: 64, prompt: {tokens: 32, calibrate: false}}\n"
        "load: {requests: 200, warmup_requests: 0}\n"
        f"server:\n  command: {command}\n"))
    out = tmp_path / "run"
    process = start_bench("run", str(scenario), "--out", str(out), "--no-report")
    try:
        wait_for(lambda: len(measured(out)) >= 1, what="the managed server answering")
        base_url = manifest_or_empty(out)["target"]["base_url"]
        assert base_url.startswith("http://127.0.0.1:")
        addresses = _listening_addresses(int(base_url.rsplit(":", 1)[1]))
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert addresses == {"0100007F"}  # 127.0.0.1, and nothing else (no 0.0.0.0, no ::)
    # bench was killed with SIGKILL: its managed server must not outlive it (PR_SET_PDEATHSIG).
    server_pid = manifest_or_empty(out)["servers"][0]["pid"]
    wait_for(lambda: not _alive(server_pid), what="the orphaned managed server to exit")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait() is missing


def test_scenario_cannot_move_the_managed_server_off_loopback() -> None:
    text = "workload: {model: m}\nserver:\n  command: ollama serve\n  env:\n    OLLAMA_HOST: 0.0.0.0\n"
    with pytest.raises(ScenarioError, match=r"s.yaml:5: server.env.OLLAMA_HOST: bench sets it"):
        parse_scenario(text, "s.yaml")


def test_yaml_cannot_construct_python_objects() -> None:
    text = "workload: {model: !!python/object/apply:os.system ['echo pwned']}\n"
    with pytest.raises(ScenarioError, match="s.yaml:1"):
        parse_scenario(text, "s.yaml")


def test_server_error_text_is_escaped_in_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, SIM_SCENARIO.format(prompt="{tokens: 32}", extra=""))
    env = {**os.environ, "BENCH_RELIABILITY_KEY": SECRET}
    assert bench("run", str(scenario), "--out", str(out), "--no-report", env=env).returncode == 0
    # A hostile server: its error text is HTML. Rewrite the failed records as if it had sent it.
    hostile = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"
    rows = json_lines(out / "requests.jsonl")
    assert any(r["error_class"] for r in rows)
    for row in rows:
        if row["error_class"]:
            row["error_message"] = hostile
    (out / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "requests.parquet").unlink()
    result = bench("report", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "report.html").read_text()
    assert "<script>alert('pwned')" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(" in page  # shown, as text
