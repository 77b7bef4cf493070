"""`bench ollama build` / `bench ollama path`: the real Ollama, built from the Go module proxy."""

from __future__ import annotations

from pathlib import Path

import click

from bench.ollama.pins import LLAMA_CPP_BUILD, OLLAMA_VERSION


@click.group("ollama")
def ollama() -> None:
    """Build and locate the real Ollama (`ollama serve`) that `--target ollama` runs."""


@ollama.command("build")
@click.option("--version", "version", default=OLLAMA_VERSION, show_default=True,
              help=f"Ollama release (the pin: {OLLAMA_VERSION}, llama.cpp b{LLAMA_CPP_BUILD}).")
@click.option("--llama-server", "llama_server", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="llama-server to put in lib/ollama (default: PATH, then the engine extra).")
@click.option("--force", is_flag=True, help="Rebuild even when this version is already built.")
def build_command(version: str, llama_server: Path | None, force: bool) -> None:
    """Build Ollama with cgo (go install) and put the project's llama-server beside it."""
    from bench.ollama.build import build

    build(version, llama_server, force=force, say=lambda line: click.echo(line))


@ollama.command("path")
@click.option("--version", "version", default=OLLAMA_VERSION, show_default=True, help="Ollama release.")
def path_command(version: str) -> None:
    """Print the built `ollama` executable (exit 2 with how to build it when there is none)."""
    from bench.ollama.build import require_installed

    click.echo(str(require_installed(version).binary))


def register(cli: click.Group) -> None:
    cli.add_command(ollama)
