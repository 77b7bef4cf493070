"""The cell loop's own features, each an observer (bench.run.observers.RunObserver) with its own
state: the stop rule, the sweep, the progress display, the manifest's write after each cell, study
pruning, and abort_on with the check for a vanished server. `feature_observers` gives them in the
order the loop tells them: the stop rule's verdict is printed before the sweep's stop and the
cell's line, the manifest holds the cell before pruning judges it, and pruning's notes follow the
line of the cell it judged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from bench.load.control import AbortTracker, StopControl
from bench.records import RequestRecord
from bench.run.adaptive import CellStopper
from bench.run.adaptive_study import AdaptiveStudy
from bench.run.manifest_writer import RunState
from bench.run.observers import CellRun, RunObserver, SilentObserver
from bench.run.progress import RunProgress
from bench.run.sweep import SweepTracker

if TYPE_CHECKING:
    from bench.run.runner import CellLoop


class StopRuleFeature(SilentObserver):
    """The adaptive study's stop rule (bench.run.adaptive_study): a cell's limits, its stopper fed
    with the cell's records, the verdict at its end; and every record's span (the target's busy time)."""

    def __init__(self, study: AdaptiveStudy, stop: StopControl, progress: RunProgress) -> None:
        self.study, self.stop, self.progress = study, stop, progress
        self.stopper: CellStopper | None = None

    def cell_started(self, run: CellRun) -> None:
        self.stopper = self.study.stopper(run.enough)
        requests, duration_s = self.study.limits(run.load.requests, run.load.duration_s)
        run.load = replace(run.load, requests=requests, duration_s=duration_s)

    def record_seen(self, record: RequestRecord) -> None:
        if self.study.active:
            self.study.observe(record)
        if self.stopper is not None:
            self.stopper.observe(record)

    async def cell_ended(self, run: CellRun) -> None:
        stopper, self.stopper = self.stopper, None
        if run.ran and run.status != "skipped" and stopper is not None:
            assert run.outcome is not None
            ended_by = self.study.ended_by(run.outcome.complete, self.stop.reason, stopper,
                                           run.load.requests, run.load.duration_s)
            verdict = await self.study.finish_cell(run.cell, stopper, ended_by)
            self.progress.note(f"{run.label}: {verdict.reason}")
        run.stop = self.study.verdicts.get(run.cell.cell_id)


class SweepFeature(SilentObserver):
    """The saturation sweep (bench.run.sweep): a step's measured records; after a step, its rate, or
    the sweep's stop at its SLOs (a note)."""

    def __init__(self, tracker: SweepTracker, state: RunState, progress: RunProgress) -> None:
        self.tracker, self.state, self.progress = tracker, state, progress
        self.running: CellRun | None = None

    def cell_started(self, run: CellRun) -> None:
        self.running = run

    def record_seen(self, record: RequestRecord) -> None:
        if self.running is not None and record.cell_id == self.running.cell.cell_id:
            self.tracker.observe(self.running.cell, record)

    async def cell_ended(self, run: CellRun) -> None:
        self.running = None
        if not run.ran:
            return
        stopped = self.tracker.finished(run.cell)
        if stopped is not None:
            self.state.add_note(stopped)
            self.progress.note(stopped)


class ProgressFeature(SilentObserver):
    """The live display (bench.run.progress): a cell's bar from its load's start, each record, its line at the end."""

    def __init__(self, progress: RunProgress) -> None:
        self.progress = progress

    def load_started(self, run: CellRun) -> None:
        settings = run.cell.settings
        expected = (run.load.requests or 0) * settings.repeat or None
        self.progress.start_cell(run.cell.cell_index, run.label, expected, settings.warmup_requests * settings.repeat)

    def record_seen(self, record: RequestRecord) -> None:
        self.progress.record(record)

    async def cell_ended(self, run: CellRun) -> None:
        if run.ran:
            self.progress.end_cell(run.status)


class PruneFeature(SilentObserver):
    """The study's pruning (bench.run.pruner): after the warmup, a spilled model skips its group; after a
    complete cell, the cells its result makes certain are skipped too (notes)."""

    def __init__(self, study: AdaptiveStudy, progress: RunProgress) -> None:
        self.study, self.progress = study, progress
        self.running: CellRun | None = None
        self.records: list[RequestRecord] = []

    def cell_started(self, run: CellRun) -> None:
        self.running, self.records = run, []

    def record_seen(self, record: RequestRecord) -> None:
        if self.study.pruner is not None and self.running is not None and record.request_index is not None \
                and record.request_index >= 0 and record.cell_id == self.running.cell.cell_id:
            self.records.append(record)  # the cell's own requests (not calibration probes)

    async def load_warm(self, run: CellRun) -> None:
        # The model is loaded now: a server setting that spilled it is skipped from here on.
        assert run.http is not None
        skip = await self.study.check_load(run.cell, run.http, list(run.pending_after))
        if skip is not None:
            run.enough.set()
            self.progress.note(f"skipped: {skip.reason}")

    async def cell_ended(self, run: CellRun) -> None:
        records, self.running, self.records = self.records, None, []
        if run.status != "complete" or run.http is None:
            return
        for skip in await self.study.after_cell(run.cell, records, run.http, list(run.pending_after)):
            self.progress.note(f"skipped: {skip.reason}")


class AbortFeature(SilentObserver):
    """abort_on (bench.load.control.AbortTracker: the run fails) and a server that is gone (the run
    stops, partial) instead of recording a flood of instant failures."""

    def __init__(self, tracker: AbortTracker, stop: StopControl, state: RunState, progress: RunProgress,
                 server_died: Callable[[float], bool]) -> None:
        self.tracker, self.stop, self.state, self.progress = tracker, stop, state, progress
        self.server_died = server_died  # Targets.server_died(wait_s)

    def record_seen(self, record: RequestRecord) -> None:
        if record.request_index is not None and record.request_index < 0:
            return  # a calibration probe: calibration copes with its failures
        reason = self.tracker.observe(record)
        if reason is not None and not self.stop.stopped:
            self.state.failed_reason = reason
            self.stop.request_stop(reason)
            self.progress.note(reason)
        if record.error_class == "disconnected":
            self._check_server_gone(record)

    def _check_server_gone(self, record: RequestRecord) -> None:
        """A managed server that exited is gone; for any target, a refused connection means nothing
        listens any more (a cut stream or a reset alone does not: the server may live on)."""
        refused = (record.error_message or "").startswith("ConnectError")
        # Blocking the loop for up to a second is fine here: refused means the run stops anyway.
        if self.server_died(1.0 if refused else 0.0):
            self.stop.request_stop("the managed server exited during the run")
        elif refused:
            self.stop.request_stop("the server stopped accepting connections during the run")


class ManifestFeature(SilentObserver):
    """manifest.json says where the run stands after each cell that ran (before pruning judges it:
    a run killed then resumes with the cell kept)."""

    def __init__(self, write_manifest: Callable[[str], None]) -> None:
        self.write_manifest = write_manifest  # CellLoop.write_manifest(status)

    async def cell_ended(self, run: CellRun) -> None:
        if run.ran:
            self.write_manifest("running")


def feature_observers(loop: CellLoop) -> tuple[RunObserver, ...]:
    """The loop's features in the order it tells them (the module's docstring says why)."""
    abort_on = loop.run.scenario.abort_on
    abort = AbortTracker(abort_on.error_rate, abort_on.consecutive_failures, abort_on.min_requests)
    return (StopRuleFeature(loop.study, loop.stop, loop.progress),
            SweepFeature(loop.sweep, loop.state, loop.progress),
            ProgressFeature(loop.progress),
            ManifestFeature(loop.write_manifest),
            PruneFeature(loop.study, loop.progress),
            AbortFeature(abort, loop.stop, loop.state, loop.progress, loop.targets.server_died))
