"""The cell loop: a resolved run's cells in order against the target. Per cell it is thin: start
the cell, calibrate, wait its gap, run its load (here, or over --workers client processes), end it;
its observers (bench.run.observers) hear each step in one order, its own features first
(bench.run.cell_observers: stop rule, sweep, progress, the manifest's write, pruning, abort_on and a
vanished server). Where the cells run is the executor's: LocalExecutor here, or bench.run.ray_groups'
RayExecutor. `run_scenario` is a whole run: resolve, loop, finish.

The pieces live beside it: bench.run.resolve (what a run is), bench.run.targets (the server),
bench.run.connect (a new server checked), bench.workload.specs (the requests),
bench.run.manifest_writer (the one manifest writer), bench.run.finish (the end).
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import httpx
from rich.console import Console

from bench import clients
from bench.clients.base import RequestSpec
from bench.errors import BenchError
from bench.load.arrival_shapes import shape_for
from bench.load.control import StopControl
from bench.load.cell import CellLoad, run_cell_load
from bench.load.health import CellOutcome
from bench.load.clock import Clock, run_async
from bench.plan import Cell, cell_labels
from bench.records import MANIFEST_FILE, RecordWriter, RequestRecord
from bench.run.finish import RunResult, discard_empty_run, finish_run, write_scenario_yaml
from bench.run.manifest_writer import ManifestWriter, RunState, new_manifest, resumed_manifest
from bench.run.cell_observers import feature_observers
from bench.run.observers import CellRun, RunObserver
from bench.run.progress import RunProgress
from bench.run.resolve import DEFAULT_GRACE_S, ResolvedRun, RunOptions, resolve_run
from bench.run.resume import pick_up_session
from bench.run.connect import connect_server
from bench.load.workers import CellWorkerPlan, run_cell_in_workers, split_load
from bench.run.adaptive_study import AdaptiveStudy
from bench.run.sweep import SweepTracker, sweep_slos
from bench.run.targets import Targets
from bench.scenario import Scenario
from bench.workload.specs import calibrate_cell, calibration_key, calibration_needed, cell_requests
from bench.telemetry import TelemetrySession

__all__ = ["DEFAULT_GRACE_S", "CellLoop", "RunOptions", "RunResult", "run_scenario"]

class CellExecutor(Protocol):
    """Where a run's cells are measured: here, one after another (LocalExecutor), or each server
    group as a Ray task (bench.run.ray_groups.RayExecutor, with its own options). Within a cell,
    --workers N spreads the load over client processes (bench.load.workers) with either executor."""

    async def run_cells(self, loop: CellLoop) -> str: ...


class LocalExecutor:
    """The cells one after another in this process, against servers it starts or is given;
    `only_cells`: just these (a Ray task's server group, bench.run.ray_task)."""

    def __init__(self, only_cells: frozenset[str] | None = None) -> None:
        self.only_cells = only_cells

    async def run_cells(self, loop: CellLoop) -> str:
        return await loop.run_cells_here(self.only_cells)


class CellLoop:
    """Runs a resolved run's cells; owns the clock, the stop control and the manifest's state."""

    def __init__(self, run: ResolvedRun, console: Console, executor: CellExecutor | None = None,
                 observers: Sequence[RunObserver] = ()) -> None:
        self.executor: CellExecutor = executor if executor is not None else LocalExecutor()
        self.run = run
        self.state = RunState(cells=run.cells, labels=cell_labels(run.cells),
                              cell_status={cell.cell_id: "pending" for cell in run.cells})
        self.targets = Targets(run)
        # A resumed run, and a Ray task's run, keep the original run's t0: one time axis.
        self.clock = _continued_clock(run.resume.manifest.t0_epoch_s if run.resume is not None else run.t0_epoch_s)
        self.stop = StopControl()
        self.prompts = run.prompts
        self.telemetry: TelemetrySession | None = None
        self.progress = RunProgress(console, len(run.cells))
        self.manifest = ManifestWriter(run.run_dir / MANIFEST_FILE)
        self.sweep = SweepTracker(run.scenario.load.sweep, sweep_slos(run.scenario))
        self.study = AdaptiveStudy.for_run(run.scenario, list(run.cells), run.adaptive, run.full_grid)
        self.manifest.annotators.append(self.study.annotate)
        # The loop's own features first, in their order (bench.run.cell_observers), then the given ones.
        self.observers: tuple[RunObserver, ...] = (*feature_observers(self), *observers)

    # --- manifest ----------------------------------------------------------------------------

    def write_manifest(self, status: str, ended: bool = False) -> None:
        self.manifest.write(status, self.state, self.targets.servers, self.prompts.calibrations,
                            self.stop.reason, ended=ended)

    def begin(self) -> None:
        """The first manifest write: a new run's facts, or the earlier sessions' state picked up."""
        resume = self.run.resume
        if resume is None:
            self.manifest.manifest = new_manifest(self.run, self.clock.t0_epoch_s)
            self.write_manifest("running")
            write_scenario_yaml(self.run)
            return
        rerun = [c.cell_id for c in self.run.cells if c.cell_id not in resume.complete_cells]
        self.manifest.manifest = resumed_manifest(resume.manifest, rerun)
        pick_up_session(self, resume)
        self.write_manifest("running")

    # --- signals -----------------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed: list[int] = []

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if not self.stop.stopped:
                self.stop.request_stop(f"interrupted ({name})")
                self.progress.note(f"{name}: no new requests; waiting up to {self.run.grace_s:.0f}s "
                                   "for those in flight (again to stop now); finish the run later with "
                                   f"`bench run --resume {self.run.run_dir}`")
                loop.call_later(self.run.grace_s, self.stop.abort.set)
            else:
                self.stop.request_abort(f"interrupted ({name})")

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no signal support: run without
        return installed

    # --- the loop ----------------------------------------------------------------------------

    async def run_cells(self) -> str:
        """Every cell not yet complete, by the run's executor; the run's status (complete, partial, failed)."""
        return await self.executor.run_cells(self)

    async def run_cells_here(self, only_cells: frozenset[str] | None = None) -> str:
        """Every cell not yet complete (of `only_cells`, when given), in order, in this process."""
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop)
        writer = RecordWriter(self.run.run_dir)
        http: httpx.AsyncClient | None = None
        try:
            for cell in self.run.cells:
                if self.stop.stopped:
                    break
                if self.state.cell_status[cell.cell_id] in ("complete", "skipped"):
                    continue  # done by an earlier session (--resume)
                if only_cells is not None and cell.cell_id not in only_cells:
                    continue  # another Ray task's group (bench.run.ray_groups)
                if self.study.skip_reason(cell) is not None:
                    await self._skip(cell)
                    continue
                http = await self._server_for(cell, http)
                prepared = await self._sweep_step(cell)
                if prepared is not None:
                    await self._run_cell(prepared, http, writer)
            if self.state.failed_reason:
                return "failed"
            return "partial" if self.stop.stopped else "complete"
        finally:
            self.progress.close()
            if http is not None:
                await http.aclose()
            writer.close()
            for signum in installed:
                loop.remove_signal_handler(signum)
            # Telemetry first: polling a server that is being stopped only records failed polls.
            await asyncio.to_thread(self.stop_telemetry)
            await asyncio.to_thread(self.targets.stop)

    async def _server_for(self, cell: Cell, http: httpx.AsyncClient | None) -> httpx.AsyncClient:
        """The cell's server started if need be, and a client for it (the same one while it stays)."""
        if self.targets.needs_start(cell):
            self.progress.status(f"starting {self.targets.describe_start(cell)}…")
        base_url, fresh = await asyncio.to_thread(self.targets.ensure, cell)
        if fresh:
            if http is not None:
                await http.aclose()
            http = await connect_server(self, base_url)
        assert http is not None
        self.state.cell_server[cell.cell_id] = self.targets.server_id
        return http

    async def _skip(self, cell: Cell) -> None:
        """A cell skipped before it ran (pruned, or after its sweep stopped): its end alone is told."""
        self.state.cell_status[cell.cell_id] = "skipped"
        await self._tell_end(CellRun(cell, self.state.labels[cell.cell_id], _cell_load(cell, self.run.scenario),
                                     status="skipped", skip_reason=self.study.skip_reason(cell)))

    async def _sweep_step(self, cell: Cell) -> Cell | None:
        """The cell to run (a sweep's rate step with its rate, set now), or None: skipped, as the
        sweep stopped at its SLOs."""
        prepared = self.sweep.prepare(cell)
        if isinstance(prepared, str):
            await self._skip(cell)
            return None
        if prepared is not cell:
            self.state.settle(prepared)
            self.state.labels[cell.cell_id] += f" rps={prepared.settings.rate_rps:g}"
        return prepared

    async def _calibrate(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        async def send_probe(spec: RequestSpec) -> RequestRecord:
            record = await clients.send(http, spec, self.clock.t0)
            writer.append(record)
            self.record_seen(record)
            return record

        if calibration_needed(cell, self.run.scenario, self.prompts):
            self.progress.status(f"calibrating prompt length for {'/'.join(calibration_key(cell))}…")
        calibration = await calibrate_cell(cell, self.run.scenario, self.prompts, send_probe, self.clock.now_s)
        if calibration is not None and calibration.source not in ("fitted", "default (calibrate: false)"):
            self.state.add_note(f"prompt calibration {'/'.join(calibration_key(cell))}: {calibration.source}")

    async def _run_cell(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        """Start the cell, calibrate, wait its gap, run its load, end it; the observers hear each step."""
        run = CellRun(cell, self.state.labels[cell.cell_id], _cell_load(cell, self.run.scenario), http,
                      pending_after=tuple(c for c in self.run.cells if c.cell_index > cell.cell_index
                                          and self.state.cell_status[c.cell_id] == "pending"))
        for observer in self.observers:
            observer.cell_started(run)
        await self._calibrate(cell, http, writer)
        if cell.gap_s > 0 and not self.stop.stopped:
            try:
                await asyncio.wait_for(self.stop.stop_dispatch.wait(), timeout=cell.gap_s)
            except TimeoutError:
                pass
        if self.stop.stopped:
            return
        for observer in self.observers:
            observer.load_started(run)
        run.outcome = await self._load(run, writer)
        self.state.outcomes.append(run.outcome)
        run.skip_reason = self.study.skip_reason(cell)  # pruned while it ran (a spilled model)
        run.status = ("skipped" if run.skip_reason is not None else
                      "complete" if run.outcome.complete else "partial")
        self.state.cell_status[cell.cell_id] = run.status
        await self._tell_end(run)

    async def _load(self, run: CellRun, writer: RecordWriter) -> CellOutcome:
        """The cell's load, here or over --workers N client processes; each record written, then told."""
        def on_record(record: RequestRecord) -> None:
            writer.append(record)
            self.record_seen(record)

        assert run.http is not None
        if self.run.workers > 1:
            return await run_cell_in_workers(self._worker_plans(run.cell, run.load, run.http), self.clock.t0,
                                             on_record, self.stop, run.enough)
        http = run.http

        async def send(spec: RequestSpec) -> RequestRecord:
            self.progress.request_sent()  # the live view's in-flight count
            try:
                return await clients.send(http, spec, self.clock.t0)
            finally:
                self.progress.request_done()

        async def warm() -> None:
            for observer in self.observers:
                await observer.load_warm(run)

        return await run_cell_load(run.load, cell_requests(run.cell, self.run.scenario, self.prompts), send,
                                   on_record, self.clock, self.stop, enough=run.enough, ready=warm)

    async def _tell_end(self, run: CellRun) -> None:
        """Every observer hears the cell's end, in order (a Ray task's driver after the loop's own, so a
        task lost later still leaves the cells it finished finished: bench.run.ray_task)."""
        server_id = self.state.cell_server.get(run.cell.cell_id)
        run.server = next((dict(s) for s in self.targets.servers if s.get("server_id") == server_id), None)
        for observer in self.observers:
            await observer.cell_ended(run)

    def record_seen(self, record: RequestRecord) -> None:
        """Every record of the run, once written (probes too; on a Ray driver, the tasks'): each observer in order."""
        for observer in self.observers:
            observer.record_seen(record)

    def _worker_plans(self, cell: Cell, load: CellLoad, http: httpx.AsyncClient) -> list[CellWorkerPlan]:
        """The cell's load in --workers shares, each with what a fresh process needs."""
        scenario = self.run.scenario.model_dump(mode="json")
        transport = self.manifest.manifest.transport or self.run.transport
        return [CellWorkerPlan(scenario=scenario, cell=cell, load=share,
                               calibrations=dict(self.prompts.calibrations),
                               base_url=str(http.base_url).rstrip("/"), api_key=self.run.api_key,
                               transport=transport)
                for share in split_load(load, self.run.workers)]

    def conclude(self) -> None:
        """Before the run's end is written: the study's lines (skips, unmet cells, busy time) as notes."""
        for note in self.study.notes(self.state.labels):
            self.state.add_note(note)

    def stop_telemetry(self) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry.stop()  # idempotent
            for note in self.telemetry.notes:
                self.state.add_note(note)
        except Exception as error:  # noqa: BLE001 - telemetry must not cost the measurements
            self.state.add_note(f"telemetry stop failed: {error}")


def _cell_load(cell: Cell, scenario: Scenario) -> CellLoad:
    return CellLoad.for_cell(cell.settings, schedule_key=cell.cell_id, seed=scenario.workload.seed,
                             shape=shape_for(cell.settings, scenario.load))


def _continued_clock(t0_epoch_s: float | None) -> Clock:
    """A clock whose t0 is the original run's (wall time `t0_epoch_s`), so every session's times
    share one axis; a fresh clock when there is none."""
    if t0_epoch_s is None:
        return Clock()
    return Clock(time.monotonic() - (time.time() - t0_epoch_s))


def run_scenario(scenario: Scenario, options: RunOptions, console: Console | None = None,
                 executor: CellExecutor | None = None, observers: Sequence[RunObserver] = ()) -> RunResult:
    """Run a scenario end to end; returns where the results are and how it ended.

    The CLI passes its `output_console()` (160 columns when stdout is not a terminal); without a
    console, progress and the summary go to a plain rich Console. `--ray` runs come through
    bench.run.ray_groups.run_on_ray, which passes its RayExecutor (so this module never imports
    Ray's: no import circle); `observers` hear every record and cell (bench.run.observers).
    """
    console = console if console is not None else Console()
    run = resolve_run(scenario, options)
    loop = CellLoop(run, console, executor, observers)
    try:
        loop.begin()
    except BaseException as error:  # a full disk at the first manifest write: nothing measured yet
        if discard_empty_run(loop):
            raise _without_run_dir(error, loop.run.run_dir) from None
        raise
    try:
        status = run_async(loop.run_cells())
    except KeyboardInterrupt as error:
        loop.state.failed_reason = loop.state.failed_reason or str(error) or "KeyboardInterrupt"
        loop.stop.reason = loop.stop.reason or "interrupted"
        status = "partial"
    except BaseException as error:
        if loop.state.failed_reason is None:
            loop.state.failed_reason = str(error) or type(error).__name__
        if discard_empty_run(loop):
            raise _without_run_dir(error, loop.run.run_dir) from None
        # The error itself is the one line the user sees; the run dir keeps what there is.
        try:
            finish_run(loop, "failed", console, quiet=True)
        except (OSError, BenchError):
            # The same full disk again (the manifest, parquet or summary): the first error is the
            # one to show; the manifest stays as its last whole write, which --resume picks up.
            pass
        raise
    return finish_run(loop, status, console)


def _without_run_dir(error: BaseException, run_dir: Path) -> BaseException:
    """The error of a run whose directory was removed: it says so instead of pointing at a log
    inside it (its last lines are in the message already)."""
    if not isinstance(error, BenchError):
        return error
    text = re.sub(r"\s*\(log [^)]*\)", "", str(error))
    try:
        return type(error)(f"{text} (nothing was measured: {run_dir} removed)")
    except TypeError:  # an error class with its own constructor: keep it as it was
        return error
