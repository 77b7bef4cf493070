"""The shipped sizing study (which carries its own stop_when and prune) against --full-grid: same
recommendation, at most half the target's busy time; every skip and stop verdict in the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench.analysis.pruning import target_busy_s
from bench.analysis.recommend import recommend, scenario_slos
from bench.records import load_run
from bench.run.runner import RunOptions, run_scenario
from bench.scenario import load_scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]
STUDY = Path(__file__).resolve().parents[2] / "scenarios" / "size-num-parallel-sim.yaml"


def run_study(tmp_path: Path, name: str, **options: bool) -> Path:
    scenario = load_scenario(STUDY)
    result = run_scenario(scenario, RunOptions(scenario_path=STUDY, out_dir=tmp_path / name, report=False,
                                               **options), Console(file=open(tmp_path / f"{name}.log", "w")))
    assert result.status == "complete"
    return result.run_dir


def test_adaptive_sizing_study_recommends_the_same_in_at_most_half_the_target_time(tmp_path: Path) -> None:
    full_dir = run_study(tmp_path, "full", full_grid=True)
    adaptive_dir = run_study(tmp_path, "adaptive", adaptive=True)
    full, adaptive = load_run(full_dir), load_run(adaptive_dir)

    chosen = {name: recommend(run, scenario_slos(run.manifest)).num_parallel
              for name, run in (("full", full), ("adaptive", adaptive))}
    assert chosen["full"] is not None
    assert chosen["adaptive"] == chosen["full"]

    busy_full_s, busy_adaptive_s = target_busy_s(full.requests), target_busy_s(adaptive.requests)
    print(f"target busy: full grid {busy_full_s:.1f} s, adaptive {busy_adaptive_s:.1f} s "
          f"({busy_adaptive_s / busy_full_s:.0%}); recommended NUM_PARALLEL={chosen['full']}")
    assert busy_adaptive_s <= 0.5 * busy_full_s
    assert adaptive.manifest.adaptive["target_busy_s"] == pytest.approx(busy_adaptive_s, rel=1e-3)

    cells = adaptive.manifest.cells
    skipped = [c for c in cells if c.status == "skipped"]
    assert skipped and all(c.skip_reason for c in skipped)
    # The spilled setting is skipped at load, all of it, and the reason names it.
    np16 = [c for c in cells if c.settings.server_setting("OLLAMA_NUM_PARALLEL") == "16"]
    assert all(c.status == "skipped" and c.skip_reason.startswith("NP=16 spilled at load") for c in np16)
    measured = [c for c in cells if c.status == "complete"]
    assert all(c.stop["kind"] in ("met", "max") for c in measured)
    # Every measured cell says why it stopped; the study's own stop_when asks for the 40 requests a
    # p95 needs, so no met cell stopped short of them.
    assert all(c.stop["reason"] for c in measured)
    assert all(c.stop["requests"] >= 40 for c in measured if c.stop["kind"] == "met")
    assert any(note.startswith("skipped: NP=16 spilled at load") for note in adaptive.manifest.notes)
    assert not full.manifest.adaptive
