"""The gate end to end: `bench run scenarios/ci-smoke.yaml` on the simulator, then `bench compare`.

Seven short runs (~20 s of requests each): one baseline, five reruns that must never be flagged
(one test each, so none runs long), one on a simulator slowed by 30% (--sim-speed 1/1.3) that must
be. The gates are the scenario's own (`gates:` in ci-smoke.yaml), the ones CI uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "ci-smoke.yaml"
COMMITTED_BASELINE = ROOT / "scenarios" / "ci-smoke.baseline.json"
SLOWDOWN = 1.3


def bench(*args: str | Path):
    return CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)


def smoke_run(out_dir: Path, *extra: str) -> Path:
    result = bench("run", SMOKE, "--out", out_dir, "--no-report", *extra)
    assert result.exit_code == 0, result.output
    return out_dir


# Module-scoped, so one xdist worker runs this whole module (tests/conftest.py): the seven runs go
# one after another, as the gates were tuned. Seven at once (tried, load 21) moved TTFT p95 at c=1
# by +58-77% against the committed baseline and hid the slowed run's TPOT in one cell.
@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smoke_run(tmp_path_factory.mktemp("gate") / "baseline")


@pytest.fixture(scope="module")
def baseline_file(baseline_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate-baseline") / "baseline.json"
    assert bench("baseline", "save", baseline_run, path).exit_code == 0
    return path


@pytest.mark.parametrize("attempt", range(5))
def test_five_reruns_of_the_same_configuration_never_flag_a_regression(
        baseline_file: Path, tmp_path: Path, attempt: int) -> None:
    rerun = smoke_run(tmp_path / f"rerun-{attempt}")
    result = bench("compare", baseline_file, rerun)
    assert result.exit_code == 0, result.output
    assert "no regression: 20 gates passed" in result.output


def test_simulator_slowed_by_30_percent_is_flagged_on_decode_latency_and_throughput(
        baseline_run: Path, tmp_path: Path) -> None:
    slow = smoke_run(tmp_path / "slow", "--sim-speed", f"{1 / SLOWDOWN:.6f}")
    markdown, junit = tmp_path / "summary.md", tmp_path / "gate.xml"
    result = bench("compare", baseline_run, slow, "--markdown", markdown, "--junit", junit)
    assert result.exit_code == 1, result.output
    failed = {(line.split("|")[2].strip(), line.split("|")[3].strip(" *"))
              for line in markdown.read_text().splitlines() if line.startswith("| ✗")}
    rows = [line.split("|") for line in markdown.read_text().splitlines()
            if line.startswith("| ") and "c=" in line]
    change_pct = {(row[2].strip(), row[3].strip(" *")): float(row[7].replace("pt", "").strip(" +%")) for row in rows}
    cells = {"native/chat c=1", "native/chat c=4", "openai/chat c=1", "openai/chat c=4"}
    # Decode slows by 30% in every cell. At c=1 TPOT is the decode step alone (+29-34%, its interval
    # from +28% on a 2-core box at load ~9-13, beyond the 20% gate), so it is flagged there. At c=4
    # a TPOT mixes decode steps with the stalls of other slots' prompt batches (the simulator's batch
    # loop, as llama-server's update_slots): its p50 is bimodal (14 or 34 ms in one baseline) and
    # its interval wide, so no TPOT verdict is held there; each c=4 cell is still flagged on some
    # gate. Throughput drops ~21-24%; it is flagged against the -15% gate unless a neighbour's CPU
    # load disturbed the baseline cell, so only its point estimate is held to every cell. TTFT and
    # e2e slow by the same 30%, near their gates, so they may or may not be flagged; error_rate never.
    assert {cell for cell, name in failed if name == "tpot_p50"} >= {"native/chat c=1", "openai/chat c=1"}, result.output
    assert {cell for cell, _ in failed} == cells, result.output
    assert all(change_pct[(cell, "output_tps")] < -10.0 for cell in cells), result.output
    assert {name for _, name in failed} <= {"tpot_p50", "e2e_p95", "output_tps", "ttft_p95"}, result.output
    assert f"REGRESSION: {len(failed)} of 20 gates failed" in result.output
    assert junit.read_text().count("<failure ") == len(failed)


def test_smoke_run_passes_against_the_committed_baseline(baseline_run: Path) -> None:
    # How bench gates itself in CI (.ci/run): the committed baseline of ci-smoke.yaml. It holds on
    # a busy 2-core box because each request costs little CPU (8 chunks, a 96-token prompt) against
    # ~110 ms TTFT (~370 ms at concurrency 4) and ~13 ms decode steps; with 32 chunks of ~4.5 ms and 2048-token prompts a load
    # of ~10 moved TTFT p95 by +38-66% and output tok/s by -17% (issue 26).
    result = bench("compare", COMMITTED_BASELINE, baseline_run)
    assert result.exit_code == 0, result.output


def test_saved_baseline_is_small_and_compares_like_its_run_directory(
        baseline_run: Path, tmp_path: Path) -> None:
    baseline_file = tmp_path / "b.json"
    assert bench("baseline", "save", baseline_run, baseline_file).exit_code == 0
    assert baseline_file.stat().st_size < 32_000  # 4 cells x 40 requests: fit to commit
    payload = json.loads(baseline_file.read_text())
    assert payload["format_version"] == 1 and len(payload["cells"]) == 4
    assert len(payload["cells"][0]["samples"]["tpot_s"]) == 40
    from_file = bench("compare", baseline_file, baseline_run)
    from_dir = bench("compare", baseline_run, baseline_run)
    assert from_file.exit_code == from_dir.exit_code == 0
    assert from_file.output.splitlines()[-1] == from_dir.output.splitlines()[-1]
