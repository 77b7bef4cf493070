"""The running cell right now: request and token rates, TTFT, failures over the last few seconds,
and the requests in flight — the line k6 and Locust users watch while a test runs.

Presentation only: counters fed by the progress display (bench.run.progress), read by its
refresh. Rates are over a sliding window of wall-clock time, so a stall shows as rates falling
to zero while in flight stays up, which the cell's running averages would hide.
"""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class _Done:
    at_s: float  # wall clock (time.monotonic) when the record arrived
    output_tokens: float
    ttft_s: float | None  # successful requests only
    failed: bool
    rejected: bool


class LiveWindow:
    """Completions of the last WINDOW_S seconds and the requests in flight now."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window_s: float = WINDOW_S) -> None:
        self.clock, self.window_s = clock, window_s
        self.started_s = clock()
        self.in_flight = 0
        self._done: collections.deque[_Done] = collections.deque()

    def reset(self) -> None:
        """A new cell: its rates start from nothing (in flight is the load engine's, kept)."""
        self.started_s = self.clock()
        self._done.clear()

    def sent(self) -> None:
        self.in_flight += 1

    def finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def add(self, output_tokens: float, ttft_s: float | None, failed: bool, rejected: bool) -> None:
        self._done.append(_Done(self.clock(), output_tokens, ttft_s, failed, rejected))

    def _recent(self) -> tuple[list[_Done], float]:
        now = self.clock()
        while self._done and self._done[0].at_s < now - self.window_s:
            self._done.popleft()
        # Early in a cell the window is the time since it started, so the first rates are not diluted.
        return list(self._done), max(1e-3, min(self.window_s, now - self.started_s))

    def line(self) -> str:
        """`now: 12.3 req/s  395 tok/s  TTFT p50 194 ms  in flight 8  err 0  rej 0` (≤ 80 columns)."""
        done, span_s = self._recent()
        ttfts = [d.ttft_s for d in done if d.ttft_s is not None]
        ttft = _duration(statistics.median(ttfts)) if ttfts else "-"
        errors = sum(d.failed for d in done)
        rejected = sum(d.rejected for d in done)
        return (f"now: {len(done) / span_s:.1f} req/s  "
                f"{sum(d.output_tokens for d in done) / span_s:.0f} tok/s  TTFT p50 {ttft}  "
                f"in flight {self.in_flight}  err {errors}  rej {rejected}")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
