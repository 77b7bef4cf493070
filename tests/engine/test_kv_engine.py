"""KV memory on the real engine: bytes per token fitted from llama-server's RSS match the exact formula."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bench.cli import cli

pytestmark = pytest.mark.engine

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_fitted_f16_bytes_per_token_from_real_memory_is_within_2_percent_of_exact(
    llama_server_binary: Path, tmp_path: Path
) -> None:
    scenario = yaml.safe_load((SCENARIOS / "kv-cache-engine.yaml").read_text())
    # The shipped sweep at f16 only (8 cells): the q8_0 half is the same code path.
    scenario["server"]["command"] = f"bench sim --engine llama-server --llama-server {llama_server_binary}"
    scenario["server"]["env"]["OLLAMA_KV_CACHE_TYPE"] = "f16"
    path = tmp_path / "kv.yaml"
    path.write_text(yaml.safe_dump(scenario))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(run_dir), "--requests", "6", "--no-report"])
    assert result.exit_code == 0, result.output
    (group,) = json.loads((run_dir / "kv.json").read_text())["groups"]
    assert group["measured_source"] == "process_rss" and group["process_source"] == "engine_rss"
    assert len(group["points"]) == 8
    exact = group["bytes_per_token"]["exact"]
    assert exact == 2 * 8 * 8 * 64 * 2  # kv-heavy: 16384 B/token
    assert group["bytes_per_token"]["process_rss"] == pytest.approx(exact, rel=0.02)
    # Ollama's figure (/api/ps = the logged buffers) also counts compute buffers that grow with
    # the context, so it overstates the KV; the rule of thumb (layers × hidden × 2) is far off.
    assert group["bytes_per_token"]["ollama_ps"] > exact
    assert group["ratio_to_measured"]["rule_of_thumb"] < 0.5
