"""The soak benchmark: `bench run`'s own code path at steady load against the simulator for a long
time, sampling the client process's resident memory, to show it stays bounded.

The simulator runs as a child process (target: sim), so the RSS sampled here is the client's
alone: load engine, HTTP client, record writer, progress and telemetry. Memory is called bounded
when the median RSS of the last 10% of the load matches that of the 10%-20% window (the first
10% is start-up: imports, connection pool, allocator arenas filling) within a tolerance.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import UsageError
from bench.numbers import MAX_SECONDS
from bench.records import REQUESTS_JSONL, write_json
from bench.run.runner import RunOptions, RunResult, run_scenario
from bench.scenario import Scenario, seconds_of

SOAK_JSON = "soak.json"
SOAK_PLOT = "soak-rss.png"
# Growth allowed between the two windows: allocator noise and pool churn move RSS by a few MiB;
# a per-request leak of even 100 bytes at 200 req/s adds 70 MiB an hour.
TOLERANCE_FRACTION = 0.05
TOLERANCE_MIN_BYTES = 16 * 2**20


def parse_duration_s(text: str, option: str = "--duration") -> float:
    """`90`, `90s`, `10m`, `1h` -> seconds (at most a week); anything else is a one-line UsageError."""
    try:
        seconds = seconds_of(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= MAX_SECONDS:
        raise UsageError(f"{option} {text!r}: expected a positive duration up to a week, like 90s, 10m or 1h")
    return seconds


@dataclass(frozen=True)
class SoakSettings:
    duration_s: float = 3600.0
    concurrency: int = 16
    speed: float = 20.0  # simulator speed: more requests per second through the client
    sample_every_s: float = 5.0
    model: str = "llama3.2:1b"
    endpoint: str = "native/chat"
    prompt_tokens: int = 128
    max_tokens: int = 64


@dataclass(frozen=True)
class RssSample:
    t_s: float  # since the soak started
    rss_bytes: int
    requests_done: int  # records appended to requests.jsonl so far


@dataclass(frozen=True)
class SoakVerdict:
    bounded: bool
    rss_start_bytes: int  # first sample taken with load running
    rss_end_bytes: int  # last sample taken with load running
    rss_peak_bytes: int  # over the whole soak, end-of-run processing included
    early_window_median_bytes: int  # 10%-20% of the load
    late_window_median_bytes: int  # last 10% of the load
    growth_bytes: int
    tolerance_bytes: int
    growth_bytes_per_1000_requests: float | None
    requests: int
    load_s: float


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)


class RecordCounter:
    """Counts lines appended to requests.jsonl, reading only what is new since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as records:
                records.seek(self.offset)
                new_bytes = records.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(new_bytes)
        self.count += new_bytes.count(b"\n")
        return self.count


class RssSampler(threading.Thread):
    """Samples RSS and the record count every `every_s` until stopped; prints a progress line."""

    def __init__(self, every_s: float, count_records: RecordCounter, console: Console) -> None:
        super().__init__(name="bench-soak-rss", daemon=True)
        self.every_s, self.count_records, self.console = every_s, count_records, console
        self.samples: list[RssSample] = []
        self.started_s = time.monotonic()
        self._stop_event = threading.Event()

    def sample(self) -> RssSample:
        point = RssSample(round(time.monotonic() - self.started_s, 3), rss_bytes(), self.count_records())
        self.samples.append(point)
        return point

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            point = self.sample()
            self.console.print(f"soak {point.t_s:7.0f}s  rss {point.rss_bytes / 2**20:7.1f} MiB  "
                               f"requests {point.requests_done}", highlight=False, markup=False)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


def soak_scenario(settings: SoakSettings) -> Scenario:
    """One closed-loop cell for `duration_s` against the embedded simulator."""
    return Scenario.model_validate({
        "name": "soak",
        "description": "steady load for the soak benchmark (bench soak)",
        "target": "sim",
        "sim": {"speed": settings.speed, "env": {"OLLAMA_NUM_PARALLEL": str(settings.concurrency)}},
        "workload": {"endpoint": settings.endpoint, "model": settings.model, "seed": 1,
                     "prompt": {"tokens": settings.prompt_tokens}, "max_tokens": settings.max_tokens},
        "load": {"concurrency": settings.concurrency, "duration_s": settings.duration_s,
                 "warmup_requests": 0},
    })


