"""`bench conformance`: probe `bench sim` and a real Ollama side by side; exit 1 on an unexplained difference."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import click

from bench.errors import UsageError


def register(group: click.Group) -> None:
    group.add_command(conformance)


def _recorded_real(path: Path) -> tuple[str, dict]:  # type: ignore[type-arg]
    from bench.conformance.compare import real_side_of

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: line {error.lineno}: not JSON ({error.msg})") from None
    description = str(((document.get("sides") or {}).get("real") or "recorded")) if isinstance(document, dict) else ""
    return f"recorded: {description} ({path.name})", real_side_of(document, str(path))


@click.command()
@click.option("--recorded", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Compare the simulator with the real side of an earlier conformance.json instead of starting Ollama.")
@click.option("--probe", "probe_names", multiple=True, help="Run only this probe (repeatable; default: all).")
@click.option("--known", "known_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Known deviations file (default: the list shipped with bench).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("conformance.json"),
              show_default=True, help="Where to write every observation and verdict.")
def conformance(recorded: Path | None, probe_names: tuple[str, ...],
                known_path: Path | None, out: Path) -> None:
    """Run the same probes against `bench sim` and the real Ollama (`bench ollama build`); table every difference.

    Exit 0 when every difference is a known deviation, 1 on any other, 2 on bad input.
    """
    from bench.records.atomic import write_atomically
    from bench.conformance.compare import DIFFERS, compare, document
    from bench.conformance.known import load_known
    from bench.conformance.probes import PROBE_NAMES
    from bench.conformance.run import observe
    from bench.conformance.session import PROBE_ENV
    from bench.conformance.table import render
    from bench.conformance.targets import ollama_target, sim_target
    from bench.conformance.session import ProbeModels

    unknown = [name for name in probe_names if name not in PROBE_NAMES]
    if unknown:
        raise UsageError(f"--probe {unknown[0]!r}: expected one of {', '.join(PROBE_NAMES)}")
    names = tuple(probe_names) or PROBE_NAMES
    known = load_known(known_path)
    if recorded is not None:
        real_label, real = _recorded_real(recorded)
        real = {name: fields for name, fields in real.items() if name in names}
    else:
        from bench.ollama.build import require_installed

        click.echo(f"probing the real Ollama ({require_installed().binary}) ...", err=True)
        real_label, real = observe(ollama_target(PROBE_ENV, ProbeModels()), names)
    click.echo("probing bench sim ...", err=True)
    sim_label, sim = observe(sim_target(PROBE_ENV), names)
    rows = compare(sim, real, known)
    machine = f"{os.cpu_count()} CPUs, {platform.platform()}"
    report = document(rows, known, {"sim": sim_label, "real": real_label, "env": PROBE_ENV, "machine": machine})
    write_atomically(out, lambda path: path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8"))
    for line in render(rows):
        click.echo(line)
    click.echo(f"conformance: {out}")
    if any(row.verdict == DIFFERS for row in rows):
        sys.exit(1)
