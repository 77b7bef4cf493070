"""Wrong accepts and misleading words (issue 26, class 7): limits no run can meet are refused,
a simulator's catalog is checked where it is read, bench's own fault variables do not reach a
managed simulator, YAML is read by the 1.2 core schema everywhere, other people's text is escaped
and capped in the one error line and cleaned in report.html, and a failure says its true reason."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.report.page import Note, Section, render_page
from reliability.support import bench, free_port, json_lines, measured, start_sim_process, write_scenario

RUN = "target: sim\nworkload: {{model: llama3.2:1b, max_tokens: 4, prompt: {{tokens: 16, calibrate: false}}}}\n" \
      "load: {{concurrency: 1, requests: 2, warmup_requests: 0}}\n{extra}"


def invoke(*args: str, env: dict[str, str] | None = None):  # noqa: ANN201 - click's Result
    return CliRunner().invoke(cli, list(args), env={"BENCH_DEBUG": "", **(env or {})}, prog_name="bench")


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.parametrize(("extra", "says"), [
    ("slos: {ttft_p95: -5ms}\n", "slos.ttft_p95: '-5ms': an SLO is a limit above 0"),
    ("slos: {ttft_p95: 0}\n", "slos.ttft_p95: 0.0: an SLO is a limit above 0"),
    ("slos: {error_rate: -0.1}\n", "an SLO is a limit above 0"),
    ("thresholds: {error_rate: '<200%'}\n", "a rate is at most 100%"),
    ("thresholds: {rejection_rate: '<=1.5'}\n", "a rate is at most 100%"),
    ("thresholds: {ttft_p95: '<-1s'}\n", "can never hold"),
    ("thresholds: {tpot_p50: '<0ms'}\n", "can never hold"),
])
def test_limits_no_run_can_meet_are_refused(tmp_path: Path, extra: str, says: str) -> None:
    scenario = write_scenario(tmp_path, RUN.format(extra=extra))
    result = invoke("validate", str(scenario))
    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith(f"error: {scenario}:") and says in line, line


@pytest.mark.parametrize("value", ["-5ms", "0", "-1"])
def test_a_negative_or_zero_slo_flag_is_refused(value: str) -> None:
    result = invoke("run", "--target", "sim", "--model", "m", "--slo", f"ttft_p95={value}")
    assert result.exit_code == 2
    assert "an SLO is a limit above 0" in one_line(result.output)


def test_limits_that_can_hold_are_still_accepted(tmp_path: Path) -> None:
    extra = "slos: {ttft_p95: 2s}\nthresholds: {error_rate: '<=0%', rejection_rate: '<100%', ttft_p95: '<1s'}\n"
    result = invoke("validate", str(write_scenario(tmp_path, RUN.format(extra=extra))))
    assert result.exit_code == 0, result.output


MODEL = ("{{name: m0, architecture: llama, family: llama, quantization: Q4_0, size_bytes: 1000000, "
         "parameter_count: 1000000, block_count: 2, embedding_length: 64, head_count: {heads}, "
         "head_count_kv: {heads}, context_length: 2048}}")


@pytest.mark.parametrize(("catalog", "says"), [
    (f"models:\n  - {MODEL.format(heads=0)}\n", "head_count must be > 0, got 0"),
    (f"models:\n  - {MODEL.format(heads='1:30')}\n", "head_count must be a whole number, got '1:30'"),
    ("gpus:\n  - {name: g0, memory: 8GiB, decode_bandwidth: 1e12, prefill_flops: 1e12, cpu_bandwidth: 0}\n",
     "cpu_bandwidth must be > 0"),
    ("gpus:\n  - {name: g0, memory: 8GiB, decode_bandwidth: 0, prefill_flops: 1e12}\n", "decode_bandwidth must be > 0"),
    ("gpus:\n  - {name: g0, memory: 0, decode_bandwidth: 1e12, prefill_flops: 1e12}\n", "memory must be > 0"),
    ("gpus:\n  - {name: g0, memory: 8GiB, decode_bandwidth: .inf, prefill_flops: 1e12}\n", "decode_bandwidth must be > 0"),
    ("models: {a: 1}\n", "models: expected a list of mappings, got dict"),
    ("models: [1, 2]\n", "models[0]: expected a mapping, got int"),
    ("gpus: [[1]]\n", "gpus[0]: expected a mapping, got list"),
    ("models:\n  - {name: [1]}\n", "name must be text"),
])
def test_a_sim_catalog_that_would_fail_every_request_is_refused(tmp_path: Path, catalog: str, says: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(catalog)
    # A subprocess: a catalog wrongly accepted starts a server that never returns on its own.
    result = bench("sim", "--catalog", str(path), "--port", "0", "--gpu", "g0", timeout_s=60)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"error: {path}: ") and says in line, line


@pytest.mark.e2e
def test_a_fault_variable_in_benchs_own_environment_does_not_reach_the_managed_simulator(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, RUN.format(extra=""))
    result = bench("run", str(scenario), "--out", str(out), "--no-report",
                   env={**os.environ, "BENCH_SIM_FAULT_ERROR_RATE": "1", "BENCH_SIM_FAULT_CUT_RATE": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert [row["error_class"] for row in measured(out)] == [None, None]


@pytest.mark.e2e
def test_faults_the_scenario_asks_for_still_reach_the_managed_simulator(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, RUN.format(extra="").replace(
        "target: sim\n", "target: sim\nsim: {env: {BENCH_SIM_FAULT_ERROR_RATE: '1'}}\n"))
    bench("run", str(scenario), "--out", str(out), "--no-report")
    assert measured(out) and all(row["error_class"] for row in measured(out))


@pytest.mark.parametrize(("field", "written", "read"), [
    ("requests", "0x10", 16), ("requests", "010", 10), ("requests", "0o10", 8),
])
def test_yaml_numbers_are_read_by_the_1_2_core_schema(tmp_path: Path, field: str, written: str, read: int) -> None:
    from bench.scenario import load_scenario

    text = RUN.format(extra="").replace("requests: 2", f"{field}: {written}")
    scenario = load_scenario(write_scenario(tmp_path, text))
    assert getattr(scenario.load, field) == [read]


@pytest.mark.parametrize(("text", "says"), [
    ("load: {concurrency: 1, duration_s: 1:30}", "duration_s"),
    ("load: {concurrency: 1, requests: 1_000}", "requests"),
    ("load: {concurrency: 1, requests: 0b11}", "requests"),
    ("load: {concurrency: 1, requests: 1e1}", "requests"),
])
def test_yaml_1_1_number_forms_are_refused_in_one_line(tmp_path: Path, text: str, says: str) -> None:
    scenario = write_scenario(tmp_path, f"target: sim\nworkload: {{model: m}}\n{text}\n")
    result = invoke("validate", str(scenario))
    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith(f"error: {scenario}:3: load.{says}"), line


def test_a_model_name_that_looks_sexagesimal_stays_the_name(tmp_path: Path) -> None:
    from bench.scenario import load_scenario

    scenario = load_scenario(write_scenario(tmp_path, "target: sim\nworkload: {model: 1:30}\nload: {requests: 1}\n"))
    assert scenario.workload.model == ["1:30"]


HOSTILE = "a\nerror: forged\x1b[2J\x07\u202egnp.exe"


@pytest.mark.e2e
def test_a_hostile_model_name_is_one_escaped_line() -> None:
    result = bench("run", "--target", "sim", "--model", HOSTILE, "--requests", "1", "--no-report")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line
    assert "a\\x0aerror: forged\\x1b[2J\\x07\\u202egnp.exe" in line


@pytest.mark.e2e
def test_a_huge_model_name_is_capped_in_the_error_line(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, f"target: sim\nworkload: {{model: {'x' * 200_000}}}\nload: {{requests: 1}}\n")
    result = bench("run", str(scenario), "--out", str(tmp_path / "run"), "--no-report")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert len(line) < 2_000 and "more characters)" in line


def test_terminal_text_escapes_controls_bidi_and_newlines_and_caps_length() -> None:
    from bench.escape import html_text, plain_terminal

    assert plain_terminal("a\nb\x1b\u202ec\u2066d\x85") == "a\\x0ab\\x1b\\u202ec\\u2066d\\x85"
    capped = plain_terminal("y" * 5000, max_chars=100)
    assert capped == "y" * 100 + "… (4,900 more characters)"
    assert html_text("a\x00b\x1bc\x07d\te\nf") == "abcd\te\nf"


def test_nul_esc_and_bel_never_reach_report_html() -> None:
    section = Section("errors", "Errors \x00", "intro \x1b[31m", (Note("server said \x00\x1b]0;x\x07 bad"),))
    page = render_page("t\x07", "s\x1b", [section], "0", "src\x00")
    assert not any(ch in page for ch in "\x00\x1b\x07")
    assert "server said ]0;x bad" in page


@pytest.mark.e2e
def test_server_text_with_controls_is_cleaned_in_the_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    scenario = write_scenario(tmp_path, RUN.format(extra="").replace(
        "target: sim\n", "target: sim\nsim: {args: [--fault-error-rate, '1']}\n"))
    bench("run", str(scenario), "--out", str(out), "--no-report")
    rows = json_lines(out / "requests.jsonl")
    assert any(row["error_class"] for row in rows)
    for row in rows:
        if row["error_class"]:
            row["error_message"] = "boom\x00\x1b[2J\x07 here"
    (out / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "requests.parquet").unlink(missing_ok=True)
    result = bench("report", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "report.html").read_bytes()
    assert b"boom[2J here" in page
    assert not any(ch in page for ch in (b"\x00", b"\x1b", b"\x07"))


@pytest.mark.e2e
def test_https_to_a_plain_http_server_says_tls_not_refused() -> None:
    port = free_port()
    sim = start_sim_process(port)
    try:
        result = bench("run", "--target", f"https://127.0.0.1:{port}", "--model", "llama3.2:1b",
                       "--requests", "1", "--no-report")
    finally:
        sim.kill()
        sim.wait()
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "TLS handshake failed" in line and "refused" not in line, line


def test_an_unwritable_emit_log_names_the_flag_not_the_port(tmp_path: Path) -> None:
    result = invoke("sim", "--port", "0", "--emit-log", str(tmp_path / "missing" / "chunks.jsonl"))
    assert result.exit_code == 2
    line = one_line(result.output)
    assert line.startswith("error: --emit-log ") and "No such file or directory" in line
    assert "cannot listen" not in line


@pytest.mark.parametrize("kind", ["fifo", "device", "run-record", "empty"])
def test_an_emit_log_that_would_block_or_clobber_is_refused(tmp_path: Path, kind: str) -> None:
    # A subprocess with a timeout: before, opening a FIFO to append blocked `bench sim` for ever.
    if kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
        says = "a FIFO"
    elif kind == "device":
        path, says = Path(os.devnull), "a character device"  # refused before it is opened
    elif kind == "run-record":
        (tmp_path / "manifest.json").write_text("{}")
        path = tmp_path / "requests.jsonl"
        path.write_text('{"measured": 1}\n')
        says = "a record of the run"
    else:
        path, says = Path(""), "an empty name"
    result = bench("sim", "--port", "0", "--emit-log", "" if kind == "empty" else str(path), timeout_s=60)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("error: --emit-log ") and says in line, line
    if kind == "run-record":
        assert path.read_text() == '{"measured": 1}\n'


@pytest.mark.parametrize("value", ["1e300", "inf", "nan", "-1", "604801"])
def test_a_stall_past_a_week_is_refused_naming_the_variable(value: str) -> None:
    # Before, BENCH_SIM_FAULT_STALL_S took any float: 1e300 hung every stalled stream for good.
    result = bench("sim", "--port", "0", "--fault-stall-rate", "1",
                   env={**os.environ, "BENCH_SIM_FAULT_STALL_S": value}, timeout_s=60)
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert f"BENCH_SIM_FAULT_STALL_S='{value}'" in line and "604800" in line, line


def test_every_way_to_a_stall_shares_the_one_ceiling() -> None:
    from bench.numbers import MAX_SECONDS
    from bench.sim.config import FaultConfig, build_config
    from bench.sim.config_errors import SimConfigError

    with pytest.raises(SimConfigError, match="604800"):
        FaultConfig(stall_s=MAX_SECONDS * 2)
    with pytest.raises(SimConfigError, match="604800"):
        build_config({}, fault_rates={"stall_s": float("inf")})
    assert build_config({"BENCH_SIM_FAULT_STALL_S": "604800"}).faults.stall_s == MAX_SECONDS
    flag = invoke("sim", "--port", "0", "--fault-stall-s", "1e9")
    assert flag.exit_code == 2 and "--fault-stall-s" in one_line(flag.output)