def _median(samples: list[RssSample]) -> int:
    return int(statistics.median(s.rss_bytes for s in samples))


def _load_samples(samples: list[RssSample]) -> list[RssSample]:
    """Samples taken while requests were completing: not the start-up idle, and not the end-of-run
    parquet/summary work (a one-off spike, not growth). The first sample that saw the final count
    may already overlap that work, so the window ends just before it."""
    first = next((i for i, s in enumerate(samples) if s.requests_done > 0), len(samples))
    last_count = samples[-1].requests_done if samples else 0
    end = next((i for i, s in enumerate(samples) if s.requests_done == last_count), len(samples))
    return samples[first:end]


def _slope_per_1000(samples: list[RssSample]) -> float | None:
    """Least-squares RSS growth per 1000 requests after the start-up tenth."""
    tail = samples[len(samples) // 10:]
    if len(tail) < 3 or tail[-1].requests_done == tail[0].requests_done:
        return None
    xs = [s.requests_done for s in tail]
    ys = [s.rss_bytes for s in tail]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    variance = sum((x - x_mean) ** 2 for x in xs)
    covariance = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys))
    return covariance / variance * 1000 if variance else None


def judge(samples: list[RssSample]) -> SoakVerdict:
    """Compare the 10%-20% window of the load with its last 10% (see the module docstring)."""
    load = _load_samples(samples)
    if len(load) < 10:
        raise UsageError(f"soak: only {len(load)} RSS samples under load; run longer or sample more "
                         "often (--sample-every)")
    tenth = max(1, len(load) // 10)
    early, late = load[tenth:2 * tenth], load[-tenth:]
    early_median, late_median = _median(early), _median(late)
    growth = late_median - early_median
    tolerance = max(int(early_median * TOLERANCE_FRACTION), TOLERANCE_MIN_BYTES)
    return SoakVerdict(
        bounded=growth <= tolerance, rss_start_bytes=load[0].rss_bytes, rss_end_bytes=load[-1].rss_bytes,
        rss_peak_bytes=max(s.rss_bytes for s in samples), early_window_median_bytes=early_median,
        late_window_median_bytes=late_median, growth_bytes=growth, tolerance_bytes=tolerance,
        growth_bytes_per_1000_requests=_slope_per_1000(load), requests=load[-1].requests_done,
        load_s=load[-1].t_s - load[0].t_s,
    )


def plot_rss(samples: list[RssSample], verdict: SoakVerdict, path: Path) -> None:
    """RSS over time, the two compared windows' medians drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), dpi=110)
    axes = figure.add_subplot()
    minutes = [s.t_s / 60 for s in samples]
    axes.plot(minutes, [s.rss_bytes / 2**20 for s in samples], lw=1.2, color="#1f5fa8", label="client RSS")
    for median, label, style in ((verdict.early_window_median_bytes, "10-20% window median", "--"),
                                 (verdict.late_window_median_bytes, "last 10% median", ":")):
        axes.axhline(median / 2**20, ls=style, lw=1, color="#555", label=label)
    axes.set_xlabel("minutes since start")
    axes.set_ylabel("RSS (MiB)")
    state = "bounded" if verdict.bounded else "GROWING"
    axes.set_title(f"bench soak: client memory {state} "
                   f"({verdict.growth_bytes / 2**20:+.1f} MiB, {verdict.requests} requests)")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def default_out_dir() -> Path:
    return Path("results") / f"soak-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_soak(settings: SoakSettings, out_dir: Path, console: Console) -> tuple[RunResult, SoakVerdict]:
    """Run the soak into out_dir (a run directory, plus soak.json and soak-rss.png)."""
    options = RunOptions(out_dir=out_dir, report=False, sim_speed=settings.speed)
    sampler = RssSampler(settings.sample_every_s, RecordCounter(out_dir / REQUESTS_JSONL), console)
    sampler.sample()
    sampler.start()
    try:
        result = run_scenario(soak_scenario(settings), options, console)
    finally:
        sampler.stop()
    verdict = judge(sampler.samples)
    payload: dict[str, Any] = {
        "settings": asdict(settings), "run_status": result.status, "verdict": asdict(verdict),
        "samples": [asdict(s) for s in sampler.samples],
    }
    write_json(out_dir / SOAK_JSON, payload)
    plot_rss(sampler.samples, verdict, out_dir / SOAK_PLOT)
    return result, verdict
