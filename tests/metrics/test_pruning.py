"""Pruned studies: which cells of a NUM_PARALLEL sweep are skipped, and the reason a person reads."""

from __future__ import annotations

from bench.analysis.pruning import GroupMemory, Study, cells_to_skip
from bench.analysis.recommend import parse_slo
from bench.plan import Cell, plan_cells
from bench.scenario import parse_scenario

SWEEP = """
server: {command: python -m bench sim, env: {OLLAMA_NUM_PARALLEL: [1, 4, 16]}}
workload: {model: m}
load: {concurrency: [1, 2, 4, 8], requests: 24}
"""
SLOS = (parse_slo("ttft_p95=500ms"), parse_slo("tpot_p95=5.5ms"))


def study() -> tuple[Study, list[Cell]]:
    cells = plan_cells(parse_scenario(SWEEP))
    labels = {c.server_group: f"NP={dict(c.server_env)['OLLAMA_NUM_PARALLEL']}" for c in cells}
    return Study(tuple(cells), labels, SLOS), cells


def row(tps: float, ttft_s: float = 0.2, tpot_s: float = 0.004, ok: int = 24) -> dict[str, float]:
    return {"output_tps": tps, "ttft_p95_s": ttft_s, "tpot_p95_s": tpot_s, "ok": ok, "requests": 24}


def cell(cells: list[Cell], np_value: int, concurrency: int) -> Cell:
    return next(c for c in cells if dict(c.server_env)["OLLAMA_NUM_PARALLEL"] == str(np_value)
                and c.settings.concurrency == concurrency)


def pending_after(cells: list[Cell], finished: Cell) -> list[Cell]:
    return [c for c in cells if c.cell_index > finished.cell_index]


def test_spilled_setting_skips_the_rest_of_its_group_and_says_so() -> None:
    sweep, cells = study()
    first = cell(cells, 16, 1)
    skips = cells_to_skip(sweep, first, {first.cell_id: row(2.0)}, pending_after(cells, first),
                          GroupMemory(size_bytes=30 * 2**30, size_vram_bytes=20 * 2**30))
    assert [s.rule for s in skips] == ["spilled"]
    assert skips[0].reason.startswith("NP=16 spilled at load (size_vram 20.0 GiB of 30.0 GiB, 33% on CPU)")
    assert set(skips[0].cell_ids) == {cell(cells, 16, c).cell_id for c in (2, 4, 8)}


def test_setting_that_fits_is_not_skipped_at_load() -> None:
    sweep, cells = study()
    first = cell(cells, 4, 1)
    assert cells_to_skip(sweep, first, {first.cell_id: row(20.0)}, pending_after(cells, first),
                         GroupMemory(size_bytes=10, size_vram_bytes=10)) == []


def test_setting_that_never_answers_is_skipped_as_not_loaded() -> None:
    sweep, cells = study()
    first = cell(cells, 4, 1)
    skips = cells_to_skip(sweep, first, {first.cell_id: row(float("nan"), ok=0)}, pending_after(cells, first))
    assert skips[0].rule == "not-loaded" and "NP=4 could not load m" in skips[0].reason


def test_flat_throughput_with_broken_slo_skips_higher_concurrency() -> None:
    sweep, cells = study()
    c1, c2 = cell(cells, 1, 1), cell(cells, 1, 2)
    measured = {c1.cell_id: row(20.0), c2.cell_id: row(20.4, ttft_s=0.9)}
    skips = cells_to_skip(sweep, c2, measured, pending_after(cells, c2))
    assert [s.rule for s in skips] == ["knee"]
    assert set(skips[0].cell_ids) == {cell(cells, 1, 4).cell_id, cell(cells, 1, 8).cell_id}
    assert "NP=1 c=2: above the knee" in skips[0].reason and "ttft_p95 900ms (SLO 500ms)" in skips[0].reason
    assert skips[0].reason.endswith("skipped c=4, c=8")


def test_growing_throughput_keeps_going_even_with_a_broken_slo() -> None:
    sweep, cells = study()
    c1, c2 = cell(cells, 4, 1), cell(cells, 4, 2)
    measured = {c1.cell_id: row(20.0), c2.cell_id: row(38.0, ttft_s=0.9)}
    assert cells_to_skip(sweep, c2, measured, pending_after(cells, c2)) == []


def test_flat_and_dominated_by_another_setting_skips_higher_concurrency() -> None:
    sweep, cells = study()
    measured = {cell(cells, 1, 1).cell_id: row(20.0, tpot_s=0.003),
                cell(cells, 1, 2).cell_id: row(20.0, ttft_s=0.45, tpot_s=0.003),
                cell(cells, 4, 1).cell_id: row(19.0, tpot_s=0.003),
                cell(cells, 4, 2).cell_id: row(19.5, ttft_s=0.46, tpot_s=0.0031)}
    finished = cell(cells, 4, 2)
    skips = cells_to_skip(sweep, finished, measured, pending_after(cells, finished))
    assert [s.rule for s in skips] == ["dominated"] and "dominated by NP=1" in skips[0].reason


def test_without_slos_flat_throughput_alone_skips_nothing() -> None:
    sweep, cells = study()
    sweep = Study(sweep.cells, sweep.group_labels)
    c1, c2 = cell(cells, 1, 1), cell(cells, 1, 2)
    measured = {c1.cell_id: row(20.0), c2.cell_id: row(20.0, ttft_s=0.9)}
    assert cells_to_skip(sweep, c2, measured, pending_after(cells, c2)) == []
