"""`bench soak`: steady load against the simulator for a long time; is client memory bounded?"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.cli import params

from bench.cli.console import output_console

EXIT_GROWING = 1  # memory grew past the tolerance
EXIT_INTERRUPTED = 130


@click.command("soak")
@click.option("--duration", "duration", default="1h", show_default=True,
              help="How long to hold the load: 90s, 10m, 1h.")
@click.option("--concurrency", type=params.CONCURRENCY, default=16, show_default=True,
              help="Closed-loop workers (and the simulator's NUM_PARALLEL).")
@click.option("--speed", type=params.SPEED, default=20.0, show_default=True,
              help="Simulator speed: higher sends more requests per second through the client.")
@click.option("--sample-every", "sample_every", default="5s", show_default=True,
              help="RSS sampling interval.")
@click.option("--endpoint", default="native/chat", show_default=True, help="surface/endpoint to load.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Run directory (default results/soak-<time>).")
def soak_command(duration: str, concurrency: int, speed: float, sample_every: str, endpoint: str,
                 out_dir: Path | None) -> None:
    """Soak benchmark: hold steady load on `bench sim`, sample this client's RSS, judge growth."""
    from bench.run.soak import SOAK_JSON, SOAK_PLOT, SoakSettings, default_out_dir, parse_duration_s, run_soak

    settings = SoakSettings(duration_s=parse_duration_s(duration), concurrency=concurrency, speed=speed,
                            sample_every_s=parse_duration_s(sample_every, "--sample-every"), endpoint=endpoint)
    out_dir = out_dir or default_out_dir()
    console = output_console()
    result, verdict = run_soak(settings, out_dir, console)
    mib = 2**20
    slope = verdict.growth_bytes_per_1000_requests
    click.echo(
        f"soak {'bounded' if verdict.bounded else 'GROWING'}: RSS start {verdict.rss_start_bytes / mib:.1f} MiB, "
        f"end {verdict.rss_end_bytes / mib:.1f} MiB, peak {verdict.rss_peak_bytes / mib:.1f} MiB; "
        f"window medians {verdict.early_window_median_bytes / mib:.1f} -> "
        f"{verdict.late_window_median_bytes / mib:.1f} MiB ({verdict.growth_bytes / mib:+.1f}, "
        f"tolerance {verdict.tolerance_bytes / mib:.0f}); {verdict.requests} requests in "
        f"{verdict.load_s:.0f}s" + (f"; slope {slope / 1024:+.1f} KiB per 1000 requests" if slope is not None else "")
    )
    click.echo(f"soak: {out_dir / SOAK_JSON}, {out_dir / SOAK_PLOT}")
    if result.status == "partial" and result.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if not verdict.bounded:
        sys.exit(EXIT_GROWING)


def register(group: click.Group) -> None:
    group.add_command(soak_command)
