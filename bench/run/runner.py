"""A whole run: the run directory, cells in order against the target with telemetry and
progress, interrupts, and the outputs at the end (bench.run.targets, bench.run.manifest and bench.outputs.summary
hold the pieces).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from rich.console import Console

from bench import clients
from bench.clients.base import RequestSpec
from bench.clients.http import make_http_client, resolve_transport
from bench.errors import BenchError, UsageError
from bench.conversations import ConversationMaker
from bench.load import (
    AbortTracker,
    CellLoad,
    CellOutcome,
    Clock,
    ConversationStarter,
    StopControl,
    client_health,
    run_cell_load,
)
from bench.run.manifest import new_manifest, resumed_manifest, run_state
from bench.analysis.metrics import SUMMARY_INPUT_COLUMNS
from bench.analysis.thresholds import evaluate as evaluate_thresholds
from bench.outputs.summary import print_summary, write_kv, write_run_report, write_summary
from bench.plan import Cell, Overrides, plan_cells
from bench.run.progress import RunProgress, busy, describe_cell, varying_settings
from bench.prompts import Calibration, calibrate, nonce
from bench.records import MANIFEST_FILE, SCENARIO_YAML, RecordWriter, RequestRecord, write_json, write_requests_parquet
from bench.run.resume import (
    ResumePoint,
    keep_complete_records,
    merge_telemetry,
    run_options_record,
    stash_telemetry,
)
from bench.scenario import Scenario, resolve_ollama_host, scenario_to_yaml, with_run_settings
from bench.secrets import auth_headers, read_api_key
from bench.run.checks import check_before_run, prompt_source
from bench.run.managed_server import check_models
from bench.run.targets import Targets, check_sim_speed, fetch_version, preflight
from bench.telemetry import TelemetrySession, start_telemetry

# After the first Ctrl-C / SIGTERM, in-flight requests get this long to finish.
DEFAULT_GRACE_S = 10.0
_SLUG_CHARS = 80
# /api/show fields kept in the manifest (the template and modelfile are long and say nothing
# about performance).
_SHOW_KEYS = ("details", "model_info", "capabilities", "parameters")


@dataclass(frozen=True)
class RunOptions:
    """Everything the command line adds to a scenario."""

    scenario_path: Path | None = None
    target: str | None = None  # --target URL|sim (overrides the scenario)
    out_dir: Path | None = None  # --out DIR (else results/<run-id>)
    results_root: Path = Path("results")
    overrides: Overrides = field(default_factory=Overrides)
    sim_speed: float | None = None  # --sim-speed, for `target: sim`
    baseline: Path | None = None
    grace_s: float = DEFAULT_GRACE_S
    report: bool = True
    resume: ResumePoint | None = None  # --resume RUN_DIR: run only the cells not yet complete
    transport: str = "auto"  # --transport auto|httpx|fast (bench.clients.http.make_http_client)


@dataclass
class RunResult:
    run_dir: Path
    status: str  # complete | partial | failed
    summary: pd.DataFrame | None
    manifest: dict[str, Any]

    @property
    def interrupted(self) -> bool:
        return str(self.manifest.get("stop_reason", "")).startswith("interrupted")


def new_run_dir(options: RunOptions, scenario: Scenario) -> Path:
    if options.out_dir is not None:
        run_dir = options.out_dir
        if (run_dir / MANIFEST_FILE).exists():
            raise UsageError(f"--out {run_dir}: already holds a run (manifest.json); choose another")
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        # A directory name is at most 255 bytes: a long scenario name is cut, not a crash.
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario.name).strip("-")[:_SLUG_CHARS] or "run"
        run_dir = options.results_root / f"{stamp}-{slug}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = options.results_root / f"{stamp}-{slug}-{suffix}"
    where = "--out" if options.out_dir is not None else "--results"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".bench-write-check"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise UsageError(f"{where} {run_dir}: cannot create the run directory "
                         f"({error.strerror or error})") from None
    return run_dir


class Run:
    """One execution of a scenario; `execute()` is the whole life of a run directory."""

    def __init__(self, scenario: Scenario, options: RunOptions, console: Console) -> None:
        self.scenario, self.options, self.console = scenario, options, console
        self.cells = plan_cells(scenario, options.overrides)
        self.api_key = self._api_key()
        check_before_run(scenario, options.baseline)
        self.prompts = prompt_source(scenario)  # a bad prompt file fails before the run directory
        target = options.target or scenario.target
        if scenario.server is None and target != "sim":
            # Fail before creating a run directory when there is nothing to measure.
            preflight(resolve_ollama_host(target), self.api_key)
        check_sim_speed(scenario, options.target, options.sim_speed)
        resume = options.resume
        # A directory bench makes here is removed again when the run measures nothing (a server
        # that never started): a failed attempt should not leave a "failed" run behind.
        self.made_run_dir = resume is None and not (options.out_dir is not None and options.out_dir.exists())
        self.run_dir = resume.run_dir if resume is not None else new_run_dir(options, scenario)
        self.targets = Targets(scenario, options.target, options.sim_speed, self.run_dir)
        self.clock = Clock() if resume is None else _continued_clock(resume.manifest)
        self.stop = StopControl()
        self.notes: list[str] = []
        self.outcomes: list[CellOutcome] = []
        self.cell_status: dict[str, str] = {cell.cell_id: "pending" for cell in self.cells}
        self.cell_server: dict[str, int | None] = {}
        if resume is not None:
            self._pick_up(resume)
        self.abort = AbortTracker(scenario.abort_on.error_rate,
                                  scenario.abort_on.consecutive_failures,
                                  scenario.abort_on.min_requests)
        self.failed_reason: str | None = None
        self.telemetry: TelemetrySession | None = None
        self.manifest: dict[str, Any] = {}
        varying = varying_settings([cell.settings for cell in self.cells])
        self.labels = {cell.cell_id: describe_cell(cell.settings, varying) for cell in self.cells}
        self.progress = RunProgress(console, len(self.cells))

    def _pick_up(self, resume: ResumePoint) -> None:
        """Carry the earlier sessions' cells, servers and calibrations into this one."""
        stored = {cell["cell_id"]: cell for cell in resume.manifest["cells"]}
        for cell_id in resume.complete_cells:
            self.cell_status[cell_id] = "complete"
            self.cell_server[cell_id] = stored[cell_id].get("server_id")
        # Server ids (and server-<n>.log names) continue where the last session stopped.
        self.targets.servers = list(resume.manifest.get("servers") or [])
        self.prompts.calibrations.update(resume.calibrations())
        self.notes.extend(note for note in resume.manifest.get("notes") or [] if note not in self.notes)

    def _api_key(self) -> str | None:
        name = self.scenario.api_key_env
        if name is None:
            return None
        return read_api_key(name)

    # --- manifest ----------------------------------------------------------------------------

    def _write_manifest(self, status: str, ended: bool = False) -> None:
        self.manifest.update(run_state(
            status=status, ended=ended, cells=self.cells, cell_status=self.cell_status,
            cell_server=self.cell_server, labels=self.labels, servers=self.targets.servers,
            health=client_health(self.outcomes), calibrations=self.prompts.calibrations,
            notes=self.notes, failure=self.failed_reason, stop_reason=self.stop.reason,
        ))
        write_json(self.run_dir / MANIFEST_FILE, self.manifest)

    def _initial_manifest(self) -> None:
        if self.options.resume is not None:
            self._resumed_manifest(self.options.resume)
            return
        options = self.options
        self.manifest = new_manifest(
            run_id=self.run_dir.name, t0_epoch_s=self.clock.t0_epoch_s,
            target_base_url=self.targets.base_url, target_kind=self.targets.kind,
            scenario=self.scenario, scenario_path=options.scenario_path,
            transport=options.transport, baseline=options.baseline,
            options_record=run_options_record(options.overrides, options.target, options.sim_speed),
        )
        self._write_manifest("running")
        # The scenario with the command line's settings in it: `bench run DIR/scenario.yaml` reruns it.
        ran = with_run_settings(self.scenario, target=options.target, sim_speed=options.sim_speed,
                                **dataclasses.asdict(options.overrides))
        (self.run_dir / SCENARIO_YAML).write_text(scenario_to_yaml(ran), encoding="utf-8")

    def _resumed_manifest(self, resume: ResumePoint) -> None:
        """The earlier manifest with this session added; unfinished cells' records set aside."""
        rerun = [c.cell_id for c in self.cells if self.cell_status[c.cell_id] != "complete"]
        self.manifest = resumed_manifest(resume.manifest, rerun)
        moved = keep_complete_records(self.run_dir, resume.complete_cells)
        if moved:
            self.notes.append(f"resume: {moved} records of unfinished cells moved to "
                              "requests.superseded.jsonl; those cells were run again")
        stash_telemetry(self.run_dir)
        self._write_manifest("running")

    # --- signals -----------------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        installed = []

        def on_signal(signum: int) -> None:
            name = signal.Signals(signum).name
            if not self.stop.stopped:
                self.stop.request_stop(f"interrupted ({name})")
                self.progress.note(f"{name}: no new requests; waiting up to {self.options.grace_s:.0f}s "
                                   "for those in flight (again to stop now); finish the run later with "
                                   f"`bench run --resume {self.run_dir}`")
                loop.call_later(self.options.grace_s, self.stop.abort.set)
            else:
                self.stop.request_abort(f"interrupted ({name})")

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or no signal support: run without
        return installed

    # --- the run -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        self._initial_manifest()
        status = "failed"
        try:
            status = _run_async(self._run_cells())
        except BaseException as error:
            if self.failed_reason is None:
                self.failed_reason = str(error) or type(error).__name__
            if isinstance(error, KeyboardInterrupt):
                status = "partial"
                self.stop.reason = self.stop.reason or "interrupted"
            else:
                if self._measured_nothing():
                    raise self._without_run_dir(error) from None
                # The error itself is the one line the user sees; the run dir keeps what there is.
                self._finish("failed", quiet=True)
                raise
        return self._finish(status)

    def _measured_nothing(self) -> bool:
        requests = self.run_dir / "requests.jsonl"
        return self.made_run_dir and not (requests.exists() and requests.stat().st_size > 0)

    def _without_run_dir(self, error: BaseException) -> BaseException:
        """Remove the run directory of a run that measured nothing; the error says so instead of
        pointing at a log inside it (its last lines are in the message already)."""
        self._stop_telemetry()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if not isinstance(error, BenchError):
            return error
        text = re.sub(r"\s*\(log [^)]*\)", "", str(error))
        try:
            return type(error)(f"{text} (nothing was measured: {self.run_dir} removed)")
        except TypeError:  # an error class with its own constructor: keep it as it was
            return error

    async def _run_cells(self) -> str:
        loop = asyncio.get_running_loop()
        installed = self._install_signals(loop)
        writer = RecordWriter(self.run_dir)
        http: httpx.AsyncClient | None = None
        try:
            for cell in self.cells:
                if self.stop.stopped:
                    break
                if self.cell_status[cell.cell_id] == "complete":
                    continue  # done by an earlier session (--resume)
                if self.targets.needs_start(cell):
                    self.progress.status(f"starting {self.targets.describe_start(cell)}…")
                base_url, fresh = await asyncio.to_thread(self.targets.ensure, cell)
                if fresh:
                    if http is not None:
                        await http.aclose()
                    http = await self._connect(base_url)
                assert http is not None
                self.cell_server[cell.cell_id] = self.targets.server_id
                await self._run_cell(cell, http, writer)
            if self.failed_reason:
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
            await asyncio.to_thread(self._stop_telemetry)
            await asyncio.to_thread(self.targets.stop)

    async def _connect(self, base_url: str) -> httpx.AsyncClient:
        """Check a (new) server: version, models; start telemetry on the first; make the client."""
        self.progress.status(f"checking {base_url}: version and models…")
        version = await fetch_version(base_url, self.api_key)
        self.manifest["target"].update(base_url=base_url, version=version)
        models = sorted({cell.settings["model"] for cell in self.cells})
        shown = await asyncio.to_thread(check_models, base_url, models, api_key=self.api_key)
        self.manifest["models"] = {
            name: {key: info[key] for key in _SHOW_KEYS if key in info} for name, info in shown.items()
        }
        self._start_or_move_telemetry(base_url)
        self._write_manifest("running")
        max_in_flight = max((cell.settings["concurrency"] or 256) for cell in self.cells)
        transport = resolve_transport(self.options.transport, base_url)
        self.manifest["transport"] = transport  # what measured, not what was asked ("auto")
        return make_http_client(base_url, self.api_key, max_in_flight,
                                timeout_s=self.scenario.load.timeout_s, transport=transport)

    def _start_or_move_telemetry(self, base_url: str) -> None:
        if self.telemetry is not None:
            self.telemetry.set_target(base_url, self.targets.pids())
            return
        self.telemetry = start_telemetry(self.run_dir, self.clock.t0, base_url, self.targets.pids(),
                                         ps_headers=auth_headers(self.api_key))
        self.manifest["gpu"] = self.telemetry.gpu_info

    def _template(self, cell: Cell) -> RequestSpec:
        """The cell's request fields; the prompt and ids are filled in per request."""
        workload = self.scenario.workload
        return RequestSpec(
            cell_id=cell.cell_id, request_index=0, surface=cell.surface,  # type: ignore[arg-type]
            endpoint=cell.endpoint, model=cell.settings["model"], prompt="",  # type: ignore[arg-type]
            max_tokens=cell.settings["max_tokens"], num_ctx=cell.settings["num_ctx"],
            keep_alive=cell.settings["keep_alive"], temperature=cell.settings["temperature"],
            seed=workload.seed, format=cell.request_format, system=workload.prompt.system,
            store_text=self.scenario.store_text, timeout_s=self.scenario.load.timeout_s,
        )

    def _spec_factory(self, cell: Cell):  # noqa: ANN202 - closure type spelled in load.SpecFactory
        key = (cell.settings["model"], cell.surface, cell.endpoint)
        template = self._template(cell)
        shared_tokens = cell.settings.get("shared_prefix_tokens")
        cache = cell.settings.get("prompt_cache", "reuse")

        def make_spec(repeat: int, request_index: int, phase: str, scheduled_s: float) -> RequestSpec:
            prompt = self.prompts.prompt_for(key, cell.cell_id, repeat, request_index,
                                             cell.settings["prompt_tokens"])
            system = template.system
            if shared_tokens or cache == "defeat":
                request_nonce = nonce(self.scenario.workload.seed, cell.cell_id, repeat, request_index)
                system = self.prompts.system_for(key, shared_tokens, cache, request_nonce)
            return dataclasses.replace(
                template, request_index=request_index, prompt=prompt, system=system,
                repeat=repeat, phase=phase, scheduled_s=scheduled_s,  # type: ignore[arg-type]
            )

        return make_spec

    def _conversation_starter(self, cell: Cell) -> ConversationStarter | None:
        """Starts the cell's conversations, when the workload is multi-turn."""
        conversation = self.scenario.workload.conversation
        if conversation is None:
            return None
        turns = cell.settings.get("turns")
        maker = ConversationMaker(
            prompts=self.prompts, spec=conversation, template=self._template(cell),
            key=(cell.settings["model"], cell.surface, cell.endpoint),
            turns=turns if isinstance(turns, int) else None,
            prompt_tokens=cell.settings["prompt_tokens"],
            shared_prefix_tokens=cell.settings.get("shared_prefix_tokens"),
            cache=cell.settings.get("prompt_cache", "reuse"),
            file_conversations=self.prompts.file_conversations,
        )
        return maker.start

    async def _calibrate(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        """Fit chars/token once per (model, surface, endpoint), with two warmup-phase probes."""
        key = (cell.settings["model"], cell.surface, cell.endpoint)
        if key in self.prompts.calibrations or not self.prompts.synthetic:
            return
        if not self.scenario.workload.prompt.calibrate:
            self.prompts.calibrations[key] = Calibration(source="default (calibrate: false)")
            return
        probe_index = iter((-2, -1))  # negative request_index marks calibration probes
        self.progress.status(f"calibrating prompt length for {'/'.join(key)}…")

        async def send_probe(text: str) -> RequestRecord:
            spec = RequestSpec(
                cell_id=cell.cell_id, request_index=next(probe_index), surface=cell.surface,  # type: ignore[arg-type]
                endpoint=cell.endpoint, model=cell.settings["model"], prompt=text,  # type: ignore[arg-type]
                phase="warmup", max_tokens=1, num_ctx=cell.settings["num_ctx"],
                keep_alive=cell.settings["keep_alive"], store_text=self.scenario.store_text,
                timeout_s=self.scenario.load.timeout_s, scheduled_s=self.clock.now_s(),
            )
            record = await clients.send(http, spec, self.clock.t0)
            writer.append(record)
            return record

        calibration = await calibrate(send_probe, self.scenario.workload.seed)
        self.prompts.calibrations[key] = calibration
        if calibration.source != "fitted":
            self.notes.append(f"prompt calibration {'/'.join(key)}: {calibration.source}")

    async def _run_cell(self, cell: Cell, http: httpx.AsyncClient, writer: RecordWriter) -> None:
        await self._calibrate(cell, http, writer)
        if cell.gap_s > 0 and not self.stop.stopped:
            try:
                await asyncio.wait_for(self.stop.stop_dispatch.wait(), timeout=cell.gap_s)
            except TimeoutError:
                pass
        if self.stop.stopped:
            return
        settings = cell.settings
        load = CellLoad(
            arrival=settings["arrival"], concurrency=settings["concurrency"],
            rate_rps=settings["rate_rps"], requests=settings["requests"],
            duration_s=settings["duration_s"], warmup_requests=settings["warmup_requests"],
            repeats=settings["repeat"], seed=self.scenario.workload.seed, schedule_key=cell.cell_id,
        )

        def on_record(record: RequestRecord) -> None:
            writer.append(record)
            self.progress.record(record)
            reason = self.abort.observe(record)
            if reason is not None and not self.stop.stopped:
                self.failed_reason = reason
                self.stop.request_stop(reason)
                self.progress.note(reason)
            if record.error_class == "disconnected":
                self._check_server_gone(record)

        async def send(spec: RequestSpec) -> RequestRecord:
            return await clients.send(http, spec, self.clock.t0)

        expected = (settings["requests"] or 0) * settings["repeat"] or None
        warmup = (settings["warmup_requests"] or 0) * settings["repeat"]
        self.progress.start_cell(cell.cell_index, self.labels[cell.cell_id], expected, warmup)
        outcome = await run_cell_load(load, self._spec_factory(cell), send, on_record,
                                      self.clock, self.stop, self._conversation_starter(cell))
        self.outcomes.append(outcome)
        self.cell_status[cell.cell_id] = "complete" if outcome.complete else "partial"
        self.progress.end_cell(self.cell_status[cell.cell_id])
        self._write_manifest("running")

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

    # --- the end -----------------------------------------------------------------------------

    def _stop_telemetry(self) -> None:
        if self.telemetry is None:
            return
        try:
            self.telemetry.stop()  # idempotent
            self.notes.extend(note for note in self.telemetry.notes if note not in self.notes)
        except Exception as error:  # noqa: BLE001 - telemetry must not cost the measurements
            self.notes.append(f"telemetry stop failed: {error}")

    def _finish(self, status: str, quiet: bool = False) -> RunResult:
        self._stop_telemetry()
        if self.options.resume is not None:
            merge_telemetry(self.run_dir)
        # Only what the summary reads: all of a long run's records in pandas are hundreds of MiB.
        with busy(self.console, "writing requests.parquet and the summary") if not quiet else _nothing():
            measured = write_requests_parquet(self.run_dir, SUMMARY_INPUT_COLUMNS, phase="measure")
            summary = write_summary(self.run_dir, measured, self.scenario.slo_values() or None,
                                    {cell.cell_id: cell.settings for cell in self.cells}, self.labels,
                                    self.scenario.percentile_values())
        verdicts = []
        if self.scenario.thresholds:
            verdicts = evaluate_thresholds(summary if summary is not None else pd.DataFrame(),
                                           self.scenario.threshold_limits(), self.labels)
            self.manifest["thresholds"] = [verdict.to_dict() for verdict in verdicts]
        self._write_manifest(status, ended=True)
        if quiet:
            return RunResult(self.run_dir, status, summary, self.manifest)
        print_summary(self.console, self.run_dir, status, self.failed_reason or self.stop.reason,
                      summary, {cell.cell_id: cell.cell_index for cell in self.cells}, self.labels,
                      client_health(self.outcomes), self.notes, dict(self.scenario.slos or {}),
                      tuple(self.scenario.percentiles) if self.scenario.percentiles else None)
        for verdict in verdicts:
            self.console.print(verdict.line(), highlight=False, soft_wrap=True, markup=False)
        write_kv(self.run_dir, self.console)
        if self.options.report and summary is not None:
            with busy(self.console, "drawing report.html"):
                write_run_report(self.run_dir, self.console)
        return RunResult(self.run_dir, status, summary, self.manifest)


@contextlib.contextmanager
def _nothing() -> Any:
    yield


def _continued_clock(manifest: dict[str, Any]) -> Clock:
    """A clock whose t0 is the original run's, so every session's times share one axis."""
    t0_epoch_s = manifest.get("t0_epoch_s")
    if not isinstance(t0_epoch_s, (int, float)):
        return Clock()
    return Clock(time.monotonic() - (time.time() - float(t0_epoch_s)))


def _run_async(coroutine: Any) -> Any:
    """asyncio.run, on uvloop when it is installed (less client CPU per request)."""
    try:
        import uvloop  # optional: not every platform has it (Windows)
    except ModuleNotFoundError as error:
        if error.name != "uvloop":
            raise
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def run_scenario(scenario: Scenario, options: RunOptions, console: Console | None = None) -> RunResult:
    """Run a scenario end to end; returns where the results are and how it ended.

    The CLI passes its `output_console()` (160 columns when stdout is not a terminal); without a
    console, progress and the summary go to a plain rich Console.
    """
    run = Run(scenario, options, console if console is not None else Console())
    return run.execute()
