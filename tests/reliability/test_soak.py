"""The soak benchmark's machinery: bounded-memory verdict, duration parsing, a short real soak,
and the load engine's own bounded bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.errors import UsageError
from bench.load.health import LAG_SAMPLE_SIZE, CellOutcome
from bench.records import load_run
from bench.run.soak import RecordCounter, RssSample, judge, parse_duration_s
from reliability.support import bench

MIB = 2**20


def _samples(rss_mib: list[float], per_sample_requests: int = 100) -> list[RssSample]:
    # A start-up sample with no requests yet, then steady load, then the end-of-run spike.
    points = [RssSample(0.0, int(50 * MIB), 0)]
    points += [RssSample(float(i + 1), int(mib * MIB), (i + 1) * per_sample_requests)
               for i, mib in enumerate(rss_mib)]
    # The last requests finish as the run starts writing parquet: RSS jumps, then the count stops.
    final_count = len(rss_mib) * per_sample_requests + 7
    points.append(RssSample(len(rss_mib) + 1.0, int(400 * MIB), final_count))
    points.append(RssSample(len(rss_mib) + 2.0, int(300 * MIB), final_count))
    return points


def test_flat_memory_is_bounded_and_the_end_of_run_spike_is_not_growth() -> None:
    rng = np.random.default_rng(1)
    verdict = judge(_samples(list(120 + rng.normal(0, 1.5, 200))))
    assert verdict.bounded
    assert abs(verdict.growth_bytes) < 2 * MIB
    assert verdict.rss_peak_bytes == 400 * MIB  # reported, but outside the compared windows
    assert verdict.requests == 200 * 100


def test_steady_growth_is_not_bounded() -> None:
    verdict = judge(_samples([100 + 0.5 * i for i in range(200)]))  # +100 MiB over the soak
    assert not verdict.bounded
    assert verdict.growth_bytes > verdict.tolerance_bytes
    assert verdict.growth_bytes_per_1000_requests == pytest.approx(0.5 * MIB / 100 * 1000, rel=0.01)


def test_too_few_samples_is_a_user_error() -> None:
    with pytest.raises(UsageError, match="RSS samples under load"):
        judge(_samples([100.0] * 5))


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600),
                                               ("0.5s", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1d", "-5s", "fast"])
def test_bad_durations_are_one_line_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--duration"):
        parse_duration_s(text)


def test_record_counter_reads_only_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    counter = RecordCounter(path)
    assert counter() == 0
    path.write_bytes(b"{}\n{}\n")
    assert counter() == 2
    with open(path, "ab") as more:
        more.write(b"{}\n{")  # a line being written is not counted yet
    assert counter() == 3


def test_dispatch_lags_are_sampled_not_accumulated() -> None:
    outcome = CellOutcome(complete=True)
    lags = np.random.default_rng(3).exponential(0.01, 5 * LAG_SAMPLE_SIZE)
    for lag in lags:
        outcome.add_lag(float(lag))
    assert len(outcome.dispatch_lags_s) == LAG_SAMPLE_SIZE
    assert outcome.lags_seen == len(lags)
    assert np.percentile(outcome.dispatch_lags_s, 99) == pytest.approx(np.percentile(lags, 99), rel=0.1)


@pytest.mark.e2e
def test_short_soak_writes_samples_verdict_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    # 5 s of load sampled every 0.1 s: ~50 samples, the judge's 10-under-load five times over.
    result = bench("soak", "--duration", "5s", "--sample-every", "0.1s", "--concurrency", "4",
                   "--out", str(out))
    soak = json.loads((out / "soak.json").read_text())
    verdict = soak["verdict"]
    # Exit 0 when bounded, 1 when growing: the command says what the file says.
    assert result.returncode == (0 if verdict["bounded"] else 1), result.stdout + result.stderr
    assert verdict["bounded"] == (verdict["growth_bytes"] <= verdict["tolerance_bytes"])
    assert len(soak["samples"]) >= 20
    assert verdict["requests"] > 0 and verdict["rss_start_bytes"] > 0
    assert "soak bounded" in result.stdout or "soak GROWING" in result.stdout
    assert (out / "soak-rss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = load_run(out)
    assert run.manifest.status == "complete"
    # Every request the soak counted is in the run; the verdict's window ends just before the last.
    assert len(run.requests) == soak["samples"][-1]["requests_done"] >= verdict["requests"]
