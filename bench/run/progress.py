"""What a run shows while it works: a live line per cell on a terminal, plain lines otherwise,
(the summary table at the end: bench.outputs.summary). Presentation only: it reads counters, never decides anything.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import statistics
import time
from collections.abc import Iterator
from typing import Any
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Column
from rich.text import Text

from bench.escape import plain_terminal
from bench.numbers import clock_time, milliseconds
from bench.records import RequestRecord
from bench.run.live_view import LiveWindow

_PLAIN_EVERY_S = 10.0  # off a terminal, one progress line per cell at most this often


@dataclass
class _CellStats:
    """What the live line shows of the cell's measured requests, on the summary's definitions:
    TTFT p50 over successful requests, output tok/s = their tokens / (last end - first send)."""

    warmup: int = 0
    measured: int = 0
    ok: int = 0
    errors: int = 0
    rejected: int = 0
    output_tokens: float = 0.0
    # Per repeat: (first send, last end); the summary's window is the sum over repeats.
    windows_s: dict[int, tuple[float, float]] = field(default_factory=dict)
    ttfts_s: list[float] = field(default_factory=list)

    def add(self, record: RequestRecord) -> None:
        if record.phase == "warmup":
            self.warmup += 1
            return
        self.measured += 1
        first, last = self.windows_s.get(record.repeat, (math.inf, -math.inf))
        if record.sent_s is not None:
            first = min(first, record.sent_s)
        if record.end_s is not None:
            last = max(last, record.end_s)
        self.windows_s[record.repeat] = (first, last)
        if record.error_class == "rejected":
            self.rejected += 1
        elif record.error_class is not None:
            self.errors += 1
        else:
            self.ok += 1
            if record.first_token_s is not None and record.sent_s is not None:
                bisect.insort(self.ttfts_s, record.first_token_s - record.sent_s)
            chunks = len(record.chunk_times_s or ())
            self.output_tokens += record.output_tokens if record.output_tokens is not None else chunks

    def ttft_p50_s(self) -> float | None:
        values = self.ttfts_s
        return statistics.median(values) if values else None

    def output_tps(self) -> float | None:
        window_s = sum(last - first for first, last in self.windows_s.values()
                       if math.isfinite(first) and math.isfinite(last) and last > first)
        return self.output_tokens / window_s if self.ok and window_s > 0 else None

    def describe(self) -> str:
        ttft = self.ttft_p50_s()
        tps = self.output_tps()
        parts = [f"TTFT p50 {milliseconds(ttft)} ms" if ttft is not None else "TTFT p50 -",
                 f"{tps:.1f} tok/s" if tps is not None else "- tok/s"]
        if self.errors:
            parts.append(f"errors {self.errors}")
        if self.rejected:
            parts.append(f"rejected {self.rejected}")
        return "  ".join(parts)


class _LiveProgress(Progress):
    """The bars, and under them the running cell's last seconds (bench.run.live_view)."""

    def __init__(self, *columns: Any, window: LiveWindow, **options: Any) -> None:
        self.window = window  # not `live`: rich's Progress keeps its Live there
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterator[Any]:
        yield self.make_tasks_table(self.tasks)
        if len(self.tasks) > 1:  # a cell is running (the run bar alone: between cells)
            yield Text("  " + self.window.line(), no_wrap=True, overflow="ellipsis", style="dim")


# Below this many columns the bars drop their words and shrink, and the cell label is trimmed:
# the figures (counts, times, TTFT, tok/s) always keep their full width.
_NARROW_COLUMNS = 120


def _bar_columns(width: int) -> list[Any]:
    """The progress columns for a terminal `width` columns wide."""
    figures = TextColumn("{task.fields[stats]}", markup=False, table_column=Column(no_wrap=True))
    if width >= _NARROW_COLUMNS:
        return [TextColumn("{task.description}", markup=False), BarColumn(bar_width=28), MofNCompleteColumn(),
                TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), figures]
    # What the figures take: bar 8, "123/456" 7, "0:00:00" 7, "TTFT p50 1234 ms  1234.5 tok/s" 30,
    # and a space between columns; the label gets the rest.
    label = TextColumn("{task.description}", markup=False,
                       table_column=Column(no_wrap=True, overflow="ellipsis", max_width=max(8, width - 58)))
    return [label, BarColumn(bar_width=8), MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)), figures]


