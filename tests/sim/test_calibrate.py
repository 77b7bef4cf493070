"""`bench sim --calibrate RUN_DIR` and `sim: calibrate:`: a GPU profile from one concurrency-1 run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.analysis.speed_calibration import ModelShape, calibrated_catalog
from bench.cli import cli
from bench.records import load_run
from bench.sim import roofline
from bench.sim.catalog import load_catalog
from bench.sim.config import build_config

pytestmark = pytest.mark.e2e

MODEL = "llama3.2:1b"
SCENARIO = """\
name: calibrate-source
target: sim
sim: {{speed: {speed}, gpu: l4, seed: 1, env: {{OLLAMA_NUM_PARALLEL: "4", OLLAMA_KEEP_ALIVE: "-1"}}}}
workload: {{endpoint: native/chat, model: llama3.2:1b, prompt: {{tokens: 1024}}, max_tokens: 48, seed: 5}}
load: {{concurrency: {concurrency}, requests: 8, warmup_requests: 1}}
"""


def _run(tmp_path: Path, name: str, text: str) -> Path:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(text)
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["run", str(scenario), "--out", str(out), "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A concurrency-1 run of the L4 profile at 10x speed: its rates are ten times the L4's."""
    return _run(tmp_path_factory.mktemp("calibrate"), "source", SCENARIO.format(speed=10, concurrency="[1]"))


def _known_shape(name: str) -> ModelShape | None:
    spec = load_catalog().resolve(name)
    assert spec is not None
    return ModelShape(spec.name, spec.size_bytes, spec.parameter_count, roofline.kv_bytes_per_token(spec, 2.0))


def test_calibration_reproduces_the_measured_decode_and_prefill(measured_run: Path) -> None:
    """The profile made from the run gives back the run's own per-token times (jitter σ 4%)."""
    calibration, document = calibrated_catalog(measured_run, _known_shape, roofline.TOKEN_OVERHEAD_S)
    config = build_config({}, calibrated=document)
    assert config.gpu is not None and config.gpu.name == "calibrated"
    model = config.catalog.resolve(MODEL)
    assert model is not None
    context = round(calibration.mean_context_tokens)
    step_s = roofline.decode_step_s(model, config.gpu, 1.0, 1, context, 2.0)
    assert step_s == pytest.approx(1 / calibration.decode_tokens_per_s, rel=0.01)
    l4_step_s = roofline.decode_step_s(model, load_catalog().gpus["l4"], 1.0, 1, context, 2.0)
    assert step_s == pytest.approx(l4_step_s / 10, rel=0.06)  # the source ran the L4 at --speed 10
    prefill_s = roofline.prefill_s(model, config.gpu, 1.0, 1024, roofline.NUM_BATCH)
    assert 1024 / prefill_s == pytest.approx(calibration.prefill_tokens_per_s, rel=0.02)
    assert config.gpu.speed_basis.startswith(f"calibrated from run {calibration.run_id}")


def test_a_calibrated_scenario_records_its_basis_and_predicts_concurrency(measured_run: Path, tmp_path: Path) -> None:
    """`sim: calibrate:` serves the profile; the manifest says what its speed rests on."""
    text = SCENARIO.format(speed=1, concurrency="[1, 2]").replace("gpu: l4", f"calibrate: {measured_run}")
    out = _run(tmp_path, "predicted", text)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["speed_basis"].startswith("calibrated from run ")
    source = load_run(measured_run).requests
    predicted = load_run(out).requests
    source_step = (source["eval_duration_ns"] / source["output_tokens"]).median()
    cells = {cell["cell_id"]: cell["settings"]["concurrency"] for cell in manifest["cells"]}
    one = predicted[predicted["cell_id"].map(cells) == 1]
    assert (one["eval_duration_ns"] / one["output_tokens"]).median() == pytest.approx(source_step, rel=0.08)


def test_calibrating_from_a_run_without_concurrency_one_is_one_line(tmp_path: Path) -> None:
    run_dir = _run(tmp_path, "c2", SCENARIO.format(speed=50, concurrency="[2]"))
    result = CliRunner().invoke(cli, ["sim", "--calibrate", str(run_dir)])
    assert result.exit_code == 2
    assert "no successful concurrency-1 request" in result.output
    assert "Traceback" not in result.output


def test_calibrate_and_a_gpu_profile_together_are_refused(measured_run: Path) -> None:
    result = CliRunner().invoke(cli, ["sim", "--calibrate", str(measured_run), "--gpu", "h100"])
    assert result.exit_code == 2
    assert "drop --gpu" in result.output


SWEEP = """\
name: basis
server:
  command: python -m bench sim --speed 50 --gpu h100
  env: {OLLAMA_NUM_PARALLEL: [1, 2]}
workload: {endpoint: native/chat, model: llama3.2:1b, prompt: {tokens: 256}, max_tokens: 16, seed: 5}
load: {concurrency: [1, 2], requests: 6, warmup_requests: 1}
slos: {ttft_p95: 2s}
"""


def test_a_sizing_answer_on_the_simulator_states_its_speed_basis(tmp_path: Path) -> None:
    out = _run(tmp_path, "sweep", SWEEP)
    manifest = json.loads((out / "manifest.json").read_text())
    basis = manifest["target"]["speed_basis"]
    assert basis == load_catalog().gpus["h100"].speed_basis  # "±" survives the header
    result = CliRunner().invoke(cli, ["recommend", str(out)])
    assert f"Speed basis (bench sim): {basis}." in " ".join(result.output.split())
