"""The `bench` command line: click commands only (parse, call, print), one module per group.

Each submodule defines its commands and is registered below. Every failure goes through
bench.cli.funnel once: a single line, exit 2 for user errors (`--debug` shows the traceback).
"""

from __future__ import annotations

import os
import sys

import click

from bench import __version__
from bench.cli import (
    compare_cmd,
    conformance_cmd,
    gguf_cmd,
    kv_cmd,
    ollama_cmd,
    perf_cmd,
    recommend_cmd,
    report_cmd,
    run_cmd,
    sim_cmd,
    soak_cmd,
)
from bench.cli.funnel import DEBUG_ENV, fail, fail_usage


# `bench --help` lists commands in the order a user needs them: run a study, check a scenario,
# read the answer, compare runs; then the tools (KV sizing, the simulator, baselines, ...).
COMMAND_ORDER = ("run", "validate", "report", "recommend", "compare", "baseline", "kv", "kv-analyze", "sim",
                 "schema", "soak", "perf", "gguf", "ollama", "conformance")


class _BenchGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click's signature
        known = [name for name in COMMAND_ORDER if name in self.commands]
        return known + sorted(name for name in self.commands if name not in COMMAND_ORDER)

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        # click's usage errors as one line too (its own format is three: Usage, Try, Error).
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.ClickException as error:
            fail_usage(error)
        except click.exceptions.Abort:
            fail(KeyboardInterrupt())
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors, --help, exit codes
        except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - the one funnel
            fail(error)


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        os.environ[DEBUG_ENV] = "1"  # also reaches subprocesses bench starts


@click.group(cls=_BenchGroup)
@click.version_option(__version__, prog_name="bench")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
              help=f"Show the traceback of a failure (also {DEBUG_ENV}=1).")
def cli() -> None:
    """Benchmark Ollama servers: throughput, latency and memory, against a real server or `bench sim`."""


for _command_module in (sim_cmd, run_cmd, report_cmd, compare_cmd, kv_cmd, recommend_cmd, perf_cmd,
                        soak_cmd, gguf_cmd, ollama_cmd, conformance_cmd):
    _command_module.register(cli)


def _unencodable_shown_escaped() -> None:
    """A terminal or pipe that cannot encode `…` or `µ` (PYTHONIOENCODING=ascii, LANG=C on an old
    system) gets `\u2026` instead of a UnicodeEncodeError after the run has measured everything."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass  # a closed or detached stream: nothing will be written to it anyway


def main() -> None:
    """Console-script entry point."""
    _unencodable_shown_escaped()
    cli(prog_name="bench")
