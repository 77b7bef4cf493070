"""The simulator's speed against published llama.cpp measurements (bench/sim/speed_measurements.yaml)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.sim.catalog import load_catalog
from bench.sim.speed_table import SpeedRow, measurements, speed_rows

CATALOG = load_catalog()
ROWS = speed_rows(CATALOG)
JUDGED = [row for row in ROWS if row.role in ("fit", "check")]


def _row_id(row: SpeedRow) -> str:
    return f"{row.gpu}-{row.model}-{row.test}"


@pytest.mark.parametrize("row", JUDGED, ids=_row_id)
def test_every_published_row_is_simulated_within_tolerance(row: SpeedRow) -> None:
    """Decode within 15%, prefill within 25% of the published llama-bench figure."""
    assert abs(row.ratio - 1) <= row.tolerance, f"{_row_id(row)}: simulated {row.simulated_tokens_per_s:.1f} vs " \
                                                f"published {row.published_tokens_per_s:.1f}"


@pytest.mark.parametrize("row", JUDGED, ids=_row_id)
def test_each_profile_states_a_basis_that_covers_its_rows(row: SpeedRow) -> None:
    """The ±N% a sizing answer quotes bounds every judged row of that profile."""
    basis = CATALOG.gpus[row.gpu].speed_basis
    match = re.search(r"±(\d+)%", basis)
    assert match, basis
    assert abs(row.ratio - 1) <= int(match.group(1)) / 100


def test_serving_is_a_little_slower_than_llama_bench_on_the_rows_the_step_time_comes_from() -> None:
    """Ollama samples and streams every token: 1-4% slower than llama-bench's bare decode, never faster."""
    fitted_decode = [row for row in ROWS if row.role == "fit" and row.model == "llama2-7b-q4_0" and row.decode]
    assert fitted_decode
    for row in fitted_decode:
        assert 0.96 <= row.ratio < 1.0, _row_id(row)


def test_every_case_names_a_known_source_model_and_profile() -> None:
    document = measurements()
    for case in document["cases"]:
        assert case["source"] in document["sources"]
        assert case["model"] in document["models"]
        assert case["gpu"] in CATALOG.gpus
        assert case["role"] in ("fit", "check", "context")


def test_every_shipped_gpu_profile_has_a_basis_with_a_bound() -> None:
    for name, gpu in CATALOG.gpus.items():
        if name == "cpu":
            continue
        assert re.search(r"±\d+%", gpu.speed_basis), name
        assert "derived" in gpu.speed_basis or any(row.gpu == name for row in ROWS), name


def test_the_l40s_prefills_slower_than_the_rtx_4090_as_measured() -> None:
    """Issue 23: spec-sheet FLOPS gave the L40S 2.2x the 4090's prefill; llama.cpp measures 0.85x."""
    rows = {(row.gpu, row.model, row.test): row for row in ROWS}
    ratio = (rows[("l40s", "llama3-8b-q4_k_m", "pp512")].simulated_tokens_per_s
             / rows[("rtx4090", "llama3-8b-q4_k_m", "pp512")].simulated_tokens_per_s)
    assert 0.8 < ratio < 0.9


def test_speed_table_is_printed_by_the_cli() -> None:
    result = CliRunner().invoke(cli, ["sim", "--speed-table"])
    assert result.exit_code == 0, result.output
    assert "| rtx4090 | llama2-7b-q4_0 | tg128 | 189.0 |" in result.output
