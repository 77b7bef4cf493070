"""bench recommend's parsing and choice on a hand-made sweep; keep_alive forms."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import UsageError
from bench.analysis.recommend import parse_duration_s, parse_slo, recommend
from bench.records import RequestRecord, Run, cells_frame
from bench.analysis.server_studies import keep_alive_seconds


@pytest.mark.parametrize("text,seconds", [("2s", 2.0), ("100ms", 0.1), ("1.5", 1.5), ("1m", 60.0)])
def test_slo_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


def test_unknown_slo_metric_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown metric 'ttfb_p95'"):
        parse_slo("ttfb_p95=2s")
    with pytest.raises(UsageError, match="expected METRIC=VALUE"):
        parse_slo("ttft_p95")


@pytest.mark.parametrize("value,seconds", [("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), (3, 3.0),
                                           ("0", 0.0), (-1, math.inf), ("-1m", math.inf)])
def test_keep_alive_forms_read_like_ollama(value: object, seconds: float) -> None:
    assert keep_alive_seconds(value) == seconds


def _run(tmp_path: Path, tokens_per_s: dict[int, float], ttft_s: dict[int, float], spill: set[int]) -> Run:
    """Sweep of one cell per NUM_PARALLEL, 10 requests of 100 tokens, one server each, in time order."""
    records, cells, servers, ps_rows, t = [], [], [], [], 0.0
    for server_id, num_parallel in enumerate(sorted(tokens_per_s)):
        cell_id = f"np{num_parallel}"
        cells.append({"cell_id": cell_id, "cell_index": server_id, "model": "m", "concurrency": 8,
                      "OLLAMA_NUM_PARALLEL": str(num_parallel)})
        servers.append({"server_id": server_id, "env": {"OLLAMA_NUM_PARALLEL": str(num_parallel)}, "command": ["ollama", "serve"]})
        duration_s = 1000 / tokens_per_s[num_parallel]
        for index in range(10):
            sent = t + index * duration_s / 10
            first = sent + ttft_s[num_parallel]
            record = RequestRecord(cell_id, index, "native", "chat", "m", sent_s=sent, first_token_s=first,
                                   end_s=t + duration_s, chunk_times_s=[first, first + 0.99],
                                   output_tokens=100, status=200)
            records.append(dataclasses.asdict(record))
        size = 5 * 2**30
        ps_rows.append({"t_s": t + duration_s / 2, "name": "m", "size_bytes": size,
                        "size_vram_bytes": size - (2**30 if num_parallel in spill else 0),
                        "context_length": 4096, "expires_at": None})
        t += duration_s + 5
    manifest = {"cells": [{"cell_id": c["cell_id"], "server_id": i,
                           "settings": {k: v for k, v in c.items() if k not in ("cell_id", "cell_index")}}
                          for i, c in enumerate(cells)], "servers": servers}
    return Run(tmp_path, manifest, pd.DataFrame(records), pd.DataFrame(cells), None, pd.DataFrame(ps_rows))


def test_recommend_skips_a_setting_that_spills_and_one_that_misses_the_slo(tmp_path: Path) -> None:
    run = _run(tmp_path, {1: 100, 2: 190, 4: 350, 8: 600}, {1: 0.1, 2: 0.2, 4: 0.4, 8: 0.5}, spill={8})
    recommendation = recommend(run, (parse_slo("ttft_p95=0.3s"),))
    reasons = {c.num_parallel: c.reason for c in recommendation.candidates}
    assert recommendation.num_parallel == 2
    assert recommendation.runner_up == 1
    assert "no cell met the SLOs" in reasons[4] and "ttft_p95 400ms (SLO 300ms)" in reasons[4]
    assert "lower throughput" in reasons[1]
    stored = recommendation.to_json()
    assert stored["num_parallel"] == 2 and stored["slos"] == {"ttft_p95": 0.3}


def test_recommend_prefers_the_smaller_setting_when_throughput_has_flattened(tmp_path: Path) -> None:
    run = _run(tmp_path, {1: 100, 2: 190, 4: 350, 8: 355}, {1: 0.1, 2: 0.1, 4: 0.1, 8: 0.1}, spill=set())
    recommendation = recommend(run)
    assert recommendation.num_parallel == 4
    assert "within 5%" in {c.num_parallel: c.reason for c in recommendation.candidates}[8]


def test_a_run_without_num_parallel_cells_is_refused(tmp_path: Path) -> None:
    run = _run(tmp_path, {1: 100}, {1: 0.1}, spill=set())
    run.manifest.cells = [cell.model_copy(update={"settings": cell.settings.model_copy(update={"server_env": {}})})
                          for cell in run.manifest.cells]
    run.cells = cells_frame(run.manifest)
    with pytest.raises(UsageError, match="not a NUM_PARALLEL sweep"):
        recommend(run)


def test_a_cpu_only_server_is_not_a_spill(tmp_path: Path) -> None:
    """A real `ollama serve` without a GPU reports size_vram 0 for every model: no GPU to fit in."""
    run = _run(tmp_path, {1: 100, 2: 190}, {1: 0.1, 2: 0.1}, spill=set())
    run.ps["size_vram_bytes"] = 0
    recommendation = recommend(run)
    assert recommendation.num_parallel == 2
    assert all(c.fits_in_gpu is None for c in recommendation.candidates)
