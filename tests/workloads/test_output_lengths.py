"""Output lengths from data: reference answers' lengths as per-request max_tokens, or a distribution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.workload.prompts import PromptSource
from bench.records import load_run
from bench.scenario import Distribution, PromptSpec, parse_scenario

KEY = ("m", "native", "chat")


def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    items = [{"prompt": "short question", "output": "x" * 40},     # 10 tokens at 4 chars/token
             {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "y" * 100}]},
             {"prompt": "no reference answer"}]
    path.write_text("\n".join(json.dumps(item) for item in items))
    return path


def test_reference_answer_lengths_become_max_tokens(tmp_path: Path) -> None:
    source = PromptSource(PromptSpec(file=str(dataset(tmp_path))), seed=0)
    lengths = [source.max_tokens_for(KEY, "from_data", f"c:0:{i}", i) for i in range(4)]
    # The third item has no answer: the median of the file's answers stands in.
    assert lengths == [10, 25, 25, 10]
    assert source.max_tokens_for(KEY, 64, "c:0:0", 0) == 64


def test_a_distribution_is_drawn_per_request_within_bounds() -> None:
    source = PromptSource(PromptSpec(tokens=[32]), seed=0)
    spread = Distribution(distribution="uniform", low=10, high=90)
    draws = [source.max_tokens_for(KEY, spread, f"c:0:{i}", i) for i in range(200)]
    assert min(draws) >= 10 and max(draws) <= 90 and len(set(draws)) > 20
    assert draws == [source.max_tokens_for(KEY, spread, f"c:0:{i}", i) for i in range(200)]


def test_from_data_without_a_file_is_a_scenario_error() -> None:
    with pytest.raises(Exception, match="max_tokens: from_data takes each request's length"):
        parse_scenario("workload: {model: m, max_tokens: from_data}\n", "s.yaml")


@pytest.mark.e2e
def test_requests_ask_for_their_reference_answers_length(sim, tmp_path: Path) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from bench.cli import cli

    base_url = sim(speed=50.0)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"workload: {{model: llama3.2:1b, max_tokens: from_data, prompt: "
                        f"{{file: {dataset(tmp_path)}}}}}\n"
                        "load: {concurrency: 1, requests: 6, warmup_requests: 0}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                      "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    measured = load_run(out).requests.sort_values("request_index")
    # The simulator generates until num_predict unless its text ends first: never more.
    assert list(measured["output_tokens"] <= [10, 25, 25, 10, 25, 25]) == [True] * 6
    assert (measured["done_reason"] == "length").any()
