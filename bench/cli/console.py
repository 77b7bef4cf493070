"""The rich Console every command prints through."""

from __future__ import annotations

from rich.console import Console

# Rich's width when stdout is not a terminal (a log file, a pipe, CI): the default 80 squeezes
# wide tables into folded columns a few characters wide.
NON_TERMINAL_WIDTH = 160


def output_console() -> Console:
    """A Console for stdout: the terminal's width, or 160 columns when stdout is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=NON_TERMINAL_WIDTH)
