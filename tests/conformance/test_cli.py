"""`bench conformance` from the command line: exit codes, conformance.json, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli


def _recorded(tmp_path: Path, version: str) -> Path:
    """A conformance.json whose real side saw only /api/version (as an old run of --probe version)."""
    real = {"version status": 200, "version": {"version": version}, "GET / status": 200, "GET / body": "Ollama is running"}
    document = {"sides": {"real": "hand-written"},
                "probes": {"version": {field: {"real": {"value": value, "rule": "exact"}} for field, value in real.items()}}}
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps(document))
    return path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["conformance", *args])
    return result.exit_code, result.output


def test_matching_version_exits_0_and_writes_every_row(tmp_path):
    out = tmp_path / "conformance.json"
    code, output = _run("--recorded", str(_recorded(tmp_path, "0.33.0")), "--probe", "version", "-o", str(out))
    assert code == 0, output
    document = json.loads(out.read_text())
    assert document["counts"]["DIFFERS"] == 0
    assert document["probes"]["version"]["version"]["verdict"] == "match"
    assert "4/4 fields agree" in output


def test_an_unlisted_difference_exits_1_and_is_in_the_table(tmp_path):
    out = tmp_path / "conformance.json"
    code, output = _run("--recorded", str(_recorded(tmp_path, "0.34.0")), "--probe", "version", "-o", str(out))
    assert code == 1
    [line] = [line for line in output.splitlines() if "DIFFERS" in line]
    assert "0.33.0" in line and "0.34.0" in line
    row = json.loads(out.read_text())["probes"]["version"]["version"]
    assert row["verdict"] == "DIFFERS" and row["real"]["value"] == {"version": "0.34.0"}


def test_a_listed_difference_is_a_known_deviation_with_its_reason(tmp_path):
    known = tmp_path / "known.yaml"
    known.write_text("deviations:\n- {probe: version, field: version, reason: 'testing a newer server on purpose'}\n")
    out = tmp_path / "conformance.json"
    code, output = _run("--recorded", str(_recorded(tmp_path, "0.34.0")), "--probe", "version",
                        "--known", str(known), "-o", str(out))
    assert code == 0, output
    assert json.loads(out.read_text())["probes"]["version"]["version"]["reason"] == "testing a newer server on purpose"


@pytest.mark.parametrize("args, fragment", [
    (["--probe", "nonsense", "--recorded", "x.json"], "--probe 'nonsense': expected one of"),
    (["--recorded", "a.json", "--known", "missing.yaml"], "missing.yaml: No such file"),
    (["--recorded", "missing.json"], "missing.json: No such file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    code, output = _run(*args, "-o", str(tmp_path / "c.json"))
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0]


def test_a_recorded_file_that_is_not_conformance_json_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"probes": [1, 2]}')
    code, output = _run("--recorded", str(bad), "-o", str(tmp_path / "c.json"))
    assert code == 2 and "not a conformance.json" in output
