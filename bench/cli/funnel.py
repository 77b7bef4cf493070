"""The one place a command's failure becomes what the user sees: one line and an exit code.

User errors (BenchError, a file the OS refuses, Ctrl-C) print `error: …` and exit with their
code. Anything else is a bug: one line saying so, exit 70; `bench --debug` or BENCH_DEBUG=1
shows the traceback instead, for bug reports.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import click

from bench.errors import BenchError, ScenarioError
from bench.escape import plain_terminal
from bench.secrets import redact

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70  # sysexits EX_SOFTWARE: a bug in bench, not in the input
DEBUG_ENV = "BENCH_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def _say(line: str) -> None:
    click.echo(f"error: {plain_terminal(redact(line))}", err=True)


def fail(error: BaseException) -> NoReturn:
    """Print the one line for `error` (a traceback too with --debug) and exit."""
    if debug_enabled():
        traceback.print_exception(error)
    if isinstance(error, BenchError):
        # A scenario's problems come one per line; any other message is one line, and a newline in
        # it (a model name, a server's text) is shown as \x0a rather than forging a second line.
        lines = str(error).splitlines() if isinstance(error, ScenarioError) else [str(error)]
        for line in lines or [type(error).__name__]:
            _say(line)
        sys.exit(error.exit_code)
    if isinstance(error, KeyboardInterrupt):
        _say("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    if isinstance(error, OSError):
        # A path the user gave that the system refuses: a file where a directory should be,
        # /proc, a name too long, no permission, a full disk.
        where = f"{error.filename}: " if error.filename else ""
        _say(f"{where}{error.strerror or error}")
        sys.exit(EXIT_USER_ERROR)
    if isinstance(error, MemoryError):
        _say("out of memory")
        sys.exit(EXIT_USER_ERROR)
    message = " ".join(str(error).split())[:300]
    _say(f"internal error ({type(error).__name__}: {message}); "
         f"run again with {DEBUG_ENV}=1 for the traceback and report it")
    sys.exit(EXIT_INTERNAL)


def fail_usage(error: click.exceptions.ClickException) -> NoReturn:
    """A malformed command line (click's UsageError, BadParameter): one line naming the help."""
    if isinstance(error, click.exceptions.NoArgsIsHelpError):
        click.echo(error.format_message(), err=True)  # `bench` alone: the help, as click shows it
        sys.exit(error.exit_code)
    command = getattr(getattr(error, "ctx", None), "command_path", None)
    hint = f" (see {command} --help)" if command and isinstance(error, click.UsageError) else ""
    _say(f"{error.format_message()}{hint}")
    sys.exit(error.exit_code)
