"""The latency statistics table (terminal and report): small-n percentiles marked, intervals where
they exist, and ITL rows counting the gaps they pool."""

from __future__ import annotations

import pandas as pd

from bench.outputs.statistics import SMALL_N, statistics_rows


def _summary(ok: int, gaps: int) -> pd.DataFrame:
    row = {"ok": ok, "itl_gaps": gaps}
    for base in ("ttft", "itl"):
        row.update({f"{base}_mean_s": 0.1, f"{base}_std_s": 0.01, f"{base}_p50_s": 0.1, f"{base}_p95_s": 0.2,
                    f"{base}_p99_s": 0.3})
    row.update({"ttft_p50_ci_lo_s": 0.09, "ttft_p50_ci_hi_s": 0.11, "ttft_p95_ci_lo_s": 0.18,
                "ttft_p95_ci_hi_s": 0.25})
    return pd.DataFrame([row], index=pd.Index(["c1"], name="cell_id"))


def test_p99_from_forty_requests_is_marked_while_pooled_itl_gaps_are_enough() -> None:
    _, rows = statistics_rows(_summary(ok=40, gaps=1240), {"c1": "c=4"}, (50.0, 95.0, 99.0))
    ttft, itl = rows
    assert ttft[2] == "40" and itl[2] == "1240 gaps"
    assert ttft[-1].endswith(SMALL_N)  # p99 of 40 requests: the slowest but one
    assert not ttft[-2].endswith(SMALL_N)  # p95 of 40 requests is a percentile
    assert not itl[-1].endswith(SMALL_N)  # p99 of 1240 gaps is too


def test_intervals_are_shown_beside_the_percentiles_that_have_them() -> None:
    _, rows = statistics_rows(_summary(ok=40, gaps=1240), {"c1": "c=4"}, (50.0, 95.0), intervals=True)
    assert rows[0][-2] == "100\n[90.0–110]" and rows[0][-1] == "200\n[180–250]"
    _, plain = statistics_rows(_summary(ok=40, gaps=1240), {"c1": "c=4"}, (50.0, 95.0))
    assert plain[0][-1] == "200"


def test_a_marked_percentile_gets_no_interval() -> None:
    _, rows = statistics_rows(_summary(ok=12, gaps=300), {"c1": "c=4"}, (95.0,), intervals=True)
    assert rows[0][-1] == "200" + SMALL_N
