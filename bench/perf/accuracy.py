"""Timing accuracy: the client's stamps against the emitter's logged emit times (pure functions).

Both sides stamp time.monotonic() (CLOCK_MONOTONIC, one clock for every process on the host),
so for each token: lateness = client stamp − emit stamp (the emitter stamps right after handing
the chunk to the socket). TTFT error is the first token's lateness: the client's TTFT and the
true one share the same send instant, so their difference is exactly that lateness. An
inter-token gap's error is the client's gap minus the emitter's gap.

The send side is reported apart, as `request_lag`: emitter `received_s` − client `sent_s`, the
time from the client's send stamp until the emitter had read the whole request. It bounds how
much later than its stamp the client really sent (it also holds the loopback trip, a TCP
connect when the connection is new, and the emitter's own wait for its turn).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.records.record import RequestRecord


def read_emit_log(path: Path) -> dict[str, dict[str, Any]]:
    """The emit log as {request id: entry}; a torn last line (emitter killed) is skipped."""
    entries: dict[str, dict[str, Any]] = {}
    with open(path, "rb") as lines:
        for raw_line in lines:
            try:
                entry = orjson.loads(raw_line)
            except orjson.JSONDecodeError:
                continue
            entries[entry["id"]] = entry
    return entries


def _percentiles_ms(values_s: list[float]) -> dict[str, float | None]:
    if not values_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "min_ms": None, "n": 0}
    array_ms = np.asarray(values_s) * 1000.0
    return {"p50_ms": round(float(np.percentile(array_ms, 50)), 4),
            "p99_ms": round(float(np.percentile(array_ms, 99)), 4),
            "max_ms": round(float(array_ms.max()), 4),
            "min_ms": round(float(array_ms.min()), 4), "n": int(array_ms.size)}


def timing_errors(records: Iterable[RequestRecord], t0: float,
                  emitted: dict[str, dict[str, Any]],
                  id_of: Callable[[RequestRecord], str]) -> dict[str, Any]:
    """Error percentiles (ms) of TTFT, of every token stamp, and of inter-token gaps.

    `unmatched` counts ok records with no emit entry; `count_mismatch` those whose number of
    stamped chunks differs from the number the emitter wrote (the client lost or invented one).
    """
    ttft_errors_s: list[float] = []
    stamp_errors_s: list[float] = []
    gap_errors_s: list[float] = []
    request_lags_s: list[float] = []
    matched = unmatched = count_mismatch = 0
    for record in records:
        if record.error_class is not None:
            continue
        entry = emitted.get(id_of(record))
        if entry is None:
            unmatched += 1
            continue
        emit_s = entry["token_emit_s"]
        client_s = [t0 + stamp for stamp in record.chunk_times_s]
        if len(client_s) != len(emit_s) or not emit_s:
            count_mismatch += 1
            continue
        matched += 1
        ttft_errors_s.append(client_s[0] - emit_s[0])
        if record.sent_s is not None and "received_s" in entry:
            request_lags_s.append(entry["received_s"] - (t0 + record.sent_s))
        stamp_errors_s.extend(client - emit for client, emit in zip(client_s, emit_s))
        gap_errors_s.extend(
            (client_s[i] - client_s[i - 1]) - (emit_s[i] - emit_s[i - 1])
            for i in range(1, len(emit_s))
        )
    return {
        "matched": matched, "unmatched": unmatched, "count_mismatch": count_mismatch,
        "ttft_error": _percentiles_ms(ttft_errors_s),
        "token_lateness": _percentiles_ms(stamp_errors_s),
        "itl_error": _percentiles_ms(gap_errors_s),
        "itl_abs_error": _percentiles_ms([abs(gap) for gap in gap_errors_s]),
        "request_lag": _percentiles_ms(request_lags_s),
    }
