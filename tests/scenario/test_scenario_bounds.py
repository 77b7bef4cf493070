"""Scenario values are typed and bounded at the edge: one line per problem, before any run.

Each test is a promise that once broke (issue 16): alias bombs, numbers past 64 bits, empty
axes, booleans as counts, listeners beyond loopback, targets silently rewritten.
"""

from __future__ import annotations

import pytest

from bench.errors import ScenarioError, UsageError
from bench.scenario import parse_scenario, resolve_ollama_host

MINIMAL = "workload:\n  model: m\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "s.yaml")
    return str(caught.value).split("\n")


@pytest.mark.timeout(20)
def test_alias_bomb_is_refused_at_once() -> None:
    # 9 levels of 9 aliases: 387 million values once expanded; the file is under 1 KB.
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        levels.append(f"l{level}: &l{level} [{refs}]")
    text = "\n".join(levels) + "\nworkload: {model: *l8}\n"
    assert len(text) < 1024
    (problem,) = problems_of(text)
    assert problem.startswith("s.yaml:") and "alias" in problem


@pytest.mark.timeout(20)
def test_shared_alias_with_a_duplicate_key_is_reported_once() -> None:
    text = "base: &b {k: 1, k: 2}\nx: [*b, *b, *b, *b]\n" + MINIMAL
    duplicate = [p for p in problems_of(text) if "duplicate key" in p]
    assert duplicate == ["s.yaml:1: base.k: duplicate key"]


def test_recursive_alias_is_refused() -> None:
    (problem,) = problems_of("a: &a [*a]\n" + MINIMAL)
    assert "refers to itself" in problem


def test_every_problem_is_listed_with_a_suggestion() -> None:
    text = MINIMAL + "load:\n  concurency: 4\n  requsts: 8\n  repeats: 0\n"
    assert problems_of(text) == [
        "s.yaml:4: load.concurency: unknown field (did you mean concurrency?)",
        "s.yaml:5: load.requsts: unknown field (did you mean requests?)",
        "s.yaml:6: load.repeats: Input should be greater than or equal to 1",
    ]


def test_unknown_top_level_field_gets_a_suggestion() -> None:
    (problem,) = problems_of(MINIMAL + "gatez: {}\n")
    assert problem == "s.yaml:3: gatez: unknown field (did you mean gates?)"


@pytest.mark.parametrize("field, value", [
    ("workload.max_tokens", "99999999999999999999999"),
    ("workload.seed", "99999999999999999999999"),
    ("workload.num_ctx", "18446744073709551617"),
    ("load.requests", "1e400"),
    ("load.concurrency", "2000000"),
    ("load.warmup_requests", "99999999999999999999999"),
])
def test_numbers_past_their_bounds_are_refused(field: str, value: str) -> None:
    section, name = field.split(".")
    setting = f"  {name}: {value}\n"
    text = MINIMAL + setting if section == "workload" else MINIMAL + f"{section}:\n" + setting
    (problem,) = problems_of(text)
    assert problem.startswith(f"s.yaml:{text.count(chr(10))}: {field}: "), problem


@pytest.mark.parametrize("text", [
    "workload:\n  model: []\n",
    "workload:\n  model: m\n  endpoint: []\n",
    MINIMAL + "load:\n  concurrency: []\n",
])
def test_empty_axes_are_refused_not_run_as_zero_cells(text: str) -> None:
    (problem,) = problems_of(text)
    assert "at least 1 item" in problem


@pytest.mark.parametrize("value", ["true", "'4'", "2.5"])
def test_a_count_must_be_an_integer_not_a_boolean_or_string(value: str) -> None:
    (problem,) = problems_of(MINIMAL + f"load:\n  concurrency: {value}\n")
    assert problem.startswith("s.yaml:4: load.concurrency")


@pytest.mark.parametrize("block", [
    "sim: {args: ['--host', '0.0.0.0']}",
    "sim: {args: ['--host=192.168.1.5']}",
    "sim: {env: {OLLAMA_HOST: '0.0.0.0:1'}}",
    "server: {command: ['bash', '-c', 'bench sim --host 0.0.0.0']}",
    "server: {command: 'env OLLAMA_HOST=0.0.0.0:11434 ollama serve'}",
    "server: {command: ['llama-server', '--host', '::']}",
])
def test_a_scenario_cannot_make_a_server_listen_beyond_loopback(block: str) -> None:
    (problem,) = problems_of(MINIMAL + block + "\n")
    assert problem.startswith("s.yaml:3: ") and ("loopback" in problem or "127.0.0.1" in problem)
    assert "sim." in problem or "server." in problem


def test_loopback_host_arguments_are_allowed() -> None:
    parse_scenario(MINIMAL + "server: {command: ['llama-server', '--host', '127.0.0.1']}\n")


@pytest.mark.parametrize("target", ["localhost:99999", "http://10.1.2.3:abc", "http://127.0.0.1:1:2",
                                    "ftp://box", "http://box:0"])
def test_a_bad_target_is_refused_never_rewritten(target: str) -> None:
    (problem,) = problems_of(f"target: '{target}'\n" + MINIMAL)
    assert problem.startswith("s.yaml:1: target: ")
    with pytest.raises(UsageError, match="^target "):
        resolve_ollama_host(target)


def test_a_bad_ollama_host_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "localhost:99999")
    with pytest.raises(UsageError, match="^OLLAMA_HOST 'localhost:99999': port"):
        resolve_ollama_host()
