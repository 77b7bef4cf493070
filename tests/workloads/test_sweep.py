"""The saturation sweep: steps planned up front, rates set from measured steps, knee and SLO load."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bench.analysis.recommend import parse_slo
from bench.analysis.sweep import sweep_results
from bench.cli import cli
from bench.plan import Cell, plan_cells
from bench.records import RequestRecord
from bench.records.cell_settings import CellSettings
from bench.run.sweep import SweepTracker, rate_for_step
from bench.scenario import SweepSpec, parse_scenario
from bench.sim.testing import running_sim


def test_a_sweep_plans_sync_throughput_and_rate_steps_with_stable_ids() -> None:
    scenario = parse_scenario("workload: {model: m}\nload: {arrival: sweep, sweep: {rates: 3, "
                              "max_concurrency: 16}, requests: 8}\n")
    cells = plan_cells(scenario)
    assert [c.settings.sweep_step for c in cells] == ["sync", "throughput", "rate 1/3",
                                                      "rate 2/3", "rate 3/3"]
    assert [c.settings.concurrency for c in cells] == [1, 16, None, None, None]
    assert [c.settings.arrival for c in cells] == ["closed", "closed", "constant", "constant", "constant"]
    assert all(c.settings.rate_rps is None for c in cells)  # set during the run
    assert [c.cell_id for c in plan_cells(scenario)] == [c.cell_id for c in cells]


def test_rate_steps_are_evenly_spaced_up_to_the_maximum_or_beyond() -> None:
    assert [rate_for_step(f"rate {i}/4", 2.0, 10.0) for i in (1, 2, 3, 4)] == [4.0, 6.0, 8.0, 10.0]
    assert rate_for_step("rate 4/4", 2.0, 10.0, max_rate_factor=1.5) == 15.0


def record(cell: Cell, sent_s: float, ttft_s: float) -> RequestRecord:
    return RequestRecord(cell_id=cell.cell_id, request_index=0, surface="native", endpoint="chat",
                         model="m", sent_s=sent_s, first_token_s=sent_s + ttft_s,
                         end_s=sent_s + ttft_s + 0.1, chunk_times_s=[sent_s + ttft_s])


def test_the_tracker_sets_rates_from_measured_steps_and_stops_after_a_broken_slo() -> None:
    scenario = parse_scenario("workload: {model: m}\nload: {arrival: sweep, sweep: {rates: 3}}\n")
    sync, throughput, first, second, third = plan_cells(scenario)
    tracker = SweepTracker(SweepSpec(rates=3), (parse_slo("ttft_p95=100ms"),))
    for cell, spacing_s in ((sync, 0.5), (throughput, 0.1)):  # 2 and 10 req/s
        assert tracker.prepare(cell) is cell
        for i in range(11):
            tracker.observe(cell, record(cell, i * spacing_s, 0.01))
        tracker.finished(cell)
    first = tracker.prepare(first)
    assert isinstance(first, Cell) and first.settings.rate_rps == pytest.approx(
        11 / 5.11 + (11 / 1.11 - 11 / 5.11) / 3, rel=0.01)  # windows: first send to last end
    for i in range(10):
        tracker.observe(first, record(first, i * 0.2, 0.01))
    assert tracker.finished(first) is None
    second = tracker.prepare(second)
    assert isinstance(second, Cell)
    for i in range(10):
        tracker.observe(second, record(second, i * 0.1, 0.5))  # TTFT 500 ms breaks the SLO
    assert "broke the SLOs" in (tracker.finished(second) or "")
    assert "broke the SLOs" in (tracker.prepare(third) or "")


def test_the_answer_names_capacity_knee_and_highest_load_within_slos() -> None:
    cells = {
        "s": CellSettings(sweep_step="sync", rate_rps=None, model="m"),
        "t": CellSettings(sweep_step="throughput", rate_rps=None, model="m"),
        "r1": CellSettings(sweep_step="rate 1/2", rate_rps=6.0, model="m"),
        "r2": CellSettings(sweep_step="rate 2/2", rate_rps=10.0, model="m"),
    }
    summary = pd.DataFrame({"rps": [2.0, 10.0, 5.9, 9.0], "ttft_p50_s": [0.01, 0.3, 0.015, 0.05],
                            "ttft_p95_s": [0.02, 0.4, 0.03, 0.2], "output_tps": [1, 1, 1, 1],
                            "errors": 0, "rejected": 0, "ok": 10},
                           index=pd.Index(["s", "t", "r1", "r2"], name="cell_id"))
    (result,) = sweep_results(cells, summary, (parse_slo("ttft_p95=100ms"),))
    assert (result.sync_rps, result.capacity_rps, result.capacity_step) == (2.0, 10.0, "throughput")
    assert (result.knee_rps, result.knee_step) == (6.0, "rate 1/2")  # r2's TTFT is 5x sync's
    assert (result.slo_rps, result.slo_step) == (6.0, "rate 1/2")
    assert result.lines()[0].startswith("sweep: synchronous 2 req/s, capacity 10 req/s")


def configured_capacity_rps(num_parallel: int, prompt_tokens: int, max_tokens: int, speed: float) -> float:
    """What the simulator's performance model makes of NUM_PARALLEL slots all busy."""
    from bench.sim import roofline
    from bench.sim.catalog import load_catalog

    catalog = load_catalog()
    model, gpu = catalog.resolve("llama3.2:1b"), catalog.gpus["l4"]
    placement: object = 1.0  # the model fits the L4 whole
    if "layout" in inspect.signature(roofline.decode_step_s).parameters:
        placement = roofline.memory_layout(model, 4096, 2, gpu.memory_bytes)
    context_total = num_parallel * (prompt_tokens + max_tokens // 2)
    step_s = roofline.decode_step_s(model, gpu, placement, num_parallel, context_total, 2)
    e2e_s = roofline.prefill_s(model, gpu, placement, prompt_tokens) + max_tokens * step_s
    return num_parallel / e2e_s * speed


SWEEP = """\
workload: {model: llama3.2:1b, prompt: {tokens: 64}, max_tokens: 128, seed: 1}
load:
  arrival: sweep
  sweep: {rates: 5, max_concurrency: 8, max_rate_factor: 2.0}
  requests: 32
  warmup_requests: 2
slos: {ttft_p95: 100ms}
"""
SPEED = 5.0


@pytest.fixture(scope="module")
def sweep_with_slos(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, dict]:
    """One sweep with an SLO for the tests below (~15 s): what `bench run` printed, its sweep.json
    entry and its manifest. The capacity comes from the throughput step, before any SLO is judged."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    scenario = tmp_path / "sweep.yaml"
    scenario.write_text(SWEEP)
    out = tmp_path / "run"
    with running_sim(speed=SPEED, gpu="l4", env={"OLLAMA_NUM_PARALLEL": "4"}) as base_url:
        result = CliRunner().invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                          "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output, json.loads((out / "sweep.json").read_text())[0], \
        json.loads((out / "manifest.json").read_text())


@pytest.mark.e2e
def test_the_sweep_finds_the_simulators_configured_capacity(sweep_with_slos: tuple[str, dict, dict]) -> None:
    output, result, _ = sweep_with_slos
    capacity = configured_capacity_rps(4, 64, 128, speed=SPEED)
    assert result["capacity_rps"] == pytest.approx(capacity, rel=0.10), (result, capacity)
    assert "sweep: synchronous" in output and "capacity" in output


@pytest.mark.e2e
def test_with_slos_the_sweep_stops_at_the_highest_load_that_meets_them(
        sweep_with_slos: tuple[str, dict, dict]) -> None:
    # Constant arrivals below capacity never queue (TTFT stays near prefill); above it the backlog
    # grows with every request, so TTFT p95 passes 100 ms soon after the rate passes capacity.
    output, result, manifest = sweep_with_slos
    capacity = configured_capacity_rps(4, 64, 128, speed=SPEED)
    rates = [s for s in result["steps"] if s["step"].startswith("rate ")]
    status = {c["cell_id"]: c["status"] for c in manifest["cells"]}
    for step in rates:
        if step["offered_rps"] is not None and step["offered_rps"] <= 0.9 * capacity:
            assert not step["slo_failures"], step
        if step["offered_rps"] is None or step["offered_rps"] >= 1.1 * capacity:
            assert step["slo_failures"] or status[step["cell_id"]] == "skipped", step
    assert "skipped" in status.values(), "the sweep stopped after the first broken rate"
    met = [s["offered_rps"] for s in rates if s["offered_rps"] is not None and not s["slo_failures"]
           and status[s["cell_id"]] == "complete"]
    assert result["slo_rps"] == max(met)
    assert result["slo_rps"] <= 1.1 * capacity
    assert "highest load within the SLOs" in output


@pytest.mark.e2e
def test_a_resumed_sweep_gives_its_remaining_steps_the_same_rates(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0, env={"OLLAMA_NUM_PARALLEL": "2"})
    scenario = tmp_path / "sweep.yaml"
    scenario.write_text("workload: {model: llama3.2:1b, prompt: {tokens: 32}, max_tokens: 8}\n"
                        "load: {arrival: sweep, sweep: {rates: 2, max_concurrency: 4}, requests: 6, "
                        "warmup_requests: 0}\n")
    out = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(cli, ["run", str(scenario), "--target", base_url, "--out", str(out),
                                "--no-report"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    rates = {c["cell_id"]: c["settings"]["rate_rps"] for c in manifest["cells"]}
    # As if the run had been interrupted after the throughput step.
    for cell in manifest["cells"]:
        if cell["settings"]["sweep_step"].startswith("rate "):
            cell["status"] = "partial"
    manifest["status"] = "partial"
    manifest_path.write_text(json.dumps(manifest))
    resumed = runner.invoke(cli, ["run", "--resume", str(out), "--target", base_url, "--no-report"],
                            catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    after = json.loads(manifest_path.read_text())
    assert {c["cell_id"]: c["settings"]["rate_rps"] for c in after["cells"]} == rates
    assert all(c["status"] == "complete" for c in after["cells"])
