"""The Python API: bench.api.run(scenario_or_dict, out=...) -> Run, and bench.load_run(path)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench
from bench.errors import ScenarioError


def test_bench_run_takes_a_dict_and_returns_the_loaded_run(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0)
    scenario = {"workload": {"model": "llama3.2:1b", "prompt": {"tokens": 32}, "max_tokens": 4},
                "load": {"concurrency": [1, 2], "requests": 3, "warmup_requests": 0}}
    run = bench.api.run(scenario, out=tmp_path / "run", target=base_url, quiet=True, report=False)
    assert run.status == "complete"
    measured = run.requests[run.requests["phase"] == "measure"]
    assert len(measured) == 6 and measured["error_class"].isna().all()
    assert run.summary is not None and len(run.summary) == 2
    again = bench.load_run(tmp_path / "run")
    assert list(again.summary.index) == list(run.summary.index)
    assert (tmp_path / "run" / "scenario.yaml").exists()


def test_bench_run_takes_a_yaml_path_and_overrides(sim, tmp_path: Path) -> None:  # noqa: ANN001
    base_url = sim(speed=50.0)
    path = tmp_path / "s.yaml"
    path.write_text("workload: {model: llama3.2:1b, prompt: {tokens: 32}, max_tokens: 4}\n")
    run = bench.api.run(path, out=tmp_path / "run", target=base_url, requests=2, warmup_requests=0,
                        quiet=True, report=False)
    assert (run.requests["phase"] == "measure").sum() == 2


def test_a_bad_dict_is_a_scenario_error_naming_the_field() -> None:
    with pytest.raises(ScenarioError, match=r"load.concurrency\[0\]"):
        bench.api.run({"workload": {"model": "m"}, "load": {"concurrency": [0]}}, quiet=True)


def test_the_python_api_is_bench_api_and_bench_run_only_the_orchestration_package() -> None:
    import bench.run.runner

    assert bench.api.run is not None and bench.run.runner.run_scenario
    assert not callable(bench.run)
