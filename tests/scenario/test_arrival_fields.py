"""Arrival shapes in `load:` — burstiness, ramp_up, stages — load as written, and every misuse is
one line naming the file, line and field."""

from __future__ import annotations

import pytest

from bench.errors import ScenarioError
from bench.scenario import parse_scenario

HEAD = "workload:\n  model: llama3.2:1b\nload:\n"


def error_of(load: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(HEAD + load, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s.yaml:")
    return message


def test_shapes_load_as_written() -> None:
    bursty = parse_scenario(HEAD + "  arrival: poisson\n  rate_rps: 4\n  burstiness: 0.5\n").load
    assert bursty.burstiness == 0.5
    ramp = parse_scenario(HEAD + "  arrival: poisson\n  ramp_up: {strategy: exponential, start_rps: 1, end_rps: 16}\n"
                                 "  requests: 100\n").load
    assert ramp.ramp_up is not None and ramp.ramp_up.end_rps == 16 and ramp.rate_rps is None
    staged = parse_scenario(HEAD + "  arrival: constant\n  rate_rps: 1\n  duration_s: 60\n  stages:\n"
                                   "    - {duration_s: 30, target_rps: 10}\n    - {duration_s: 30, target_rps: 0}\n").load
    assert [s.target_rps for s in staged.stages or []] == [10, 0]


@pytest.mark.parametrize(("load", "expected"), [
    ("  arrival: closed\n  burstiness: 0.5\n", "load.burstiness: needs arrival poisson"),
    ("  arrival: constant\n  rate_rps: 2\n  burstiness: 0.5\n", "load.burstiness: needs arrival poisson"),
    ("  arrival: poisson\n  rate_rps: 2\n  burstiness: 0\n", "load.burstiness"),
    ("  arrival: closed\n  ramp_up: {strategy: linear, start_rps: 1, end_rps: 2}\n", "load.ramp_up: needs arrival"),
    ("  arrival: poisson\n  rate_rps: 2\n  ramp_up: {strategy: linear, start_rps: 1, end_rps: 2}\n",
     "load.rate_rps: ramp_up sets the rate"),
    ("  arrival: poisson\n  ramp_up: {strategy: exponential, start_rps: 0, end_rps: 2}\n",
     "start_rps: an exponential ramp multiplies the rate"),
    ("  arrival: poisson\n  ramp_up: {strategy: sideways, start_rps: 1, end_rps: 2}\n", "strategy"),
    ("  arrival: poisson\n  stages: [{duration_s: 10, target_rps: 0}]\n", "load.stages: every target_rps is 0"),
    ("  arrival: poisson\n  stages: []\n", "load.stages"),
    ("  arrival: poisson\n  rate_rps: [1, 2]\n  stages: [{duration_s: 10, target_rps: 5}]\n",
     "load.rate_rps: with stages it is the one starting rate"),
    ("  arrival: poisson\n  ramp_up: {strategy: linear, start_rps: 1, end_rps: 2}\n"
     "  stages: [{duration_s: 10, target_rps: 5}]\n", "ramp_up and stages: give one of them"),
])
def test_misused_shapes_are_one_line_errors(load: str, expected: str) -> None:
    assert expected in error_of(load)


def test_open_loop_without_a_rate_or_shape_still_says_what_is_missing() -> None:
    assert "rate_rps: required for arrival poisson (or ramp_up:, stages:)" in error_of("  arrival: poisson\n")


def test_a_misspelt_stage_field_is_named_with_its_correction() -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(HEAD + "  arrival: poisson\n  stages: [{duration: 10, target_rps: 1}]\n", "s.yaml")
    assert "s.yaml:5: load.stages[0].duration: unknown field (did you mean duration_s?)" in str(caught.value)
