"""Scenario files: valid ones load; every mistake is one line `FILE:LINE: field: message`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.errors import ScenarioError
from bench.scenario import load_scenario, parse_scenario, resolve_ollama_host, scenario_json_schema

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"

MINIMAL = """\
name: t
workload:
  model: llama3.2:1b
"""


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_shipped_scenarios_load() -> None:
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        load_scenario(path)


def test_minimal_scenario_gets_defaults() -> None:
    scenario = parse_scenario(MINIMAL)
    assert scenario.workload.endpoint == ["native/chat"]
    assert scenario.load.arrival == ["closed"]
    assert scenario.load.requests == [32]
    assert scenario.store_text is False


def test_unknown_key_names_file_line_and_field() -> None:
    text = MINIMAL + "load:\n  concurrency: 2\n  concurency: 4\n"
    assert error_of(text) == "s.yaml:6: load.concurency: unknown field (did you mean concurrency?)"


def test_wrong_type_names_line_and_field() -> None:
    text = "workload:\n  model: m\n  max_tokens: lots\n"
    assert error_of(text).startswith("s.yaml:3: workload.max_tokens: Input should be a valid integer")


def test_zero_concurrency_in_a_list_points_at_the_element() -> None:
    text = MINIMAL + "load:\n  concurrency:\n    - 1\n    - 0\n"
    assert error_of(text) == "s.yaml:7: load.concurrency[1]: Input should be greater than or equal to 1"


def test_negative_rate_is_impossible() -> None:
    text = MINIMAL + "load:\n  arrival: poisson\n  rate_rps: -2\n"
    assert error_of(text).startswith("s.yaml:6: load.rate_rps: Input should be greater than 0")


def test_rate_without_open_loop_is_blamed_on_rate_rps() -> None:
    text = MINIMAL + "load:\n  arrival: closed\n  rate_rps: 3\n"
    assert error_of(text) == (
        "s.yaml:6: load.rate_rps: needs arrival constant or poisson (closed loop has no rate)"
    )


def test_open_loop_without_rate_is_reported() -> None:
    text = MINIMAL + "load:\n  arrival: poisson\n"
    assert "load.rate_rps: required for arrival poisson" in error_of(text)


def test_distribution_missing_parameter_names_it() -> None:
    text = "workload:\n  model: m\n  prompt:\n    tokens: {distribution: uniform, low: 10}\n"
    assert error_of(text) == (
        "s.yaml:4: workload.prompt.tokens.high: required for a uniform distribution"
    )


def test_unknown_endpoint_lists_choices() -> None:
    message = error_of("workload:\n  model: m\n  endpoint: native/chatt\n")
    assert message.startswith("s.yaml:3: workload.endpoint: Input should be 'native/chat'")


def test_missing_required_model_is_reported() -> None:
    assert error_of("workload:\n  max_tokens: 3\n") == "s.yaml:1: workload.model: Field required"


def test_yaml_syntax_error_has_a_line() -> None:
    message = error_of("workload:\n  model: m\nload: {concurrency: [1, 2\n")
    assert re.match(r"^s\.yaml:\d+: YAML syntax error: ", message)


def test_duplicate_key_is_an_error_not_a_silent_override() -> None:
    text = MINIMAL + "load:\n  requests: 5\n  requests: 6\n"
    assert error_of(text) == "s.yaml:6: load.requests: duplicate key"


def test_top_level_list_is_rejected() -> None:
    assert error_of("- a\n- b\n") == "s.yaml:1: (top level): a scenario must be a mapping of fields"


def test_api_key_is_a_variable_name_never_a_key() -> None:
    assert "api_key_env" in error_of(MINIMAL + "api_key_env: sk-abc123\n")


def test_bad_keep_alive_duration() -> None:
    message = error_of("workload:\n  model: m\n  keep_alive: 5 minutes\n")
    assert message.startswith("s.yaml:3: workload.keep_alive")


def test_yaml_tags_cannot_build_python_objects(tmp_path: Path) -> None:
    text = MINIMAL + "description: !!python/object/apply:os.system ['true']\n"
    assert "YAML" in error_of(text)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.yaml")


def test_prompt_file_is_resolved_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "s.yaml").write_text("workload:\n  model: m\n  prompt:\n    file: prompts.jsonl\n")
    scenario = load_scenario(tmp_path / "s.yaml")
    assert scenario.workload.prompt.file == str(tmp_path / "prompts.jsonl")
    (tmp_path / "t.yaml").write_text("workload:\n  model: m\n  prompt:\n    file: other.jsonl\n")
    with pytest.raises(ScenarioError, match=r"t\.yaml:4: workload\.prompt\.file: no such file"):
        load_scenario(tmp_path / "t.yaml")


def test_schema_is_json_schema_with_axes_accepting_scalars() -> None:
    schema = scenario_json_schema()
    assert schema["title"] == "bench scenario"
    load_props = schema["$defs"]["Load"]["properties"]
    assert "concurrency" in load_props
    assert "anyOf" in str(load_props["concurrency"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),  # a listen address: reached through loopback
        ("example.com:8080", "http://example.com:8080"),
        ("https://example.com", "https://example.com:443"),
        ("http://box", "http://box:80"),
        (":9999", "http://127.0.0.1:9999"),
        ("[::1]:11434", "http://[::1]:11434"),
        ("http://host:1234/ollama", "http://host:1234/ollama"),
    ],
)
def test_ollama_host_resolves_like_ollama_clients(value: str, expected: str) -> None:
    assert resolve_ollama_host(value) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_tracebacks(text: str) -> None:
    try:
        parse_scenario(text, "fuzz.yaml")
    except ScenarioError as error:
        assert all(line.startswith("fuzz.yaml:") for line in str(error).split("\n"))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_scenarios_never_traceback(data: st.DataObject) -> None:
    base = (SCENARIOS_DIR / "quickstart.yaml").read_text()
    position = data.draw(st.integers(0, len(base)))
    insert = data.draw(st.sampled_from(["", ":", "- ", "  ", "\n", "[", "0", "-1", "x: y\n", "{"]))
    cut = data.draw(st.integers(0, 5))
    text = base[:position] + insert + base[position + cut:]
    try:
        parse_scenario(text, "fuzz.yaml")
    except ScenarioError as error:
        assert str(error).startswith("fuzz.yaml:")
