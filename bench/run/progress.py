"""What a run shows while it works: a live line per cell on a terminal, plain lines otherwise,
and the summary table at the end. Presentation only: it reads counters, never decides anything.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bench.escape import for_terminal, plain_terminal
from bench.records import RequestRecord

_PLAIN_EVERY_S = 10.0
_SHORT_NAMES = {"concurrency": "c", "prompt_tokens": "prompt", "max_tokens": "out", "num_ctx": "ctx",
                "rate_rps": "rps", "OLLAMA_NUM_PARALLEL": "NP"}  # off a terminal, one progress line per cell at most this often


def describe_cell(settings: dict[str, Any], varying: list[str]) -> str:
    """Short label: the settings that vary across the run's cells."""
    parts = []
    for name in varying:
        value = settings.get(name)
        if name == "surface":
            continue
        if name == "endpoint":
            parts.append(f"{settings['surface']}/{value}")
        elif name in _SHORT_NAMES:
            parts.append(f"{_SHORT_NAMES[name]}={value}")
        else:
            parts.append(f"{name}={value}")
    label = " ".join(parts) or f"{settings['surface']}/{settings['endpoint']} {settings['model']}"
    # Model names and other values are the user's or the server's text: no escape sequences.
    return plain_terminal(label)


def varying_settings(cells_settings: list[dict[str, Any]]) -> list[str]:
    """Names of settings that take more than one value across cells (in key order)."""
    if not cells_settings:
        return []
    names = list(cells_settings[0])
    varying = [n for n in names if len({repr(s.get(n)) for s in cells_settings}) > 1]
    if "surface" in varying and "endpoint" not in varying:
        varying.insert(varying.index("surface") + 1, "endpoint")
    return varying


class RunProgress:
    """Counts requests of the current cell and shows them (rich Live on a TTY, else lines)."""

    def __init__(self, console: Console, total_cells: int) -> None:
        self.console = console
        self.total_cells = total_cells
        self.live: Live | None = None
        self._reset("", 0, None)

    def _reset(self, label: str, index: int, expected: int | None) -> None:
        self.label, self.index, self.expected = label, index, expected
        self.done = self.ok = self.errors = self.rejected = self.warmup = 0
        self.started = time.monotonic()
        self.last_plain = self.started

    def start_cell(self, index: int, label: str, expected: int | None) -> None:
        self._reset(label, index, expected)
        if self.console.is_terminal:
            self.live = Live(get_renderable=self._render, console=self.console,
                             refresh_per_second=4, transient=True)
            self.live.start()
        else:
            self.console.print(f"cell {index + 1}/{self.total_cells}: {label}", highlight=False, soft_wrap=True,
                               markup=False)

    def record(self, record: RequestRecord) -> None:
        if record.phase == "warmup":
            self.warmup += 1
            return
        self.done += 1
        if record.error_class is None:
            self.ok += 1
        elif record.error_class == "rejected":
            self.rejected += 1
        else:
            self.errors += 1
        now = time.monotonic()
        if self.live is None and now - self.last_plain >= _PLAIN_EVERY_S:
            self.last_plain = now
            self.console.print(f"  {self._counts()}", highlight=False, soft_wrap=True)

    def _counts(self) -> str:
        elapsed_s = max(time.monotonic() - self.started, 1e-9)
        of = f"/{self.expected}" if self.expected else ""
        return (f"{self.done}{of} done  {self.done / elapsed_s:.1f} req/s  "
                f"errors {self.errors}  rejected {self.rejected}")

    def _render(self) -> Text:
        return Text(f"cell {self.index + 1}/{self.total_cells} {self.label}: {self._counts()}")

    def end_cell(self, status: str) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        mark = "" if status == "complete" else f" [{status}]"
        self.console.print(f"cell {self.index + 1}/{self.total_cells} {self.label}: {self._counts()}"
                           f"{mark}", highlight=False, soft_wrap=True, markup=False)

    def note(self, message: str) -> None:
        self.console.print(plain_terminal(message), highlight=False, soft_wrap=True, markup=False)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _fmt_ms(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    milliseconds = value * 1000
    return f"{milliseconds:.2f}" if milliseconds < 10 else f"{milliseconds:.0f}"


def _fmt_num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def summary_table(summary: pd.DataFrame, labels: dict[str, str]) -> Table:
    """The end-of-run table: one row per cell, the numbers people look at first."""
    table = Table(title="summary (measured requests)", show_lines=False)
    columns = [("cell", "left"), ("ok/req", "right"), ("rej", "right"), ("err", "right"),
               ("TTFT p50 ms", "right"), ("TTFT p95 ms", "right"), ("TPOT p50 ms", "right"),
               ("out tok/s", "right"), ("req/s", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=name == "cell")  # type: ignore[arg-type]
    for cell_id, row in summary.iterrows():
        get = row.get
        table.add_row(
            for_terminal(labels.get(str(cell_id), str(cell_id))),
            f"{int(get('ok', 0) or 0)}/{int(get('requests', 0) or 0)}",
            str(int(get("rejected", 0) or 0)),
            str(int(get("errors", 0) or 0)),
            _fmt_ms(get("ttft_p50_s")),
            _fmt_ms(get("ttft_p95_s")),
            _fmt_ms(get("tpot_p50_s")),
            _fmt_num(get("output_tps")),
            _fmt_num(get("rps"), 2),
        )
    return table
