"""Everything about a run decided once, before its first request: the scenario, then the command
line, then the environment (OLLAMA_HOST, the API key variable), each overriding the last.

`resolve_run` turns a scenario and the command line's RunOptions into a frozen ResolvedRun; the
rest of the run reads only that, and the manifest records it (`ResolvedRun.record`, never the key).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.records.atomic import check_run_dir, make_run_dir
from bench.errors import UsageError
from bench.plan import Cell, Overrides, plan_cells
from bench.workload.prompts import PromptSource, prompt_source
from bench.records import MANIFEST_FILE
from bench.run.checks import check_before_run
from bench.run.resume import ResumePoint
from bench.run.targets import check_ollama_target, check_sim_speed, preflight
from bench.endpoints import resolve_ollama_host
from bench.scenario import Scenario
from bench.secrets import read_api_key

# After the first Ctrl-C / SIGTERM, in-flight requests get this long to finish.
DEFAULT_GRACE_S = 10.0
_SLUG_CHARS = 80

TargetKind = Literal["url", "urls", "sim", "managed", "ollama"]
@dataclass(frozen=True)
class RunOptions:
    """Everything the command line adds to a scenario."""

    scenario_path: Path | None = None
    target: str | None = None  # --target URL|sim|ollama (overrides the scenario)
    out_dir: Path | None = None  # --out DIR (else results/<run-id>)
    results_root: Path = Path("results")
    overrides: Overrides = field(default_factory=Overrides)
    sim_speed: float | None = None  # --sim-speed, for `target: sim`
    baseline: Path | None = None
    grace_s: float = DEFAULT_GRACE_S
    report: bool = True
    resume: ResumePoint | None = None  # --resume RUN_DIR: run only the cells not yet complete
    transport: str = "auto"  # --transport auto|httpx|fast (bench.clients.http.make_http_client)
    adaptive: bool = False  # --adaptive: stop_when and prune, with defaults where the scenario has none
    full_grid: bool = False  # --full-grid: the scenario's stop_when and prune off
    workers: int = 1  # --workers N: client processes per cell (bench.load.workers)
    # The clock's origin (wall time) of a run this one continues: a Ray task's run keeps its
    # driver's (bench.run.ray_groups), so every record shares one time axis.
    t0_epoch_s: float | None = None


@dataclass(frozen=True)
class ResolvedRun:
    """A run as it will be executed; built by `resolve_run` only."""

    scenario: Scenario
    scenario_path: Path | None
    cells: tuple[Cell, ...]  # the plan, in run order (resume: every cell, done or not)
    run_dir: Path
    target_kind: TargetKind  # url: a server we do not own; sim / managed / ollama: bench starts it
    target_url: str | None  # the URL of a `url` target; sim and managed servers get theirs at start
    target_override: str | None  # --target as given (resume re-plans with it)
    sim_speed: float | None
    transport: str  # as asked (auto|httpx|fast); the manifest's `transport` is what measured
    api_key_env: str | None  # where the key came from; the key itself is never recorded
    overrides: Overrides
    resume: ResumePoint | None
    baseline: Path | None
    grace_s: float
    report: bool
    made_run_dir: bool  # bench created run_dir for this run (so may remove it if nothing was measured)
    # Read once here, so a bad prompt file fails before the run directory exists; the only
    # mutable part: its calibrations fill in as the run goes (and are recorded in the manifest).
    prompts: PromptSource = field(repr=False, compare=False)
    api_key: str | None = field(default=None, repr=False, compare=False)
    adaptive: bool = False
    full_grid: bool = False
    workers: int = 1
    t0_epoch_s: float | None = None

    def record(self) -> dict[str, Any]:
        """What manifest.json keeps of the resolution (`options`), so --resume plans the same cells."""
        return {
            "overrides": dataclasses.asdict(self.overrides),
            "target": self.target_override,
            "sim_speed": self.sim_speed,
            "transport": self.transport,
            "api_key_env": self.api_key_env,
            "resumed": self.resume is not None,
            "adaptive": self.adaptive,
            "full_grid": self.full_grid,
            "workers": self.workers,
        }


def resolve_run(scenario: Scenario, options: RunOptions) -> ResolvedRun:
    """Check and resolve a run; the run directory exists afterwards (unless a check failed)."""
    options = _with_resume(options)
    if scenario.server is not None and options.target not in (None, "ollama"):
        raise UsageError("--target: the scenario has a server: block; bench manages that server "
                         "(--target ollama runs the real Ollama with the block's env instead)")
    if scenario.targets is not None and options.target is not None:
        raise UsageError("--target: the scenario lists targets:; edit the list instead")
    if options.adaptive and options.full_grid:
        raise UsageError("--adaptive and --full-grid: choose one")
    if options.workers > 1 and scenario.workload.conversation is not None:
        raise UsageError("--workers: a multi-turn workload keeps each conversation in one process; "
                         "run it without --workers")
    if options.workers > 1 and "trace" in scenario.load.arrival:
        raise UsageError("--workers: a trace is replayed in one process (its conversations and "
                         "timing are one schedule); run it without --workers")
    cells = tuple(plan_cells(scenario, options.overrides))
    api_key = _api_key(scenario.api_key_env)
    check_before_run(scenario, options.baseline)
    prompts = prompt_source(scenario)  # a bad prompt file fails before the run directory
    target = options.target or scenario.target
    kind: TargetKind = "managed" if scenario.server is not None else ("sim" if target == "sim" else "url")
    if target == "ollama":
        kind = "ollama"  # the real `ollama serve` from `bench ollama build`, managed like a server: block
        check_ollama_target(cells)  # not built, or a model it cannot import: before any run directory
    if scenario.targets is not None:
        kind = "urls"  # several existing servers, one group of cells each
    target_url = resolve_ollama_host(target) if kind == "url" else None
    # A resumed run whose cells are all complete only writes its outputs: no server is needed.
    nothing_to_run = options.resume is not None and {c.cell_id for c in cells} <= options.resume.complete_cells
    if target_url is not None and not nothing_to_run:
        preflight(target_url, api_key)  # fail before creating a run directory when there is nothing to measure
    if kind == "urls" and not nothing_to_run:
        for url in scenario.targets or []:
            preflight(resolve_ollama_host(url), api_key)
    check_sim_speed(scenario, options.target, options.sim_speed)
    # A directory bench makes here is removed again when the run measures nothing (a server
    # that never started): a failed attempt should not leave a "failed" run behind.
    made_run_dir = options.resume is None and not (options.out_dir is not None and options.out_dir.exists())
    run_dir = options.resume.run_dir if options.resume is not None else new_run_dir(options, scenario)
    return ResolvedRun(
        scenario=scenario, scenario_path=options.scenario_path, cells=cells, run_dir=run_dir,
        target_kind=kind, target_url=target_url, target_override=options.target, sim_speed=options.sim_speed,
        transport=options.transport, api_key_env=scenario.api_key_env, overrides=options.overrides,
        resume=options.resume, baseline=options.baseline, grace_s=options.grace_s,
        report=options.report, made_run_dir=made_run_dir, prompts=prompts, api_key=api_key,
        adaptive=options.adaptive, full_grid=options.full_grid, workers=options.workers,
        t0_epoch_s=options.t0_epoch_s,
    )


def _with_resume(options: RunOptions) -> RunOptions:
    """--resume: the run's own scenario path, overrides and baseline; the command line wins for
    the target, the simulator's speed and the baseline when it gives them."""
    point = options.resume
    if point is None:
        return options
    stored_baseline, stored_path = point.manifest.baseline, point.manifest.scenario_path
    stored = point.manifest.options
    return dataclasses.replace(
        options,
        # A resumed study keeps its adaptivity: the same stop rule and pruning as it began with.
        adaptive=stored.adaptive, full_grid=stored.full_grid,
        scenario_path=Path(stored_path) if stored_path else None,
        target=options.target or point.target, overrides=point.overrides,
        sim_speed=options.sim_speed or point.sim_speed,
        baseline=options.baseline or (Path(stored_baseline) if stored_baseline else None),
    )


def _api_key(variable: str | None) -> str | None:
    return read_api_key(variable) if variable is not None else None


def new_run_dir(options: RunOptions, scenario: Scenario) -> Path:
    """--out DIR (refused when it holds a run), else results/<stamp>-<scenario name>[-n]."""
    if options.out_dir is not None:
        run_dir = check_run_dir(options.out_dir, "--out")
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        # A directory name is at most 255 bytes: a long scenario name is cut, not a crash.
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario.name).strip("-")[:_SLUG_CHARS] or "run"
        run_dir = options.results_root / f"{stamp}-{slug}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = options.results_root / f"{stamp}-{slug}-{suffix}"
    return make_run_dir(run_dir, "--out" if options.out_dir is not None else "--results")
