"""Arrival shapes end to end: a scenario with ramp_up or stages runs against the simulator, and the
stored schedule (scheduled_s) has the shape asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.records import load_run

pytestmark = pytest.mark.e2e

SCENARIO = """\
workload:
  endpoint: native/chat
  model: llama3.2:1b
  prompt: {{tokens: 64}}
  max_tokens: 4
  seed: 3
load:
  arrival: {arrival}
  warmup_requests: 0
{shape}"""


def _run(sim, tmp_path: Path, arrival: str, shape: str) -> np.ndarray:  # noqa: ANN001
    base_url = sim(speed=50.0)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(arrival=arrival, shape=shape))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out), "--no-report"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    requests = load_run(out).requests
    # The measured schedule only: no calibration probes (negative index) or warmup.
    requests = requests[(requests["phase"] == "measure") & (requests["request_index"] >= 0)].sort_values("request_index")
    return requests["scheduled_s"].to_numpy(float)


def test_a_linear_ramp_up_sends_faster_and_faster(sim, tmp_path: Path) -> None:  # noqa: ANN001
    scheduled = _run(sim, tmp_path, "constant",
                     "  requests: 9\n  ramp_up: {strategy: linear, start_rps: 2, end_rps: 18}\n")
    gaps = np.diff(scheduled)
    # Constant arrivals on a ramp by index: the gap before request i is 1 / (2 + 2 i) s.
    assert gaps == pytest.approx([1 / (2 + 2 * i) for i in range(1, 9)], abs=0.01)


def test_stages_start_slow_and_hold_their_target(sim, tmp_path: Path) -> None:  # noqa: ANN001
    scheduled = _run(sim, tmp_path, "constant",
                     "  duration_s: 3\n  rate_rps: 1\n  stages: [{duration_s: 1, target_rps: 9}, {duration_s: 2, target_rps: 9}]\n")
    # Area: 1 s ramping 1 -> 9 rps (5 requests' worth) then 2 s at 9 rps (18): about 23 arrivals.
    assert len(scheduled) == pytest.approx(23, abs=2)
    late_gaps = np.diff(scheduled[scheduled - scheduled[0] > 1.2])
    assert late_gaps == pytest.approx(np.full(len(late_gaps), 1 / 9), abs=0.01)
