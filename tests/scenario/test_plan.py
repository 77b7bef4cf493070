"""Matrix expansion: cross product, zip, stable ids and order, server groups adjacent."""

from __future__ import annotations

import pytest

from bench.errors import ScenarioError
from bench.plan import Overrides, plan_cells
from bench.scenario import parse_scenario

CONTRACT_KEYS = {
    "surface", "endpoint", "model", "arrival", "concurrency", "rate_rps", "prompt_tokens",
    "max_tokens", "num_ctx", "keep_alive", "temperature", "format", "requests", "duration_s",
    "warmup_requests", "repeat",
}


def cells_of(text: str, overrides: Overrides | None = None):  # noqa: ANN201
    return plan_cells(parse_scenario(text, "s.yaml"), overrides)


def test_lists_expand_to_the_cross_product_in_a_stable_order() -> None:
    cells = cells_of(
        "workload:\n  model: m\n  endpoint: [native/chat, openai/chat]\n"
        "load:\n  concurrency: [1, 2, 4]\n"
    )
    assert len(cells) == 6
    assert [(c.surface, c.settings.concurrency) for c in cells] == [
        ("native", 1), ("native", 2), ("native", 4), ("openai", 1), ("openai", 2), ("openai", 4),
    ]
    assert [c.cell_index for c in cells] == list(range(6))
    assert CONTRACT_KEYS <= set(cells[0].settings.row())


def test_zip_moves_axes_together() -> None:
    cells = cells_of(
        "workload:\n  model: m\n  num_ctx: [2048, 8192]\n  prompt: {tokens: [1000, 6000]}\n"
        "load: {concurrency: [1, 2]}\n"
        "matrix:\n  zip: [[num_ctx, prompt_tokens]]\n"
    )
    pairs = [(c.settings.num_ctx, c.settings.prompt_tokens, c.settings.concurrency)
             for c in cells]
    assert pairs == [(2048, 1000, 1), (2048, 1000, 2), (8192, 6000, 1), (8192, 6000, 2)]


def test_zip_of_unequal_lists_is_a_scenario_error_with_a_line() -> None:
    with pytest.raises(ScenarioError, match=r"^s\.yaml:5: matrix\.zip: axes .* equal length"):
        cells_of(
            "workload:\n  model: m\n  num_ctx: [2048, 8192]\nmatrix:\n  zip: [[num_ctx, max_tokens]]\n"
        )


def test_zip_of_unknown_axis_is_reported() -> None:
    with pytest.raises(ScenarioError, match="unknown axis 'nctx'"):
        cells_of("workload:\n  model: m\nmatrix:\n  zip: [[nctx, max_tokens]]\n")


def test_same_settings_give_the_same_cell_id_across_scenarios() -> None:
    first = cells_of("name: a\nworkload:\n  model: m\nload: {concurrency: [1, 2]}\n")
    second = cells_of("name: b\ndescription: other\nworkload:\n  model: m\nload: {concurrency: 2}\n")
    assert first[1].cell_id == second[0].cell_id
    assert first[0].cell_id != first[1].cell_id


def test_server_env_axes_are_outermost_so_each_server_serves_adjacent_cells() -> None:
    cells = cells_of(
        "server:\n  command: ollama serve\n  env:\n    OLLAMA_NUM_PARALLEL: [1, 4]\n"
        "    OLLAMA_FLASH_ATTENTION: 1\n"
        "workload:\n  model: m\nload: {concurrency: [1, 8]}\n"
    )
    assert [c.server_group for c in cells] == [0, 0, 1, 1]
    assert cells[0].server_env == (("OLLAMA_NUM_PARALLEL", "1"), ("OLLAMA_FLASH_ATTENTION", "1"))
    assert cells[2].settings.server_setting("OLLAMA_NUM_PARALLEL") == "4"


def test_cli_overrides_replace_the_request_count_everywhere() -> None:
    cells = cells_of(
        "workload:\n  model: m\nload: {requests: [10, 20], warmup_requests: 3}\n",
        Overrides(requests=4, warmup_requests=0),
    )
    assert len(cells) == 1  # the requests axis collapsed to the override
    assert cells[0].settings.requests == 4
    assert cells[0].settings.warmup_requests == 0


def test_open_loop_cells_carry_rate_and_optional_cap() -> None:
    cells = cells_of(
        "workload:\n  model: m\nload:\n  arrival: poisson\n  rate_rps: [1.5, 3]\n  duration_s: 10\n"
    )
    assert [(c.settings.arrival, c.settings.rate_rps, c.settings.concurrency) for c in cells] == [
        ("poisson", 1.5, None), ("poisson", 3.0, None),
    ]
    assert cells[0].settings.duration_s == 10.0


def test_gap_axis_sets_each_cells_idle_gap() -> None:
    cells = cells_of("workload:\n  model: m\npace:\n  gap_s: [0, 5]\n")
    assert [c.gap_s for c in cells] == [0.0, 5.0]
    assert cells[0].cell_id != cells[1].cell_id


def test_schema_format_is_sent_and_named_schema_in_settings() -> None:
    cells = cells_of(
        "workload:\n  model: m\n  format:\n    - none\n    - json\n    - {type: object, properties: {a: {type: string}}}\n"
    )
    assert [c.settings.format for c in cells] == ["none", "json", "schema"]
    assert [c.request_format for c in cells][:2] == [None, "json"]
    assert cells[2].request_format["type"] == "object"


def test_embeddings_endpoints_map_to_embed() -> None:
    cells = cells_of("workload:\n  model: e\n  endpoint: [native/embed, openai/embeddings]\n")
    assert [(c.surface, c.endpoint) for c in cells] == [("native", "embed"), ("openai", "embed")]
