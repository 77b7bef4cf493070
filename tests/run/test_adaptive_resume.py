"""An adaptive sweep's skips are decisions: they survive --resume, and the report names them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli

pytestmark = pytest.mark.e2e

# NUM_PARALLEL=1 queues a second user: TTFT grows from ~15 ms to a whole request (~150 ms: 128
# tokens at ~1.2 ms on the L4 profile, at --speed 2) past the SLO and throughput grows only by the
# client's turnaround between requests (+3% at load ~9 on a 2-core box, +1% with 256-token
# answers; with 64-token answers it was +30%), under the knee's 50%, so the knee rule skips
# concurrency 4. NUM_PARALLEL=2 nearly doubles from c=1 to c=2 (not flat) and keeps its c=4.
# 8 requests a cell: the knee compares throughput, and the SLO is missed by NP=1 c=2 with every
# request queued behind another (the run's load ~7 s of its 27 s with 12 requests of 256 tokens).
SWEEP = """
name: knee
server:
  command: python -m bench sim --speed 2 --gpu l4
  env: {OLLAMA_NUM_PARALLEL: [1, 2], OLLAMA_KEEP_ALIVE: "-1"}
workload: {endpoint: native/chat, model: qwen2.5:0.5b, prompt: {tokens: 512}, max_tokens: 128, seed: 3}
load: {arrival: closed, concurrency: [1, 2, 4], requests: 8, warmup_requests: 1}
prune: {knee_growth: 0.5}
slos: {ttft_p95: 100ms}
"""


def cells(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "manifest.json").read_text())["cells"]


def test_skipped_cells_stay_skipped_when_a_run_is_resumed(tmp_path: Path) -> None:
    scenario = tmp_path / "knee.yaml"
    scenario.write_text(SWEEP)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", str(scenario), "--adaptive", "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    skipped = [c for c in cells(out) if c["status"] == "skipped"]
    assert [(c["settings"]["OLLAMA_NUM_PARALLEL"], c["settings"]["concurrency"]) for c in skipped] == [("1", 4)]
    assert skipped[0]["skip_reason"].startswith("NP=1 c=2: above the knee")
    assert "skipped: NP=1 c=2: above the knee" in (out / "report.html").read_text()

    # As if the run had been cut short during its last measured cell.
    manifest = json.loads((out / "manifest.json").read_text())
    last = [c for c in manifest["cells"] if c["status"] == "complete"][-1]
    last["status"], manifest["status"] = "partial", "partial"
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(cli, ["run", "--resume", str(out), "--no-report"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 of 6 cells to run" in result.output
    after = {c["cell_id"]: c for c in cells(out)}
    assert after[skipped[0]["cell_id"]]["status"] == "skipped"
    assert after[last["cell_id"]]["status"] == "complete"
    assert json.loads((out / "manifest.json").read_text())["options"]["adaptive"] is True
