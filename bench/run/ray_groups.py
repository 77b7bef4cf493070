"""`bench run SCENARIO --ray [ADDRESS]`: every server group (the cells that share one managed
server) runs as a Ray task on a node with what the scenario's `placement` asks for; groups run
concurrently; records stream back to the driver into one run directory with one manifest.

On the node, the task (bench.run.ray_task) is an ordinary bench run restricted to its group's
cells in a scratch directory, on the driver's clock (t0 from the driver's epoch time, so every
node's records share one axis to within the hosts' clock sync), starting its managed server
there. Records reach the driver through a Ray queue in small batches, and after a cell's
last record, word that the cell ended (its status, stop verdict, skip, server); the rest (server
logs, /api/ps timeline, calibrations, notes) comes back with the task's result. A task that dies
(node lost, worker killed) keeps the cells it had finished; the cell it was running is partial,
the ones after it not run, and `bench run --resume RUN_DIR` runs those like any interrupted run.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from bench.errors import UsageError
from bench.processes import is_loopback
from bench.records.manifest import Manifest
from bench.plan import Cell
from bench.records import RecordWriter
from bench.records.atomic import write_text_atomically
from bench.run.listeners import descendants, non_loopback_listeners
from bench.run.observers import CellReport
from bench.run.ray_task import BATCH_INTERVAL_S, PS_FILE, GroupJob, import_ray, run_group
from bench.run.resolve import RunOptions
from bench.run.runner import CellLoop, RunResult, run_scenario
from bench.scenario import Scenario


class RayExecutor:
    """Hands each server group of the cell loop to a Ray task; the rest of the run is the loop's.
    `address`: the Ray cluster's (--ray ADDRESS); None starts a local one."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address
        self.tasks: dict[int, dict[str, Any]] = {}  # server group -> its task's node and lifetime
        self.earlier_tasks: list[dict[str, Any]] = []
        self.in_flight: dict[int, str] = {}  # server group -> the cell its task has begun, not ended
        self.ended: dict[str, CellReport] = {}  # cell_id -> what its task said at the cell's end
        self._ps_tables: list[pa.Table] = []

    def _attach(self, loop: CellLoop) -> None:
        self.loop = loop
        # A resumed run keeps the tasks of its earlier sessions in the manifest.
        resume = loop.run.resume
        self.earlier_tasks = list((resume.manifest.ray or {}).get("tasks") or []) if resume is not None else []
        loop.manifest.annotators.append(self._annotate_tasks)

    def _annotate_tasks(self, manifest: Manifest) -> None:
        tasks = [{"group": group, **task} for group, task in sorted(self.tasks.items())]
        manifest.ray = {"address": self.address or "local", "tasks": self.earlier_tasks + tasks}

    def _groups(self) -> dict[int, list[Cell]]:
        groups: dict[int, list[Cell]] = {}
        for cell in self.loop.run.cells:
            if self.loop.state.cell_status[cell.cell_id] not in ("complete", "skipped"):
                groups.setdefault(cell.server_group, []).append(cell)
        return groups

    def _task_options(self) -> RunOptions:
        """What the run on the node is asked: this run's settings and the driver's clock."""
        run = self.loop.run
        return RunOptions(target=run.target_override, overrides=run.overrides, sim_speed=run.sim_speed,
                          grace_s=run.grace_s, transport=run.transport, adaptive=run.adaptive,
                          full_grid=run.full_grid, workers=run.workers, t0_epoch_s=self.loop.clock.t0_epoch_s)

    async def run_cells(self, loop: CellLoop) -> str:
        self._attach(loop)
        ray = import_ray()
        with _ray_session(ray, self.address) as queue_cls:
            queue = queue_cls()
            writer = RecordWriter(self.loop.run.run_dir)
            try:
                return await self._dispatch(ray, queue, writer)
            finally:
                writer.close()
                self.loop.progress.close()
                self._write_ps()

    async def _dispatch(self, ray: Any, queue: Any, writer: RecordWriter) -> str:
        placement = self.loop.run.scenario.placement
        check_placement(placement.resources, placement.num_cpus, ray.cluster_resources(),
                        self.address or "local")
        task = ray.remote(run_group).options(num_cpus=placement.num_cpus, resources=placement.resources or None,
                                             max_retries=0)
        scenario = self.loop.run.scenario.model_dump(mode="json")
        pending: dict[Any, tuple[int, list[Cell]]] = {}
        for group, cells in self._groups().items():
            job = GroupJob(scenario, self._task_options(), group, frozenset(c.cell_id for c in cells))
            pending[task.remote(job, queue)] = (group, cells)
        self.loop.progress.note(f"ray: {len(pending)} server group(s) submitted to "
                                f"{self.address or 'a local Ray cluster'}")
        lost = False
        while pending:
            self._drain(queue, writer)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0)
            if not done:
                await asyncio.sleep(BATCH_INTERVAL_S)
                continue
            group, cells = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except Exception as error:  # noqa: BLE001 - a lost node or a killed worker: cells partial
                self._drain(queue, writer)
                self.tasks.setdefault(group, {})["ended_epoch_s"] = time.time()
                self._lost(group, cells, error)
                self.loop.write_manifest("running")
                lost = True
                continue
            self._drain(queue, writer)
            self.tasks.setdefault(group, {})["ended_epoch_s"] = time.time()
            self._merge(cells, result)
            self.loop.write_manifest("running")
        self._drain(queue, writer)
        if self.loop.state.failed_reason:
            return "failed"
        return "partial" if self.loop.stop.stopped or lost else "complete"

    def _drain(self, queue: Any, writer: RecordWriter) -> None:
        cells_ended = False
        while not queue.empty():
            kind, group, payload = queue.get_nowait()
            if kind == "cell":
                cells_ended = self._cell_event(group, *payload) or cells_ended
                continue
            if kind == "started":
                self.tasks.setdefault(group, {}).update(node=payload, started_epoch_s=payload["task_started_epoch_s"])
                for cell in self._groups().get(group, []):
                    self.loop.state.cell_node[cell.cell_id] = payload
                self.loop.progress.note(f"ray: group {group} started on {payload['hostname']}")
                continue
            for record in payload:
                writer.append(record)
                self.loop.record_seen(record)
        if cells_ended:  # the records before it are written already (unbuffered, bench.records)
            self.loop.write_manifest("running")

    def _cell_event(self, group: int, event: str, cell_id: str, report: CellReport | None) -> bool:
        """A task began or finished a cell; True when one finished (the manifest says so at once)."""
        if event == "started" or report is None:
            self.in_flight[group] = cell_id
            return False
        if self.in_flight.get(group) == cell_id:
            del self.in_flight[group]
        self.ended[cell_id] = report
        self.loop.state.cell_status[cell_id] = report.status
        if report.outcome is not None:
            self.loop.state.outcomes.append(report.outcome)
        self.loop.study.take_up(cell_id, report.stop, report.skip_reason)
        return True

    def _lost(self, group: int, cells: list[Cell], error: BaseException) -> None:
        """A task died: the cells it finished stay finished (their records and end had arrived); the
        cell it was running is partial, the rest were not run; --resume runs exactly those."""
        node = self.tasks.get(group, {}).get("node") or {}
        lost = f"ray: the task of server group {group} on {node.get('hostname') or 'its node'} was lost " \
               f"({type(error).__name__})"
        in_flight = self.in_flight.pop(group, None)
        finished = [cell for cell in cells if cell.cell_id in self.ended]
        self._keep_servers(finished, node)
        partial = not_run = 0
        for cell in cells:
            if cell.cell_id in self.ended:
                continue
            if cell.cell_id == in_flight:
                self.loop.state.cell_status[cell.cell_id] = "partial"
                self.loop.state.cell_reason[cell.cell_id] = f"{lost} while this cell was running"
                partial += 1
            else:
                self.loop.state.cell_status[cell.cell_id] = "pending"
                self.loop.state.cell_reason[cell.cell_id] = f"{lost} before this cell began"
                self.loop.state.cell_node.pop(cell.cell_id, None)  # no node measured it
                not_run += 1
        note = (f"{lost}: {len(finished)} of its {len(cells)} cell(s) had finished and are kept, {partial} partial, "
                f"{not_run} not run; `bench run --resume {self.loop.run.run_dir}` runs those")
        if node.get("scratch_dir"):
            note += (f" (its server logs stay in {node['scratch_dir']} on {node.get('hostname')} until the next "
                     "--ray task there)")
        self.loop.state.add_note(note)
        self.loop.progress.note(note)
        self.loop.stop.reason = self.loop.stop.reason or "a Ray task was lost"

    def _keep_servers(self, finished: list[Cell], node: dict[str, Any]) -> None:
        """The servers of a lost task's finished cells, as their ends described them (the logs
        stayed on the node in the task's scratch directory)."""
        driver_ids: dict[int, int] = {}
        for cell in finished:
            server = self.ended[cell.cell_id].server
            if server is None:
                continue
            if server["server_id"] not in driver_ids:
                driver_ids[server["server_id"]] = len(self.loop.targets.servers)
                self.loop.targets.servers.append({**server, "server_id": len(self.loop.targets.servers),
                                                  "log": None, "node": node})
            self.loop.state.cell_server[cell.cell_id] = driver_ids[server["server_id"]]

    def _merge(self, cells: list[Cell], result: dict[str, Any]) -> None:
        """One group's results into the driver's run: cell states, servers and logs, telemetry."""
        manifest = Manifest.model_validate(result["manifest"])
        offset = len(self.loop.targets.servers)
        for server in manifest.servers:
            log_name = f"server-{offset + server.server_id}.log"
            text = result["logs"].get(server.log or "", "")
            # Redacted here too (write_text_atomically): the node's copier redacts with the key the
            # node read, but the driver's run directory must not depend on every node's bench.
            write_text_atomically(self.loop.run.run_dir / log_name, text)
            self.loop.targets.servers.append({**server.model_dump(mode="json"),
                                              "server_id": offset + server.server_id,
                                              "log": log_name, "node": result["node"]})
        by_id = {cell.cell_id: cell for cell in manifest.cells}
        for cell in cells:
            stored = by_id.get(cell.cell_id)
            self.loop.state.cell_status[cell.cell_id] = stored.status if stored is not None else "partial"
            server_id = stored.server_id if stored is not None else None
            self.loop.state.cell_server[cell.cell_id] = None if server_id is None else offset + server_id
            self.loop.state.cell_node[cell.cell_id] = result["node"]
            if stored is not None and stored.settings.rate_rps != cell.settings.rate_rps:
                # A sweep's rate step: its rate was set on the node, while it ran.
                self.loop.state.settle(replace(cell, settings=stored.settings))
            if stored is not None:
                self.loop.study.take_up(cell.cell_id, stored.stop, stored.skip_reason)
        self.loop.study.earlier_skips.extend((manifest.adaptive or {}).get("skips") or [])
        # What the task's own run learnt about its server: version, models, transport, calibration.
        driver = self.loop.manifest.manifest
        if manifest.targets:
            driver.targets = {**(driver.targets or {}), **manifest.targets}
        driver.models.update(manifest.models)
        if manifest.transport:
            driver.transport = manifest.transport
        if manifest.target.version and not driver.target.version:
            driver.target.version = manifest.target.version
        for note in manifest.notes:
            self.loop.state.add_note(note)
        if result.get("ps"):
            self._ps_tables.append(pq.read_table(io.BytesIO(result["ps"])))

    def _write_ps(self) -> None:
        if self._ps_tables:
            pq.write_table(pa.concat_tables(self._ps_tables), self.loop.run.run_dir / PS_FILE)


