"""A cell's settings are typed from plan to report, and stored as every run before stored them."""

from __future__ import annotations

from bench.plan import plan_cells
from bench.records.cell_settings import UNCAPPED_IN_FLIGHT, CellSettings
from bench.records.manifest import Manifest
from bench.scenario import Scenario

# Measured with the plan of the commit before CellSettings: baselines and resumed runs find their
# cells by these ids, so the typed settings must hash to exactly the same ones.
STUDY = {"server": {"env": {"OLLAMA_NUM_PARALLEL": [1, 2]}},
         "workload": {"model": "m", "num_ctx": [2048], "conversation": {"turns": 3},
                      "prompt": {"shared_prefix_tokens": 64, "cache": ["reuse", "defeat"]}},
         "load": {"arrival": ["closed"], "concurrency": [1, 4], "duration_s": 10}}
IDS_BEFORE = ["88a2ef444f", "c58c68df56", "d752392956", "3fd270e39a",
              "e29af65d96", "8ba3cea9d4", "ceacaed343", "8d69fc6c32"]


def test_planned_cells_keep_the_ids_and_stored_keys_of_older_runs() -> None:
    cells = plan_cells(Scenario.model_validate(STUDY))
    assert [cell.cell_id for cell in cells] == IDS_BEFORE
    # Stored flat, in the old key order, server variables after the workload's optional axes.
    assert list(cells[1].settings.row())[-5:] == ["repeat", "shared_prefix_tokens", "turns",
                                                   "prompt_cache", "OLLAMA_NUM_PARALLEL"]
    assert cells[1].settings.concurrency == 4 and cells[1].settings.num_ctx == 2048
    assert cells[4].server_env == (("OLLAMA_NUM_PARALLEL", "2"),)


def test_a_manifest_that_stored_a_dict_reads_back_typed_and_writes_the_same_keys() -> None:
    stored = {"surface": "openai", "endpoint": "chat", "model": "m", "arrival": "poisson",
              "concurrency": None, "rate_rps": 2.5, "num_ctx": 4096, "OLLAMA_NUM_PARALLEL": 4}
    manifest = Manifest.model_validate({"cells": [{"cell_id": "a", "settings": stored}]})
    settings = manifest.cell_settings()["a"]
    assert (settings.rate_rps, settings.num_ctx, settings.concurrency) == (2.5, 4096, None)
    assert settings.server_setting("OLLAMA_NUM_PARALLEL") == "4"  # a server variable is text
    assert manifest.to_json()["cells"][0]["settings"] == {**stored, "OLLAMA_NUM_PARALLEL": "4"}


def test_an_uncapped_cell_keeps_at_most_the_pools_requests_in_flight() -> None:
    assert CellSettings(arrival="poisson", rate_rps=1.0).in_flight_cap == UNCAPPED_IN_FLIGHT
    assert CellSettings(arrival="closed", concurrency=8).in_flight_cap == 8
