"""`bench run` end to end through the CLI against the in-process simulator, both surfaces."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.analysis.metrics import request_metrics
from bench.cli import cli
from bench.records import load_run

pytestmark = pytest.mark.e2e

SCENARIO = """\
name: e2e
workload:
  endpoint: [native/chat, openai/chat]
  model: llama3.2:1b
  prompt: {{tokens: 200}}
  max_tokens: 12
  seed: 3
load:
  concurrency: [1, 3]
  requests: 6
  warmup_requests: 1
{extra}"""


def write_scenario(tmp_path: Path, extra: str = "", name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SCENARIO.format(extra=extra))
    return path


def invoke(*args: str):  # noqa: ANN201
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_run_records_every_request_on_both_surfaces(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "4"})
    out = tmp_path / "run"
    result = invoke("run", str(write_scenario(tmp_path)), "--target", base_url, "--out", str(out),
                    "--no-report")
    assert result.exit_code == 0, result.output
    assert "run complete" in result.output

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["target"]["kind"] == "url" and manifest["target"]["version"]
    assert "llama3.2:1b" in manifest["models"]
    assert [c["status"] for c in manifest["cells"]] == ["complete"] * 4
    assert {c["settings"]["surface"] for c in manifest["cells"]} == {"native", "openai"}
    assert manifest["client"]["cpu_s"] > 0
    calibration = manifest["calibration"]["llama3.2:1b/native/chat"]
    assert calibration["source"] == "fitted"

    for name in ("requests.jsonl", "requests.parquet", "summary.csv", "summary.json"):
        assert (out / name).exists(), name
    run = load_run(out)
    measured = run.requests[run.requests["phase"] == "measure"]
    assert len(measured) == 4 * 6
    assert measured["error_class"].isna().all()
    assert set(measured["surface"]) == {"native", "openai"}
    # Calibration makes the server count about the asked prompt length.
    assert measured["prompt_tokens"].between(180, 220).all()
    summary = pd.read_csv(out / "summary.csv", index_col="cell_id")
    assert set(summary.index) == {c["cell_id"] for c in manifest["cells"]}
    assert (summary["ok"] == 6).all()
    # Each row names what it measured: label and the cell's settings as columns.
    for cell in manifest["cells"]:
        row = summary.loc[cell["cell_id"]]
        assert row["label"] == cell["label"]
        assert (row["surface"], row["endpoint"], row["model"], row["concurrency"]) == (
            cell["settings"]["surface"], cell["settings"]["endpoint"], cell["settings"]["model"],
            cell["settings"]["concurrency"])
    stored = json.loads((out / "summary.json").read_text())
    assert {"label", "model", "concurrency", "endpoint", "ttft_p50_s"} <= set(stored[0])


def test_concurrency_one_agrees_with_the_simulators_configuration(sim, tmp_path: Path) -> None:  # noqa: ANN001
    from bench.sim import roofline
    from bench.sim.catalog import load_catalog

    base_url = sim(speed=1.0, gpu="l4", env={"OLLAMA_NUM_PARALLEL": "1"})
    scenario = tmp_path / "c1.yaml"
    scenario.write_text(
        "workload:\n  endpoint: native/chat\n  model: llama3.2:1b\n  prompt: {tokens: 2048}\n"
        "  max_tokens: 24\nload:\n  concurrency: 1\n  requests: 5\n  warmup_requests: 1\n"
    )
    out = tmp_path / "run"
    assert invoke("run", str(scenario), "--target", base_url, "--out", str(out), "--no-report").exit_code == 0
    catalog = load_catalog()
    model, gpu = catalog.resolve("llama3.2:1b"), catalog.gpus["l4"]
    # Fully offloaded (gpu fraction 1); the L4's 23034 MiB gives the 4096 context tier, batch 512.
    step_s = roofline.decode_step_s(model, gpu, 1.0, 1, 2048 + 12, 2)
    ttft_s = roofline.prefill_s(model, gpu, 1.0, 2048, 512) + step_s
    measured = request_metrics(load_run(out).requests.query("phase == 'measure'"))
    ttft, tpot = measured["ttft_s"], measured["tpot_s"]  # as bench defines them (bench.analysis.metrics)
    # A busy box only ever adds time (the simulator sleeps its model; here it shares the client's
    # process): at load 20 the median TTFT came out 42% long. The least disturbed of the five is
    # the fastest, and none can be faster than the model: the quick start's claim is 10%.
    assert len(measured) == 5 and ttft.min() == pytest.approx(ttft_s, rel=0.1)
    assert tpot.min() == pytest.approx(step_s, rel=0.1)
    assert (ttft >= 0.95 * ttft_s).all() and (tpot >= 0.95 * step_s).all()


def test_target_sim_starts_and_stops_the_embedded_simulator(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, extra="target: sim\nsim:\n  speed: 50\n  env: {OLLAMA_NUM_PARALLEL: '4'}\n")
    out = tmp_path / "run"
    result = invoke("run", str(scenario), "--out", str(out), "--quick", "--no-report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["kind"] == "sim"
    assert manifest["servers"][0]["log"] == "server-0.log"
    assert (out / "server-0.log").exists()
    assert all(c["settings"]["requests"] == 4 for c in manifest["cells"])


def test_managed_server_restarts_per_env_setting(tmp_path: Path) -> None:
    server_block = (
        "server:\n  command: [{python}, -m, bench, sim, --speed, '50']\n"
        "  env:\n    OLLAMA_NUM_PARALLEL: [1, 2]\n"
    ).format(python=json.dumps(__import__("sys").executable))
    scenario = write_scenario(tmp_path, extra=server_block)
    out = tmp_path / "run"
    result = invoke("run", str(scenario), "--out", str(out), "--requests", "2", "--warmup", "0",
                    "--no-report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["env"] for s in manifest["servers"]] == [
        {"OLLAMA_NUM_PARALLEL": "1"}, {"OLLAMA_NUM_PARALLEL": "2"}]
    assert [c["server_id"] for c in manifest["cells"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert manifest["cells"][4]["settings"]["OLLAMA_NUM_PARALLEL"] == "2"


def test_connection_refused_is_one_line_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(cli, ["run", str(write_scenario(tmp_path)), "--target",
                                      f"127.0.0.1:{port}", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "connection refused" in result.output
    assert "Traceback" not in result.output


def test_missing_model_is_one_line_exit_2(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0)
    scenario = tmp_path / "m.yaml"
    scenario.write_text("workload:\n  model: no-such-model:1b\nload: {requests: 1}\n")
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url,
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "no-such-model" in result.output and result.output.count("\n") == 1


def test_bad_scenario_is_one_line_exit_2(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.yaml"
    scenario.write_text("workload:\n  model: m\nload:\n  concurrency: 0\n")
    result = CliRunner().invoke(cli, ["run", str(scenario)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {scenario}:4: load.concurrency: Input should be greater than or equal to 1\n"
    )


def test_validate_checks_many_files(tmp_path: Path) -> None:
    good = write_scenario(tmp_path, name="good.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("workload:\n  model: m\n  colour: blue\n")
    result = CliRunner().invoke(cli, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{good}: ok (4 cells)" in result.output
    assert f"{bad}:3: workload.colour: unknown field" in result.output


def test_schema_command_prints_json_schema() -> None:
    result = invoke("schema")
    schema = json.loads(result.output)
    assert "workload" in schema["properties"]


def test_api_key_is_sent_but_never_written(sim, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0)
    monkeypatch.setenv("BENCH_TEST_KEY", "sk-secret-4f2a9")
    scenario = write_scenario(tmp_path, extra="api_key_env: BENCH_TEST_KEY\n")
    out = tmp_path / "run"
    result = invoke("run", str(scenario), "--target", base_url, "--out", str(out), "--quick",
                    "--no-report")
    assert result.exit_code == 0, result.output
    for path in out.iterdir():
        assert b"sk-secret-4f2a9" not in path.read_bytes(), path.name
    assert "sk-secret-4f2a9" not in result.output


def test_unset_api_key_variable_is_a_user_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("BENCH_TEST_KEY_UNSET", raising=False)
    scenario = write_scenario(tmp_path, extra="api_key_env: BENCH_TEST_KEY_UNSET\n")
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", "127.0.0.1:1"])
    assert result.exit_code == 2
    assert "BENCH_TEST_KEY_UNSET is not set" in result.output
