"""Every probe against `bench sim`, compared with what the real Ollama v0.33.0 answered.

`ollama-0.33.0.json` is the conformance.json of a `bench conformance` run against the real
`ollama serve` built by `bench ollama build` on the project's 2-core CPU machine (see its "sides");
the `ollama` tier re-runs the live comparison. Here no Go is needed: the simulator must agree with
that record on every field, or the difference must be in known_deviations.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.conformance.probes import PROBE_NAMES

RECORDED = Path(__file__).with_name("ollama-0.33.0.json")
# Two halves, each well under a minute on the 2-core machine (each model load costs the sim ~1 s).
HALVES = (PROBE_NAMES[:9], PROBE_NAMES[9:])


@pytest.mark.parametrize("probes", HALVES, ids=["api-and-scheduler", "runner"])
def test_the_simulator_agrees_with_the_recorded_real_ollama(probes, tmp_path):
    out = tmp_path / "conformance.json"
    args = ["conformance", "--recorded", str(RECORDED), "-o", str(out)]
    for name in probes:
        args += ["--probe", name]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert set(document["probes"]) == set(probes)
    assert not any("probe error" in fields for fields in document["probes"].values())


def test_the_record_has_every_probe_and_comes_from_a_real_server():
    document = json.loads(RECORDED.read_text())
    assert set(document["probes"]) == set(PROBE_NAMES)
    assert document["sides"]["real"].startswith("ollama serve 0.33.0")
