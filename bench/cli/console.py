"""The rich Console every command prints through."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rich.console import Console

# Rich's width when stdout is not a terminal (a log file, a pipe, CI): the default 80 squeezes
# wide tables into folded columns a few characters wide.
NON_TERMINAL_WIDTH = 160


def output_console() -> Console:
    """A Console for stdout: the terminal's width, or COLUMNS when set, or 160 columns when stdout
    is not a terminal."""
    console = Console()
    if console.is_terminal or os.environ.get("COLUMNS", "").strip().isdigit():
        return console
    return Console(width=NON_TERMINAL_WIDTH)


@contextlib.contextmanager
def working(console: Console, what: str) -> Iterator[None]:
    """Say at once what a slow step is doing: a spinner on a terminal (nothing otherwise).

    Commands that load pandas/scipy or read a whole run take seconds; a user should see within a
    second that bench is at work (issue 17).
    """
    if not console.is_terminal:
        # Off a terminal (CI logs, pipes) nothing: a bad input must stay one line, and the
        # command's own output follows soon enough.
        yield
        return
    with console.status(f"{what}…", spinner="dots"):
        yield
