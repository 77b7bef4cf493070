"""Saturation diagnosed both ways, and the server's effective settings in the environment section."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.analysis.saturation import effective_num_parallel, find_saturation, run_saturations
from bench.records.cell_settings import CellSettings
from bench.records.manifest import Manifest
from bench.report import write_report

# The README's flag-only example on the simulator's default NUM_PARALLEL=1 (measured: TTFT p50
# 26 → 771 → 1776 ms while output tok/s stays 248-255).
FLAT = pd.DataFrame({"concurrency": [1, 4, 8], "ok": [24, 24, 24], "output_tps": [248.2, 255.4, 253.2],
                     "ttft_p50_s": [0.026, 0.771, 1.776]}, index=["a", "b", "c"])


def report_of(run_dir: Path) -> str:
    return write_report([run_dir], run_dir / "report.html").read_text(encoding="utf-8")


def test_flat_throughput_with_climbing_ttft_is_saturation_at_the_servers_num_parallel() -> None:
    found = find_saturation(FLAT, "", effective_num_parallel(None, {}))
    assert found is not None
    assert found.sentence().startswith("saturated at concurrency 1, server NUM_PARALLEL=1 (default):")
    assert "Raise NUM_PARALLEL" in found.sentence()
    growing = FLAT.assign(output_tps=[250.0, 900.0, 1700.0], ttft_p50_s=[0.026, 0.03, 0.035])
    assert find_saturation(growing, "", "4") is None


def test_with_a_slot_for_every_request_saturation_is_the_device_not_num_parallel() -> None:
    """The quiet engine run (scenarios/calibrate-engine.yaml, NUM_PARALLEL 8): 191 → 191 tok/s from
    c=2 to 4 while TTFT p50 went 177 → 311 ms; every request had a slot, so more cannot help."""
    found = find_saturation(FLAT, "", "8")
    assert found is not None and "Raise NUM_PARALLEL" not in found.sentence()
    assert found.sentence().endswith("every request had a slot (NUM_PARALLEL 8 ≥ 4), so they waited for the "
                                     "device: a larger NUM_PARALLEL will not help; offer no more load than "
                                     "this, or a faster device or smaller model.")
    for fewer_slots in ("2", "unknown (a server bench did not start)"):
        found = find_saturation(FLAT, "", fewer_slots)
        assert found is not None and "Raise NUM_PARALLEL" in found.sentence()


def _manifest(kind: str, servers: list[dict[str, object]], num_parallel: str | None = None) -> Manifest:
    server_env = {"OLLAMA_NUM_PARALLEL": num_parallel} if num_parallel else {}
    cells = [{"cell_id": cell_id, "cell_index": index, "server_id": 0 if servers else None,
              "settings": CellSettings(arrival="closed", concurrency=int(concurrency), model="m",
                                       server_env=server_env)}
             for index, (cell_id, concurrency) in enumerate(zip(FLAT.index, FLAT["concurrency"]))]
    return Manifest.model_validate({"target": {"kind": kind}, "cells": cells, "servers": servers})


def test_a_run_names_where_its_closed_loop_saturated_and_the_servers_num_parallel() -> None:
    summary = FLAT.drop(columns=["concurrency"])
    found = run_saturations(_manifest("sim", [{"server_id": 0, "env": {}}]), summary)
    assert [s.sentence().split(": from")[0] for s in found] == [
        "saturated at concurrency 1, server NUM_PARALLEL=1 (default)"]
    assert "NUM_PARALLEL=4:" in run_saturations(_manifest("managed", [], num_parallel="4"), summary)[0].sentence()
    assert "unknown" in run_saturations(_manifest("url", []), summary)[0].sentence()
    # A series per setting that varies besides concurrency, named by it (the report's plot lines).
    two = _manifest("sim", [])
    two.cells += [cell.model_copy(update={"cell_id": f"{cell.cell_id}2", "cell_index": cell.cell_index + 3,
                                          "settings": cell.settings.model_copy(update={"model": "n"})})
                  for cell in two.cells]
    doubled = pd.concat([summary, summary.rename(index=lambda cell_id: f"{cell_id}2")])
    assert [s.series for s in run_saturations(two, doubled)] == ["model=m", "model=n"]


def test_no_more_load_is_advised_for_a_setting_that_spilled_to_the_cpu(make_run: Callable[..., Path]) -> None:
    # Throughput still rises at the highest concurrency of this hand-made run ...
    assert "offer more load" in report_of(make_run(ps=True, rejected_at=None))
    # ... but where /api/ps shows the model partly on the CPU, the setting is ruled out.
    spilled = report_of(make_run(run_id="spilled", spill=True, rejected_at=None))
    assert "CPU spill" in spilled and "offer more load" not in spilled


def test_environment_shows_the_managed_servers_effective_settings(make_run: Callable[..., Path]) -> None:
    environment = report_of(make_run()).split('<section id="environment">')[1]
    assert "OLLAMA_NUM_PARALLEL=2 " in environment  # set by the scenario
    assert "OLLAMA_MAX_QUEUE=512 (default)" in environment and "OLLAMA_KEEP_ALIVE=5m (default)" in environment


def test_environment_of_a_remote_server_shows_what_its_api_reported(make_run: Callable[..., Path]) -> None:
    run = make_run(ps=True)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["servers"], manifest["target"]["kind"] = [], "url"
    (run / "manifest.json").write_text(json.dumps(manifest))
    environment = report_of(run).split('<section id="environment">')[1]
    assert "Server settings seen" in environment and "context_length 8,192" in environment
    assert "version (/api/version)" in environment and "0.12.6" in environment


def test_a_kv_table_without_a_measurement_says_so_instead_of_a_zero_fit(make_run: Callable[..., Path]) -> None:
    from bench.records import KV_JSON, read_json, write_json

    run = make_run(kv=True)
    payload = read_json(run / KV_JSON)
    group = payload["groups"][0]
    # As an older bench wrote it for the simulated engine: the simulator's own RSS fitted as "measured".
    group.update(measured_source="ollama_ps", process_source="tree_rss",
                 fits={**group["fits"], "nvml": None, "process_rss": {"fixed_bytes": 1.9e8, "bytes_per_token": 0.0}})
    group["bytes_per_token"].update(nvml=None, process_rss=0.0)
    group["ratio_to_measured"]["ollama_ps"] = 1.0
    for point in group["points"]:
        point.update(nvml_bytes=None, process_rss_bytes=1.9e8)
    write_json(run / KV_JSON, payload)
    memory = report_of(run).split('<section id="memory">')[1].split("</section>")[0]
    assert "0.0 KiB" not in memory and "1.00×" not in memory
    assert "no KV measurement in this run" in memory and "nothing measured" in memory
