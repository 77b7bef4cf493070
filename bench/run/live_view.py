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

from bench.numbers import seconds

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
        # False while no send was reported (`bench run --workers N`: requests go out in other
        # processes): the line then shows no in-flight figure rather than a false 0.
        self.counts_sends = False
        self._done: collections.deque[_Done] = collections.deque()
        # Request-seconds in flight so far, and (time, that integral) at each change: the mean in
        # flight over the window is their difference / its length. A count sampled when a line is
        # printed lands just after a completion (c − 1 in a closed loop); the mean does not.
        self._area = 0.0
        self._changed_s = self.started_s
        # (time, integral up to it, count from it on) at each change.
        self._areas: collections.deque[tuple[float, float, int]] = collections.deque([(self.started_s, 0.0, 0)])

    def reset(self) -> None:
        """A new cell: its rates start from nothing (in flight is the load engine's, kept)."""
        self.started_s = self.clock()
        self._done.clear()
        self._step(0)
        self._areas = collections.deque([(self.started_s, self._area, self.in_flight)])

    def _step(self, change: int) -> None:
        now = self.clock()
        self._area += self.in_flight * (now - self._changed_s)
        self._changed_s = now
        self.in_flight = max(0, self.in_flight + change)
        self._areas.append((now, self._area, self.in_flight))
        while len(self._areas) > 2 and self._areas[1][0] <= now - self.window_s:
            self._areas.popleft()

    def sent(self) -> None:
        self.counts_sends = True
        self._step(+1)

    def finished(self) -> None:
        self._step(-1)

    def mean_in_flight(self) -> float:
        """Time-weighted mean of requests in flight over the window (since the cell began, if later)."""
        now = self.clock()
        area_now = self._area + self.in_flight * (now - self._changed_s)
        start = max(now - self.window_s, self.started_s)
        before = [entry for entry in self._areas if entry[0] <= start]
        t, area, count = before[-1] if before else self._areas[0]
        start = max(start, t)
        area_start = area + count * (start - t)
        return (area_now - area_start) / (now - start) if now > start else float(self.in_flight)

    def add(self, output_tokens: float, ttft_s: float | None, failed: bool, rejected: bool) -> None:
        self._done.append(_Done(self.clock(), output_tokens, ttft_s, failed, rejected))

    def _recent(self) -> tuple[list[_Done], float]:
        now = self.clock()
        while self._done and self._done[0].at_s < now - self.window_s:
            self._done.popleft()
        # Early in a cell the window is the time since it started, so the first rates are not diluted.
        return list(self._done), max(1e-3, min(self.window_s, now - self.started_s))

    def line(self) -> str:
        """`now: 12.3 req/s  395 tok/s  TTFT p50 194 ms  in flight 7.9  err 0  rej 0` (≤ 80 columns)."""
        done, span_s = self._recent()
        ttfts = [d.ttft_s for d in done if d.ttft_s is not None]
        ttft = seconds(statistics.median(ttfts)) if ttfts else "-"
        errors = sum(d.failed for d in done)
        rejected = sum(d.rejected for d in done)
        return (f"now: {len(done) / span_s:.1f} req/s  "
                f"{sum(d.output_tokens for d in done) / span_s:.0f} tok/s  TTFT p50 {ttft}  "
                f"in flight {f'{self.mean_in_flight():.1f}' if self.counts_sends else '-'}  err {errors}  rej {rejected}")
