"""The node side of `bench run --ray`: one server group's cells as a Ray task (`run_group`).

The task is an ordinary bench run restricted to its group's cells (GroupJob.cell_ids) in a
scratch directory on the node, on the driver's clock. Its records go to the driver's Ray queue in
batches; each cell's start, and its end after its last record, go at once, in order on the queue
(bench.run.ray_groups reads them). Server logs, the /api/ps timeline, calibrations and notes come
back with the task's result.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.errors import UsageError
from bench.records import RequestRecord, read_json
from bench.run.observers import CellReport, CellRun, SilentObserver
from bench.run.resolve import RunOptions
from bench.run.runner import LocalExecutor, run_scenario
from bench.scenario import Scenario

# Records are sent to the driver in batches, this often.
BATCH_INTERVAL_S = 0.25
PS_FILE = "ps.parquet"
# A task's scratch run directory: <tmp>/bench-ray-<pid>-<random>; the pid lets the next task on
# the node remove the scratch of a task that was killed (its own cleanup never ran).
SCRATCH_PREFIX = "bench-ray-"


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError as error:
        if error.name != "ray":
            raise
        raise UsageError("--ray needs Ray: pip install 'bench[ray]'") from None
    return ray


@dataclass(frozen=True)
class GroupJob:
    """What a Ray task needs to run one server group (picklable)."""

    scenario: dict[str, Any]
    options: RunOptions  # the driver's options with the driver's t0
    group: int
    cell_ids: frozenset[str]  # the group's cells: the task runs only these


class _Batcher(SilentObserver):
    """The task run's observer (bench.run.observers.RunObserver): buffers its records and puts them
    on the driver's queue every BATCH_INTERVAL_S; a cell's start and end go out at once, after every
    record before them (one order on the queue)."""

    def __init__(self, queue: Any, group: int) -> None:
        self.queue, self.group = queue, group
        self.buffer: list[RequestRecord] = []
        self.lock = threading.Lock()
        # Held across a flush and its put: Queue.put returns once the queue actor holds the item,
        # so whatever is put under it lands in the order it was put.
        self.send_lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def record_seen(self, record: RequestRecord) -> None:
        with self.lock:
            self.buffer.append(record)

    def cell_started(self, run: CellRun) -> None:
        self._send_cell("started", run.cell.cell_id, None)

    async def cell_ended(self, run: CellRun) -> None:
        self._send_cell("ended", run.cell.cell_id, run.report())

    def _send_cell(self, event: str, cell_id: str, report: CellReport | None) -> None:
        """A cell started or ended: sent after its records."""
        with self.send_lock:
            self._flush_locked()
            self.queue.put(("cell", self.group, (event, cell_id, report)))

    def _flush(self) -> None:
        with self.send_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        with self.lock:
            batch, self.buffer = self.buffer, []
        if batch:
            self.queue.put(("records", self.group, batch))

    def _loop(self) -> None:
        while not self.done.wait(BATCH_INTERVAL_S):
            self._flush()

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self._flush()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_dead_scratch(tmp_dir: Path) -> None:
    """Scratch directories of this node's tasks that died (killed: a lost task keeps its server
    logs there until the next task on the node) are removed."""
    for path in tmp_dir.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name.removeprefix(SCRATCH_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def run_group(job: GroupJob, queue: Any) -> dict[str, Any]:
    """The body of one Ray task: run the group's cells here, return what the driver merges."""
    ray = import_ray()
    remove_dead_scratch(Path(tempfile.gettempdir()))
    scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
    node = {"hostname": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(), "task_started_epoch_s": time.time(), "scratch_dir": str(scratch)}
    queue.put(("started", job.group, node))
    batcher = _Batcher(queue, job.group)
    try:
        options = replace(job.options, out_dir=scratch / "run", report=False)
        result = run_scenario(Scenario.model_validate(job.scenario), options, Console(file=io.StringIO()),
                              executor=LocalExecutor(job.cell_ids), observers=(batcher,))
        batcher.close()
        run_dir = result.run_dir
        logs = {path.name: path.read_text(encoding="utf-8", errors="replace")
                for path in run_dir.glob("server-*.log")}
        ps = (run_dir / PS_FILE).read_bytes() if (run_dir / PS_FILE).exists() else None
        return {"node": node, "manifest": read_json(run_dir / "manifest.json"), "logs": logs, "ps": ps,
                "status": result.status}
    finally:
        batcher.done.set()
        shutil.rmtree(scratch, ignore_errors=True)
