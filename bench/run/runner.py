"""The cell loop: a resolved run's cells in order against the target, with telemetry, progress,
interrupts and dead-server detection. `run_scenario` is a whole run: resolve, loop, finish.

The pieces live beside it: bench.run.resolve (what a run is), bench.run.targets (the server),
bench.workload.specs (the requests), bench.run.manifest_writer (the one manifest writer), bench.run.finish (the end).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx
from rich.console import Console

from bench import clients
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client, resolve_transport
from bench.errors import BenchError
from bench.load.arrival_shapes import shape_for
from bench.load.control import AbortTracker, StopControl
from bench.load.cell import CellLoad, run_cell_load
from bench.load.health import CellOutcome
from bench.load.clock import Clock, run_async
from bench.plan import Cell, cell_labels
from bench.records import MANIFEST_FILE, REQUESTS_JSONL, RecordWriter, RequestRecord
from bench.run.finish import RunResult, discard_empty_run, finish_run, write_scenario_yaml
from bench.run.managed_server import check_models
from bench.run.manifest_writer import ManifestWriter, RunState, new_manifest, resumed_manifest
from bench.run.observers import CellEvent, RunObserver
from bench.run.progress import RunProgress
from bench.run.resolve import DEFAULT_GRACE_S, ResolvedRun, RunOptions, resolve_run
from bench.run.resume import keep_complete_records, stash_telemetry
from bench.load.workers import CellWorkerPlan, run_cell_in_workers, split_load
from bench.run.adaptive_study import AdaptiveStudy
from bench.run.sweep import SweepTracker, sweep_slos
from bench.run.targets import Targets, check_openai_models, identify_server
from bench.scenario import Scenario
from bench.secrets import auth_headers
from bench.workload.specs import calibrate_cell, calibration_key, calibration_needed, cell_requests
from bench.telemetry import TelemetrySession, start_telemetry

__all__ = ["DEFAULT_GRACE_S", "CellLoop", "RunOptions", "RunResult", "run_scenario"]

# /api/show fields kept in the manifest (the template and modelfile are long and say nothing
# about performance).
_SHOW_KEYS = ("details", "model_info", "capabilities", "parameters")


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
        self.observers = tuple(observers)
        self.run = run
        self.state = RunState(cells=run.cells, labels=cell_labels(run.cells),
                              cell_status={cell.cell_id: "pending" for cell in run.cells})
        self.targets = Targets(run)
        # A resumed run, and a Ray task's run, keep the original run's t0: one time axis.
        self.clock = _continued_clock(run.resume.manifest.t0_epoch_s if run.resume is not None else run.t0_epoch_s)
        self.stop = StopControl()
        self.prompts = run.prompts
        abort_on = run.scenario.abort_on
        self.abort = AbortTracker(abort_on.error_rate, abort_on.consecutive_failures, abort_on.min_requests)
        self.telemetry: TelemetrySession | None = None
        self.progress = RunProgress(console, len(run.cells))
        self.manifest = ManifestWriter(run.run_dir / MANIFEST_FILE)
        self.sweep = SweepTracker(run.scenario.load.sweep, sweep_slos(run.scenario))
        self.study = AdaptiveStudy.for_run(run.scenario, list(run.cells), run.adaptive, run.full_grid)
        self.manifest.annotators.append(self.study.annotate)
        self._cell_records: dict[str, list[RequestRecord]] = {}

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
        stored = {cell.cell_id: cell for cell in resume.manifest.cells}
        self.study.pick_up(resume.manifest)
        for cell_id in resume.complete_cells:
            # complete, or skipped by a pruned study (decided, not interrupted)
            self.state.cell_status[cell_id] = stored[cell_id].status
            self.state.cell_server[cell_id] = stored[cell_id].server_id
            node = stored[cell_id].node
            if node is not None:  # measured on a Ray node in an earlier session
                self.state.cell_node[cell_id] = node
        self.prompts.calibrations.update(resume.calibrations())
        for note in resume.manifest.notes:
            self.state.add_note(note)
        rerun = [c.cell_id for c in self.run.cells if c.cell_id not in resume.complete_cells]
        self.manifest.manifest = resumed_manifest(resume.manifest, rerun)
        moved = keep_complete_records(self.run.run_dir, resume.complete_cells)
        if moved:
            self.state.add_note(f"resume: {moved} records of unfinished cells moved to "
                                "requests.superseded.jsonl; those cells were run again")
        for settled in self.sweep.pick_up(self.run.cells, stored, resume.complete_cells,
                                          self.run.run_dir / REQUESTS_JSONL):
            self.state.settle(settled)
        stash_telemetry(self.run.run_dir)
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
                    self._skip(cell)
                    continue
                if self.targets.needs_start(cell):
                    self.progress.status(f"starting {self.targets.describe_start(cell)}…")
                base_url, fresh = await asyncio.to_thread(self.targets.ensure, cell)
                if fresh:
                    if http is not None:
                        await http.aclose()
                    http = await self._connect(base_url)
                assert http is not None
                self.state.cell_server[cell.cell_id] = self.targets.server_id
                prepared = self._sweep_step(cell)
                if prepared is None:
                    continue
                cell = prepared
                await self._run_cell(cell, http, writer)
                if self.state.cell_status[cell.cell_id] == "complete":
                    await self._prune_after(cell, http)
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

    def _skip(self, cell: Cell) -> None:
        self.state.cell_status[cell.cell_id] = "skipped"
        self._tell_cell("ended", cell)

    def _sweep_step(self, cell: Cell) -> Cell | None:
        """The cell to run (a sweep's rate step with its rate, set now), or None: skipped, as the
        sweep stopped at its SLOs."""
        prepared = self.sweep.prepare(cell)
        if isinstance(prepared, str):
            self._skip(cell)
            return None
        if prepared is not cell:
            self.state.settle(prepared)
            self.state.labels[cell.cell_id] += f" rps={prepared.settings.rate_rps:g}"
        return prepared

    async def _connect(self, base_url: str) -> httpx.AsyncClient:
        """Check a (new) server: what it is, its models; start telemetry on the first; make the client."""
        self.progress.status(f"checking {base_url}: version and models…")
        identity = await identify_server(base_url, self.run.api_key)
        ollama_note = self.targets.ollama_note()
        if ollama_note is not None:
            self.state.add_note(ollama_note)
        target = self.manifest.manifest.target
        target.base_url, target.version, target.server, target.api = (base_url, identity.version,
                                                                      identity.name, identity.api)
        target.speed_basis = identity.speed_basis
        if self.run.target_kind == "urls":
            self.manifest.manifest.targets = self.manifest.manifest.targets or {}
            self.manifest.manifest.targets[base_url] = {
                "version": identity.version, "server": identity.name}
        models = sorted({str(cell.settings.model) for cell in self.run.cells})
        if identity.is_ollama:
            shown = await asyncio.to_thread(check_models, base_url, models, api_key=self.run.api_key)
        else:
            # Not Ollama: /api/show does not exist; the OpenAI model list is all there is to check.
            check_openai_models(base_url, identity, models, {cell.surface for cell in self.run.cells})
            shown = {}
            self.state.add_note(f"{identity.name} is not Ollama: /api/version and /api/ps probes skipped")
        self.manifest.manifest.models = {
            name: {key: info[key] for key in _SHOW_KEYS if key in info} for name, info in shown.items()
        }
        self._start_or_move_telemetry(base_url if identity.is_ollama else None)
        max_in_flight = max(cell.settings.in_flight_cap for cell in self.run.cells)
        transport = resolve_transport(self.run.transport, base_url)
        self.manifest.manifest.transport = transport  # what measured, not what was asked ("auto")
        self.write_manifest("running")
        return make_http_client(base_url, self.run.api_key, max_in_flight,
                                timeout_s=self.run.scenario.load.timeout_s, transport=transport)

    def _start_or_move_telemetry(self, base_url: str | None) -> None:
        if self.telemetry is not None:
            self.telemetry.set_target(base_url, self.targets.pids())
            return
        self.telemetry = start_telemetry(self.run.run_dir, self.clock.t0, base_url, self.targets.pids(),
                                         ps_headers=auth_headers(self.run.api_key))
        self.manifest.manifest.gpu = self.telemetry.gpu_info

    async def _calibrate(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        async def send_probe(spec: RequestSpec) -> RequestRecord:
            record = await clients.send(http, spec, self.clock.t0)
            writer.append(record)
            self._record_seen(record)
            return record

        if calibration_needed(cell, self.run.scenario, self.prompts):
            self.progress.status(f"calibrating prompt length for {'/'.join(calibration_key(cell))}…")
        calibration = await calibrate_cell(cell, self.run.scenario, self.prompts, send_probe, self.clock.now_s)
        if calibration is not None and calibration.source not in ("fitted", "default (calibrate: false)"):
            self.state.add_note(f"prompt calibration {'/'.join(calibration_key(cell))}: {calibration.source}")

    async def _run_cell(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        self._tell_cell("started", cell)
        await self._calibrate(cell, http, writer)
        if cell.gap_s > 0 and not self.stop.stopped:
            try:
                await asyncio.wait_for(self.stop.stop_dispatch.wait(), timeout=cell.gap_s)
            except TimeoutError:
                pass
        if self.stop.stopped:
            return

        stopper = self.study.stopper()
        load = _cell_load(cell, self.run.scenario)
        requests, duration_s = self.study.limits(load.requests, load.duration_s)
        load = dataclasses.replace(load, requests=requests, duration_s=duration_s)
        cell_records: list[RequestRecord] = []
        keep = self.study.pruner is not None

        def on_record(record: RequestRecord) -> None:
            writer.append(record)
            self.sweep.observe(cell, record)
            self._record_seen(record)
            if stopper is not None:
                stopper.observe(record)
            if keep:
                cell_records.append(record)
            self.observe(record)

        async def send(spec: RequestSpec) -> RequestRecord:
            self.progress.request_sent()  # the live view's in-flight count
            try:
                return await clients.send(http, spec, self.clock.t0)
            finally:
                self.progress.request_done()

        enough = stopper.done if stopper is not None else asyncio.Event()

        async def after_warmup() -> None:
            # The model is loaded now: a server setting that spilled it is skipped from here on.
            skip = await self.study.check_load(cell, http, self._pending_after(cell))
            if skip is not None:
                enough.set()
                self.progress.note(f"skipped: {skip.reason}")

        settings = cell.settings
        expected = (requests or 0) * settings.repeat or None
        warmup = settings.warmup_requests * settings.repeat
        self.progress.start_cell(cell.cell_index, self.state.labels[cell.cell_id], expected, warmup)
        if self.run.workers > 1:  # --workers N: the cell's load over N client processes
            outcome = await run_cell_in_workers(self._worker_plans(cell, load, http), self.clock.t0,
                                                on_record, self.stop, enough)
        else:
            outcome = await run_cell_load(load, cell_requests(cell, self.run.scenario, self.prompts), send,
                                          on_record, self.clock, self.stop, enough=enough, ready=after_warmup)
        self.state.outcomes.append(outcome)
        status = "complete" if outcome.complete else "partial"
        if self.study.skip_reason(cell) is not None:
            status = "skipped"
        elif stopper is not None:
            ended_by = self.study.ended_by(outcome.complete, self.stop.reason, stopper, requests, duration_s)
            verdict = await self.study.finish_cell(cell, stopper, ended_by)
            self.progress.note(f"{self.state.labels[cell.cell_id]}: {verdict.reason}")
        self._cell_records[cell.cell_id] = cell_records
        self.state.cell_status[cell.cell_id] = status
        stopped = self.sweep.finished(cell)
        if stopped is not None:
            self.state.add_note(stopped)
            self.progress.note(stopped)
        self.progress.end_cell(status)
        self.write_manifest("running")
        self._tell_cell("ended", cell, outcome)

    def _tell_cell(self, event: CellEvent, cell: Cell, outcome: CellOutcome | None = None) -> None:
        """The observers hear each cell start and end (after the cell's last record): a Ray task's
        driver, so a task lost later still leaves the cells it finished finished (bench.run.ray_task)."""
        if not self.observers:
            return
        details: dict[str, Any] = {}
        if event == "ended":
            server_id = self.state.cell_server.get(cell.cell_id)
            details = {"status": self.state.cell_status[cell.cell_id],
                       "stop": self.study.verdicts.get(cell.cell_id),
                       "skip_reason": self.study.skip_reason(cell),
                       "server": next((dict(s) for s in self.targets.servers if s.get("server_id") == server_id),
                                      None),
                       "outcome": outcome}  # the client's CPU and dispatch lags, for client health
        for observer in self.observers:
            observer.cell_event(event, cell.cell_id, details)

    def _record_seen(self, record: RequestRecord) -> None:
        """Every record of the run, once written: the study's busy time, then the observers."""
        if self.study.active:
            self.study.observe(record)
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

    def _pending_after(self, cell: Cell) -> list[Cell]:
        return [c for c in self.run.cells if c.cell_index > cell.cell_index
                and self.state.cell_status[c.cell_id] == "pending"]

    async def _prune_after(self, cell: Cell, http: httpx.AsyncClient) -> None:
        records = self._cell_records.pop(cell.cell_id, [])
        for skip in await self.study.after_cell(cell, records, http, self._pending_after(cell)):
            self.progress.note(f"skipped: {skip.reason}")

    def conclude(self) -> None:
        """Before the run's end is written: the study's lines (skips, unmet cells, busy time) as notes."""
        for note in self.study.notes(self.state.labels):
            self.state.add_note(note)

    def observe(self, record: RequestRecord) -> None:
        """Per record: progress, abort_on, and whether the server is gone."""
        self.progress.record(record)
        reason = self.abort.observe(record)
        if reason is not None and not self.stop.stopped:
            self.state.failed_reason = reason
            self.stop.request_stop(reason)
            self.progress.note(reason)
        if record.error_class == "disconnected":
            self._check_server_gone(record)

    def _check_server_gone(self, record: RequestRecord) -> None:
        """Stop (partial) when the server is gone, instead of recording a flood of instant failures.

        A managed server that exited is gone; for any target, a refused connection means nothing
        listens any more (a cut stream or a reset alone does not: the server may live on).
        """
        refused = (record.error_message or "").startswith("ConnectError")
        # Blocking the loop for up to a second is fine here: refused means the run stops anyway.
        if self.targets.server_died(wait_s=1.0 if refused else 0.0):
            self.stop.request_stop("the managed server exited during the run")
        elif refused:
            self.stop.request_stop("the server stopped accepting connections during the run")

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
