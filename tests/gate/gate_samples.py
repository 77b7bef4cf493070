"""Hand-made baselines for the gate's unit tests: seeded lognormal latencies, consistent aggregates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.analysis.baseline import AGGREGATE_COLUMNS, Baseline, BaselineCell, save_baseline_json

SETTINGS = {
    "surface": "native", "endpoint": "chat", "model": "qwen2.5:0.5b", "arrival": "closed",
    "concurrency": 1, "rate_rps": None, "prompt_tokens": 256, "max_tokens": 32, "num_ctx": None,
    "keep_alive": None, "temperature": 0.0, "format": "none", "requests": 60,
    "duration_s": None, "warmup_requests": 2, "repeat": 1,
}
TOKENS = 32


def make_cell(seed: int, slowdown: float = 1.0, n: int = 60, errors: int = 0,
              settings: dict | None = None) -> BaselineCell:
    """A cell whose every latency is `slowdown` x a seeded draw (ttft ~45 ms, tpot ~1.2 ms)."""
    rng = np.random.default_rng(seed)
    ttft = rng.lognormal(np.log(0.045), 0.08, n) * slowdown
    tpot = rng.lognormal(np.log(0.0012), 0.08, n) * slowdown
    e2e = ttft + tpot * (TOKENS - 1)
    tokens = np.full(n, float(TOKENS))
    cell_settings = dict(settings or SETTINGS)
    concurrency = cell_settings.get("concurrency") or 1
    output_tps = concurrency * tokens.sum() / e2e.sum()
    aggregates = {"output_tps": output_tps, "rps": output_tps / TOKENS,
                  "rejection_rate": 0.0, "error_rate": errors / (n + errors)}
    return BaselineCell(
        cell_id="c0", settings=cell_settings, requests=n + errors, rejected=0, errors=errors,
        samples={"ttft_s": ttft, "tpot_s": tpot, "itl_mean_s": tpot, "e2e_s": e2e,
                 "user_tps": 1.0 / tpot, "output_tokens_used": tokens},
        aggregates=aggregates, per_repeat={name: [aggregates[name]] for name in AGGREGATE_COLUMNS},
    )


def make_baseline(*cells: BaselineCell, source: str = "hand-made") -> Baseline:
    return Baseline(source, {"bench_version": "0.1.0", "gates": {}}, list(cells))


def write_baseline(path: Path, *cells: BaselineCell) -> Path:
    return save_baseline_json(make_baseline(*cells, source=path.name), path)