class RunProgress:
    """The run as it goes: rich.progress bars on a terminal (the run's cells, the current cell's
    requests, elapsed and ETA, warmup, live TTFT p50 and tok/s of the measured requests), plain
    lines otherwise. Presentation only: it counts what it is shown."""

    def __init__(self, console: Console, total_cells: int, expected_requests: list[int | None] | None = None) -> None:
        self.console = console
        self.total_cells = total_cells
        # Per cell: warmup + measured requests expected (None: a duration-bound cell).
        self.expected_requests = expected_requests or []
        self.progress: Progress | None = None
        self.run_task: TaskID | None = None
        self.cell_task: TaskID | None = None
        self.cells_done = 0
        self.started = time.monotonic()
        self.live = LiveWindow()
        self._reset("", 0, None, 0)

    def _reset(self, label: str, index: int, expected: int | None, warmup: int) -> None:
        self.label, self.index, self.expected, self.expected_warmup = label, index, expected, warmup
        self.stats = _CellStats()
        self.live.reset()
        self.cell_started = time.monotonic()
        self.last_plain = self.cell_started

    def _ensure_bars(self) -> Progress | None:
        if not self.console.is_terminal:
            return None
        if self.progress is None:
            self.progress = _LiveProgress(*_bar_columns(self.console.width), console=self.console,
                                          transient=False, refresh_per_second=4, window=self.live)
            self.progress.start()
            self.run_task = self.progress.add_task("run", total=self.total_cells, stats="")
        return self.progress

    def status(self, message: str) -> None:
        """What bench is doing between cells (starting a server, calibrating), on the run bar.

        Off a terminal nothing: a run that fails at its start must stay one error line."""
        progress = self._ensure_bars()
        if progress is not None and self.run_task is not None:
            progress.update(self.run_task, stats=message)

    def start_cell(self, index: int, label: str, expected: int | None, warmup: int = 0) -> None:
        """`expected` measured requests (None: duration-bound) after `warmup` warmup requests."""
        self._reset(label, index, expected, warmup)
        progress = self._ensure_bars()
        title = f"cell {index + 1}/{self.total_cells} {plain_terminal(label)}"
        if progress is None:
            self.console.print(title, highlight=False, soft_wrap=True, markup=False)
            return
        assert self.run_task is not None
        progress.update(self.run_task, stats="")
        total = None if expected is None else expected + warmup
        self.cell_task = progress.add_task(self._cell_description(), total=total, stats="")

    def _cell_description(self) -> str:
        phase = (f"warmup {self.stats.warmup}/{self.expected_warmup}"
                 if self.stats.warmup < self.expected_warmup and not self.stats.measured else "measuring")
        return f"  {plain_terminal(self.label)} · {phase}"

    def record(self, record: RequestRecord) -> None:
        if record.request_index is not None and record.request_index < 0:
            return  # a calibration probe, not one of the cell's requests
        self.stats.add(record)
        self._to_live(record)
        if self.progress is not None and self.cell_task is not None:
            self.progress.update(self.cell_task, advance=1, description=self._cell_description(),
                                 stats=self.stats.describe())
            return
        now = time.monotonic()
        if now - self.last_plain >= _PLAIN_EVERY_S:
            self.last_plain = now
            self.console.print(f"  {self._counts()}", highlight=False, soft_wrap=True, markup=False)
            self.console.print(f"  {self.live.line()}", highlight=False, soft_wrap=True, markup=False)

    def request_sent(self) -> None:
        """A request went out (the live view's in-flight count)."""
        self.live.sent()

    def request_done(self) -> None:
        self.live.finished()

    def _to_live(self, record: RequestRecord) -> None:
        ok = record.error_class is None
        ttft = (record.first_token_s - record.sent_s if ok and record.first_token_s is not None
                and record.sent_s is not None else None)
        tokens = (record.output_tokens if record.output_tokens is not None else len(record.chunk_times_s or ())) if ok else 0
        self.live.add(float(tokens), ttft, failed=not ok and record.error_class != "rejected",
                      rejected=record.error_class == "rejected")

    def _counts(self) -> str:
        of = f"/{self.expected}" if self.expected else ""
        warmup = f"warmup {self.stats.warmup}, " if self.stats.warmup else ""
        elapsed = time.monotonic() - self.cell_started
        return (f"{warmup}{self.stats.measured}{of} measured  {self.stats.describe()}  "
                f"elapsed {clock_time(elapsed)}{self._eta()}")

    def _eta(self) -> str:
        """Run ETA from the cells done so far (plain lines only; rich computes its own)."""
        if not self.cells_done:
            return ""
        per_cell_s = (time.monotonic() - self.started) / self.cells_done
        left = self.total_cells - self.cells_done
        return f"  run ETA {clock_time(per_cell_s * left)}" if left > 0 else ""

    def end_cell(self, status: str) -> None:
        self.cells_done += 1
        mark = "" if status == "complete" else f" [{status}]"
        line = f"cell {self.index + 1}/{self.total_cells} {plain_terminal(self.label)}: {self._counts()}{mark}"
        if self.progress is not None:
            if self.cell_task is not None:
                self.progress.remove_task(self.cell_task)
                self.cell_task = None
            if self.run_task is not None:
                self.progress.update(self.run_task, advance=1)
            self.progress.console.print(line, highlight=False, soft_wrap=True, markup=False)
            return
        self.console.print(line, highlight=False, soft_wrap=True, markup=False)

    def note(self, message: str) -> None:
        self.console.print(plain_terminal(message), highlight=False, soft_wrap=True, markup=False)

    def close(self) -> None:
        """Stop the bars (end of the run, or an error); the printed cell lines stay."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.run_task = self.cell_task = None


@contextlib.contextmanager
def busy(console: Console, what: str) -> Iterator[None]:
    """A step that takes seconds with nothing else to show: a spinner on a terminal, a line otherwise."""
    if console.is_terminal:
        with console.status(f"{what}…"):
            yield
        return
    console.print(f"{what}…", highlight=False, soft_wrap=True, markup=False)
    yield
