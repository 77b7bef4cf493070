"""The `bench` command line: click commands only (parse, call, print), one module per group.

Each submodule defines its commands and is registered below. User errors (BenchError) are
caught once here and printed as a single line with exit code 2.
"""

from __future__ import annotations

import sys

import click

from bench import __version__
from bench.cli import (
    compare_cmd,
    kv_cmd,
    perf_cmd,
    recommend_cmd,
    report_cmd,
    run_cmd,
    sim_cmd,
    soak_cmd,
)
from bench.errors import BenchError


class _BenchGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BenchError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=_BenchGroup)
@click.version_option(__version__, prog_name="bench")
def cli() -> None:
    """Benchmark Ollama servers: throughput, latency and memory, against a real server or `bench sim`."""


for _command_module in (sim_cmd, run_cmd, report_cmd, compare_cmd, kv_cmd, recommend_cmd, perf_cmd,
                        soak_cmd):
    _command_module.register(cli)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bench")