def check_placement(resources: dict[str, float], num_cpus: float, cluster: dict[str, float],
                    address: str) -> None:
    """A placement no node of the cluster can satisfy would leave its tasks pending for ever: say so."""
    wanted = {"CPU": num_cpus, **resources}
    missing = {name: amount for name, amount in wanted.items() if cluster.get(name, 0.0) < amount}
    if missing:
        have = ", ".join(f"{name}: {cluster[name]:g}" for name in sorted(cluster)
                         if not name.startswith(("node:", "memory", "object_store")))
        asked = ", ".join(f"{name}: {amount:g}" for name, amount in missing.items())
        raise UsageError(f"placement asks for {{{asked}}} per server group; the Ray cluster ({address}) "
                         f"has {{{have}}} in all")


# Ray's single-machine mode (its default on macOS and Windows; read when ray is imported): the node
# address is 127.0.0.1, so Ray's gRPC servers (GCS, raylet, each worker and the driver) and its
# agents bind loopback. On Linux Ray would advertise the host's address and bind 0.0.0.0 (measured:
# 7 listeners beyond loopback), and ray.init turns `_node_ip_address="127.0.0.1"` back into the
# host's address, so the switch itself is what holds a local cluster to loopback.
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _on_this_host(address: str | None) -> bool:
    """A local cluster (no address), or one at a loopback GCS address (`127.0.0.1:PORT`)."""
    return address is None or (not address.startswith("ray://") and is_loopback(address.rsplit(":", 1)[0]))


