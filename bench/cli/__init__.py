"""The `bench` command line: click commands only (parse, call, print), one module per group.

Each submodule defines its commands and is registered below. User errors (BenchError) are
caught once here and printed as a single line with exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from bench import __version__
from bench.errors import BenchError

# Submodules that each expose `register(group)`; a missing one is skipped so that the CLI keeps
# working while a command group is being built.
_COMMAND_MODULES = (
    "bench.cli.sim_cmd",
    "bench.cli.run_cmd",
    "bench.cli.report_cmd",
    "bench.cli.compare_cmd",
    "bench.cli.kv_cmd",
    "bench.cli.recommend_cmd",
    "bench.cli.perf_cmd",
    "bench.cli.soak_cmd",
)


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


def _register_all() -> None:
    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue
            raise
        module.register(cli)


_register_all()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bench")
