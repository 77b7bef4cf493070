"""Bad input never crashes: random bytes and structurally mutated scenarios give a one-line
ScenarioError (FILE:LINE: field: message) or a valid plan, never a traceback.

Complements tests/scenario (random text, character-level mutations) and tests/clients
(random and mutated bytes into both stream parsers): here the mutations follow the scenario's
structure, so they reach the validators and the planner, not only the YAML reader.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.errors import ScenarioError
from bench.plan import plan_cells
from bench.scenario import load_scenario, parse_scenario

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"
SHIPPED = sorted(SCENARIOS_DIR.glob("*.yaml"))
SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Values a careless (or hostile) edit may put anywhere in a scenario.
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["5m", "-1", "0", "1h30m", "closed", "poisson", "native/chat", "sim", "json",
                     "100ms", "2s", "OLLAMA_NUM_PARALLEL", "concurrency", "~", "[]", "{}"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=10)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key / index path in a loaded YAML document."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any, action: str) -> None:
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{last}_x"] = parent.pop(last)
    else:
        parent[last] = value


def _assert_one_line_or_valid(text: str) -> None:
    try:
        scenario = parse_scenario(text, "fuzz.yaml")
        plan_cells(scenario)
    except ScenarioError as error:
        _assert_lines_name(str(error), "fuzz.yaml:")


def _assert_lines_name(message: str, source: str) -> None:
    """One line per problem, each naming the file (bench validate lists every problem)."""
    lines = message.split("\n")
    assert lines and all(line.startswith(source) for line in lines), message
    assert len(set(lines)) == len(lines), message


@SETTINGS
@given(base=st.sampled_from(SHIPPED), data=st.data())
def test_structurally_mutated_scenarios_give_one_line_errors(base: Path, data: st.DataObject) -> None:
    document = yaml.safe_load(base.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "replace", "delete", "rename"]))
        _set(document, path, data.draw(VALUES), action)
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return  # a value YAML itself cannot write; nothing to feed the loader
    _assert_one_line_or_valid(text)


@SETTINGS
@given(payload=st.binary(max_size=600))
def test_random_bytes_as_a_scenario_file_give_one_line_errors(tmp_path_factory, payload: bytes) -> None:  # noqa: ANN001
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_bytes(payload)
    try:
        plan_cells(load_scenario(path))
    except ScenarioError as error:
        _assert_lines_name(str(error), str(path))


@SETTINGS
@given(value=VALUES, field=st.sampled_from([
    "load.concurrency", "load.rate_rps", "load.requests", "load.duration_s", "load.timeout_s",
    "workload.max_tokens", "workload.prompt.tokens", "workload.keep_alive", "workload.format",
    "pace.gap_s", "abort_on.error_rate", "slos", "matrix.zip", "server.env", "sim.args", "api_key_env",
]))
@example(value=float("inf"), field="load.rate_rps")  # accepted once: a run that never ends
@example(value=float("inf"), field="load.duration_s")
@example(value=[1e308, float("inf")], field="load.concurrency")
def test_any_value_in_any_field_is_accepted_or_named(value: Any, field: str) -> None:
    document: dict[str, Any] = {"workload": {"model": "llama3.2:1b"}, "load": {"arrival": "poisson",
                                                                             "rate_rps": 2}}
    if field == "load.concurrency" or not field.startswith("load.rate"):
        document["load"] = {"requests": 4}
    node = document
    parts = field.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = copy.deepcopy(value)
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        scenario = parse_scenario(text, "fuzz.yaml")
        cells = plan_cells(scenario)
    except ScenarioError as error:
        _assert_lines_name(str(error), "fuzz.yaml:")
        return
    # Accepted: then what the planner made of it is runnable (finite, positive where it must be).
    for cell in cells:
        settings_ = cell.settings
        assert isinstance(settings_.max_tokens, int) and settings_.max_tokens >= 1
        for value_ in (settings_.rate_rps, settings_.duration_s):
            assert value_ is None or (math.isfinite(value_) and value_ > 0), value_
