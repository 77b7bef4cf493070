"""Comparisons of unlike runs: refused when cells differ (another model), flagged when the runs
differ in what the cells do not record (simulator speed, engine, server or bench version)."""

from __future__ import annotations

import pytest

from bench.analysis.baseline import Baseline
from bench.analysis.compare import CellMatchError, compare
from bench.outputs.gate_tables import headline, to_markdown
from bench.report.answer import speed_sentence
from tests.gate.gate_samples import SETTINGS, make_cell


def _side(source: str, cell_seed: int, **environment: object) -> Baseline:
    base = {"bench_version": "0.1.0", "gates": {}, "sim_speed": "10", "sim_engine": "simulated",
            "target_kind": "sim", "target_server": "Ollama 0.33.0", "target_version": "0.33.0", "gpu": None}
    return Baseline(source, {**base, **environment}, [make_cell(cell_seed)])


def test_runs_at_another_simulator_speed_are_flagged_in_every_output() -> None:
    comparison = compare(_side("a", 1), _side("b", 2, sim_speed="0.7"))
    assert comparison.environment_notes == [
        "unlike runs: simulator speed differs (baseline 10, current 0.7); a change here may be that "
        "difference, not a regression"]
    assert headline(comparison).endswith("— unlike runs: simulator speed")
    assert "> ⚠ unlike runs: simulator speed differs" in to_markdown(comparison)


@pytest.mark.parametrize("key,value,name", [("sim_engine", "llama-server", "simulator engine"),
                                            ("target_version", "0.34.0", "server version"),
                                            ("bench_version", "0.2.0", "bench version")])
def test_runs_with_another_engine_or_version_are_flagged(key: str, value: str, name: str) -> None:
    comparison = compare(_side("a", 1), _side("b", 2, **{key: value}))
    assert [note.split(" differs")[0] for note in comparison.environment_notes] == [f"unlike runs: {name}"]


def test_like_runs_carry_no_flag() -> None:
    assert compare(_side("a", 1), _side("b", 2)).environment_notes == []


def test_runs_of_another_model_are_refused() -> None:
    other = Baseline("b", {"bench_version": "0.1.0"}, [make_cell(2, settings={**SETTINGS, "model": "llama3.2:1b"})])
    with pytest.raises(CellMatchError, match="model 'qwen2.5:0.5b' vs 'llama3.2:1b'"):
        compare(_side("a", 1), other)


def test_a_slower_simulator_is_called_slower() -> None:
    assert "ran 10× faster than real time" in speed_sentence([10.0])
    slower = speed_sentence([0.7])
    assert "faster" not in slower and "1.43× slower than real time (speed 0.7)" in slower
