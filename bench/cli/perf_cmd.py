"""`bench perf`: benchmark bench's own client (throughput, CPU, memory, streams, timing accuracy)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bench.cli import params

from bench.cli.console import output_console

if TYPE_CHECKING:
    from rich.table import Table


def register(group: click.Group) -> None:
    group.add_command(perf)


@click.command()
@click.option("--surface", type=click.Choice(["native", "openai", "both"]), default=None,
              help="Which client surface to measure [default: both; native with --quick].")
@click.option("--quick", is_flag=True,
              help="Under a minute: the fast transport on the native surface (unless --transport / "
                   "--surface say otherwise), short steps, fewer levels, no 256-stream accuracy level.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory for perf.json.")
@click.option("--accuracy-itl-ms", type=params.BoundedFloat(0.0, 60_000.0, low_open=True), default=20.0, show_default=True,
              help="Inter-token delay the emitter uses for the accuracy runs.")
@click.option("--transport", type=click.Choice(["httpx", "fast", "both"]), default=None,
              help="httpx: httpx's own transport; fast: bench.clients.transport (bench run --transport) "
                   "[default: both; fast with --quick].")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Client processes for the throughput ramp (streams split across them, each "
                   "pinned to a CPU the emitter does not use).")
def perf(surface: str | None, quick: bool, out_dir: Path, accuracy_itl_ms: float, transport: str | None,
         workers: int) -> None:
    """Benchmark bench's own client against a lean emitter pinned to another CPU.

    Ctrl-C or SIGTERM stops it and still writes what was measured to perf.json ("partial": true).
    """
    from bench.records.atomic import check_output_dir, check_output_file
    from bench.perf.suite import PerfOptions, run_perf, summarize
    from bench.records import write_json

    # Before measuring: a refused --out would otherwise throw away minutes of measurement.
    path = check_output_file(check_output_dir(out_dir, "--out") / "perf.json", "--out")

    surface = surface or ("native" if quick else "both")
    transport = transport or ("fast" if quick else "both")
    # SIGTERM unwinds like Ctrl-C: the emitter and worker processes are stopped on the way out.
    received: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    console = output_console()
    surfaces = ("native", "openai") if surface == "both" else (surface,)
    options = PerfOptions(surfaces=surfaces, quick=quick,  # type: ignore[arg-type]
                          accuracy_itl_ms=accuracy_itl_ms,
                          transports=("httpx", "fast") if transport == "both" else (transport,),
                          workers=workers)
    result: dict[str, Any] = {}
    try:
        run_perf(options, lambda line: console.print(f"[dim]…[/dim] {line}", highlight=False), result)
    except KeyboardInterrupt:
        result["partial"] = True
        result["interrupted"] = "SIGTERM" if received else "SIGINT"
        if result.get("throughput"):
            result["summary"] = summarize(result)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
        console.print(f"interrupted ({result['interrupted']}): wrote what was measured to {path} (partial)",
                      highlight=False, soft_wrap=True, markup=False)
        sys.exit(128 + (signal.SIGTERM if received else signal.SIGINT))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    console.print(summary_table(result))
    console.print(f"wrote {path}")


def summary_table(result: dict[str, Any]) -> Table:
    from rich.table import Table

    machine = result["machine"]
    load = result.get("load_average_end") or machine["load_average"]
    table = Table(title=f"bench perf — {machine['cpu_model']}, {machine['cpu_count']} cores "
                        f"(load average {load[0]:.1f} at the end), "
                        f"Python {machine['python']}, uvloop {'on' if machine['uvloop'] else 'off'}, "
                        f"{result.get('workers', 1)} client process(es)")
    table.add_column("measure")
    columns = [(transport, surface) for transport, by_surface in result["throughput"].items()
               for surface in by_surface]
    for transport, surface in columns:
        table.add_column(f"{surface} ({transport})", justify="right")

    def row(label: str, values: list[Any]) -> None:
        table.add_row(label, *["—" if value is None else str(value) for value in values])

    best = [result["throughput"][t][s]["best"] for t, s in columns]
    row("best req/s (32-token streams)", [f"{b['rps']:.0f} @ c={b['concurrency']}" for b in best])
    row("streamed tokens/s", [f"{b['tokens_per_s']:.0f}" for b in best])
    row("client / emitter CPU share at best", [f"{b['cpu_fraction']:.0%} / "
                                               f"{b.get('emitter_cpu_fraction', 0):.0%}" for b in best])
    row("client CPU µs / request", [b["cpu_us_per_request"] for b in best])
    row("client CPU µs / token", [b["cpu_us_per_token"] for b in best])
    row("memory KiB / held stream", [result["held_streams"][t][s]["kib_per_stream"] for t, s in columns])
    row("max clean concurrent streams (tried)",
        [f"{result['held_streams'][t][s]['max_clean_streams']} "
         f"({max(r['streams'] for r in result['held_streams'][t][s]['levels'])})" for t, s in columns])
    def accuracy_rows(title: str, levels: tuple[str, ...], pick) -> None:  # noqa: ANN001
        for level in levels:
            cells = []
            for transport, surface in columns:
                errors = result["accuracy"][transport][surface]["levels"].get(level)
                figures = None if errors is None else pick(errors)
                cells.append(None if not figures or figures.get("n") == 0 else
                             f"{figures['p50_ms']:.3f} / {figures['p99_ms']:.3f} / {figures['max_ms']:.3f}")
            if any(cell is not None for cell in cells):  # levels not run (--quick) get no row
                row(f"{title} ms p50/p99/max @ {level}", cells)

    every_level = ("1", "64", "256", "64-staggered", "256-staggered")
    accuracy_rows("TTFT error", every_level, lambda errors: errors["ttft_error"])
    accuracy_rows("ITL |error|", every_level, lambda errors: errors["itl_abs_error"])
    accuracy_rows("send stamp → emitter read", ("256", "256-staggered"), lambda errors: errors.get("request_lag"))
    targets = {transport: figures["targets"] for transport, figures in (result.get("summary") or {}).items()}
    for key, label in TARGETS:
        row(f"target: {label}", [_verdict(targets.get(transport, {}).get(key)) for transport, _ in columns])
    table.caption = ("targets (bench's own, issue 8): ✓ met, ✗ missed, not measured: that level was not run "
                     "(--quick skips the 256-stream accuracy level). A loaded machine (see the load average) "
                     "misses targets a quiet one meets.")
    return table


# Targets of the whole transport, judged over every surface measured (bench.perf.suite.summarize).
TARGETS = (("rps_1000", "≥ 1000 req/s"), ("streams_1024", "≥ 1024 clean concurrent streams"),
           ("ttft_p99_1ms_at_256", "TTFT error p99 ≤ 1 ms at 256 streams"))


def _verdict(met: bool | None) -> str:
    return "not measured" if met is None else ("✓ met" if met else "✗ missed")
