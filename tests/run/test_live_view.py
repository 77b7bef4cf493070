"""The live view of the running cell: rates over the last seconds, TTFT, failures and requests in
flight, on a terminal under the bars and as plain lines in a log."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bench.run import progress as progress_module
from bench.run.live_view import LiveWindow
from bench.run.progress import RunProgress
from tests.run.test_progress import RECORDS


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_rates_cover_the_last_seconds_and_fall_to_zero_in_a_stall() -> None:
    clock = FakeClock()
    live = LiveWindow(clock, window_s=10.0)
    live.sent(); live.sent(); live.sent()
    clock.now_s = 105.0
    live.add(50, 0.2, failed=False, rejected=False)
    live.finished()
    clock.now_s = 110.0
    live.add(0, None, failed=True, rejected=False)
    live.finished()
    line = live.line()
    assert "0.2 req/s" in line and "5 tok/s" in line  # 2 requests, 50 tokens over 10 s
    # In flight over the window: 3 for 5 s, then 2 for 5 s.
    assert "TTFT p50 200 ms" in line and "in flight 2.5" in line and "err 1" in line and "rej 0" in line
    clock.now_s = 130.0  # nothing finished for 20 s while a request is still out: a stall shows
    assert live.line().startswith("now: 0.0 req/s  0 tok/s  TTFT p50 -  in flight 1.0")


def test_a_closed_loop_reads_its_concurrency_though_a_line_prints_just_after_a_completion() -> None:
    clock = FakeClock()
    live = LiveWindow(clock, window_s=10.0)
    for _ in range(30):  # concurrency 1: each request replaced the moment it ends
        live.sent()
        clock.now_s += 0.5
        live.finished()
        live.add(16, 0.1, failed=False, rejected=False)
    assert live.in_flight == 0 and "in flight 1.0" in live.line()


def test_early_in_a_cell_rates_are_over_the_time_since_it_started() -> None:
    clock = FakeClock()
    live = LiveWindow(clock, window_s=10.0)
    clock.now_s = 102.0
    live.add(20, 0.1, failed=False, rejected=True)
    assert "0.5 req/s" in live.line() and "10 tok/s" in live.line() and "rej 1" in live.line()


def test_the_line_fits_80_columns_at_realistic_values() -> None:
    clock = FakeClock()
    live = LiveWindow(clock)
    for _ in range(64):
        live.sent()
    for _ in range(999):
        live.add(512, 12.345, failed=False, rejected=False)
    clock.now_s = 110.0
    assert len("  " + live.line()) <= 80


def test_a_terminal_shows_the_live_line_under_the_bars() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True)
    progress = RunProgress(console, total_cells=1)
    progress.start_cell(0, "c=4", expected=7, warmup=1)
    progress.request_sent()
    for item in RECORDS[:4]:
        progress.record(item)
    assert progress.progress is not None
    rendered = io.StringIO()
    Console(file=rendered, width=100).print(*progress.progress.get_renderables())
    assert "in flight " in rendered.getvalue() and "req/s" in rendered.getvalue()
    assert progress.live.in_flight == 1
    progress.request_done()
    progress.close()


def test_off_a_terminal_the_live_figures_are_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "_PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    progress = RunProgress(Console(file=out, width=200, force_terminal=False), total_cells=1)
    progress.start_cell(0, "c=4", expected=7, warmup=1)
    progress.request_sent()
    progress.record(RECORDS[1])
    text = out.getvalue()
    assert "now:" in text and "in flight " in text and "\x1b[" not in text


def test_without_reported_sends_in_flight_is_not_claimed_to_be_zero() -> None:
    clock = FakeClock()
    live = LiveWindow(clock)  # --workers: requests go out in other processes
    clock.now_s += 5.0
    live.add(16, 0.1, failed=False, rejected=False)
    assert "in flight -" in live.line()