def _init_loopback_cluster(ray: Any, kwargs: dict[str, Any]) -> None:
    """ray.init of (or onto) a cluster on this host that listens on loopback only; refused (and shut
    down) if any process of this one's listens beyond loopback all the same."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_SINGLE_MACHINE_ENV] = "0"  # for Ray's processes: they inherit this environment
    ray_constants.ENABLE_RAY_CLUSTER = False  # for this one, whose ray may be imported already
    try:
        ray.init(**kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_SINGLE_MACHINE_ENV, None)
        else:
            os.environ[_SINGLE_MACHINE_ENV] = saved_env
    exposed = non_loopback_listeners(descendants(os.getpid()))
    if exposed:
        ray.shutdown()
        raise UsageError(f"--ray: the local Ray cluster listened on {', '.join(exposed)}; bench's "
                         "listeners are loopback (127.0.0.1) only, so bench stopped it")


@contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[Any]:
    """ray.init for this run (a local cluster on loopback when no address), the queue class; shut
    down after."""
    from ray.util.queue import Queue

    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            kwargs["address"] = address
        if _on_this_host(address):
            _init_loopback_cluster(ray, kwargs)
        else:
            ray.init(**kwargs)
    try:
        yield Queue
    finally:
        if started:
            ray.shutdown()


def run_on_ray(scenario: Scenario, options: RunOptions, address: str | None = None,
               console: Console | None = None) -> RunResult:
    """`bench run --ray [ADDRESS]`: the whole run, each server group a Ray task on the cluster at
    `address` (None: a local one)."""
    return run_scenario(scenario, options, console, executor=RayExecutor(address))
