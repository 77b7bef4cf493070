"""manifest.json's schema: what a run is (scenario, host, target, options) and where it stands
(cells, servers, client health, calibrations, notes).

The boundary between a run and everything that reads it: bench.run.manifest_writer writes it (the only
writer), `bench.records.load_run` parses it once into a `Manifest`, and readers use its fields.
Every model accepts keys it does not know (a newer bench's manifest still loads) and defaults
what an older or interrupted run never wrote.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bench.records.cell_settings import CellSettings


class _Stored(BaseModel):
    model_config = ConfigDict(extra="allow")


class ManifestCell(_Stored):
    cell_id: str
    cell_index: int = 0
    settings: CellSettings = Field(default_factory=CellSettings)  # stored flat, as always
    status: str = "pending"  # pending | complete | partial
    server_id: int | None = None  # index into `servers` (managed or simulated targets)
    label: str | None = None  # bench.plan.cell_label, as shown everywhere
    stop: dict[str, Any] | None = None  # adaptive runs: the stop_when verdict (bench.run.adaptive_study)
    skip_reason: str | None = None  # pruned studies: why the cell was skipped
    node: dict[str, Any] | None = None  # --ray: the node that measured the cell
    # Why a cell is partial or was not run when the run could say more than "interrupted"
    # (--ray: its task was lost, and whether mid-cell or before the cell began).
    unfinished_reason: str | None = None


class ServerRecord(_Stored):
    """One managed server process (server-<server_id>.log)."""

    server_id: int = 0
    env: dict[str, str] = Field(default_factory=dict)
    command: list[str] = Field(default_factory=list)
    log: str | None = None
    pid: int | None = None
    # target ollama: {-c (num_ctx × NUM_PARALLEL): KV buffer bytes} llama-server logged per launch.
    logged_kv_bytes: dict[str, int] = Field(default_factory=dict)


class TargetRecord(_Stored):
    base_url: str | None = None  # the last server measured
    kind: str | None = None  # url | sim | managed
    version: str | None = None  # /api/version
    server: str | None = None  # what answered: "Ollama 0.33.0", "llama.cpp llama-server ..." (targets.identify_server)
    api: str | None = None  # ollama | openai-compatible
    speed_basis: str | None = None  # bench sim: what its speed figures rest on (x-bench-speed-basis)


class HostRecord(_Stored):
    hostname: str | None = None
    platform: str | None = None
    python: str | None = None
    cpu_count: int | None = None


class ClientRecord(_Stored):
    """Was the load generator the bottleneck? (bench.load.health.client_health)"""

    cpu_s: float | None = None
    wall_s: float | None = None
    dispatch_lag_p99_s: float | None = None
    saturated: bool = False


class OptionsRecord(_Stored):
    """The command line's part of the run (bench.run.resolve.ResolvedRun.record)."""

    overrides: dict[str, Any] = Field(default_factory=dict)
    target: str | None = None  # --target as given
    sim_speed: float | None = None
    transport: str | None = None  # as asked; Manifest.transport is what measured
    api_key_env: str | None = None  # where the key came from, never the key
    resumed: bool = False
    adaptive: bool = False  # --adaptive: stop_when and pruning (bench.run.adaptive_study)
    full_grid: bool = False  # --full-grid: the scenario's stop_when and prune off
    workers: int = 1  # --workers: client processes per cell


class SessionRecord(_Stored):
    """One --resume of the run."""

    resumed_at: str | None = None
    previous_status: str | None = None
    previous_stop_reason: str | None = None
    previous_failure: str | None = None
    cells: list[str] = Field(default_factory=list)


class Manifest(_Stored):
    run_id: str | None = None
    bench_version: str | None = None
    status: str = "unknown"  # running | complete | partial | failed
    started_at: str | None = None
    ended_at: str | None = None
    t0_epoch_s: float | None = None  # wall time of the run's t0 (record times are relative to it)
    host: HostRecord = Field(default_factory=HostRecord)
    target: TargetRecord = Field(default_factory=TargetRecord)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict)  # /api/show, trimmed
    scenario: dict[str, Any] = Field(default_factory=dict)  # the scenario as resolved (JSON)
    scenario_path: str | None = None
    workers: int = 1
    transport: str | None = None  # the transport that measured (auto resolved)
    gpu: dict[str, Any] | None = None  # NVML driver and devices, None without a GPU
    baseline: str | None = None
    options: OptionsRecord = Field(default_factory=OptionsRecord)
    cells: list[ManifestCell] = Field(default_factory=list)
    servers: list[ServerRecord] = Field(default_factory=list)
    client: ClientRecord | None = None
    calibration: dict[str, dict[str, Any]] = Field(default_factory=dict)  # "model/surface/endpoint"
    notes: list[str] = Field(default_factory=list)
    failure: str | None = None  # why a failed run failed
    stop_reason: str | None = None  # why a run stopped early
    sessions: list[SessionRecord] = Field(default_factory=list)
    thresholds: list[dict[str, Any]] | None = None  # bench.analysis.thresholds verdicts
    targets: dict[str, dict[str, Any]] | None = None  # `targets:` runs: version and server per URL
    adaptive: dict[str, Any] | None = None  # adaptive runs: stop rule, pruning, skips, busy time
    ray: dict[str, Any] | None = None  # --ray: the cluster address

    @property
    def interrupted(self) -> bool:
        return (self.stop_reason or "").startswith("interrupted")

    def cell_settings(self) -> dict[str, CellSettings]:
        """cell_id -> the cell's settings, typed (the run's cells DataFrame is a view of these)."""
        return {cell.cell_id: cell.settings for cell in self.cells}

    def cell_labels(self) -> dict[str, str]:
        """cell_id -> label, for the cells that stored one."""
        return {cell.cell_id: cell.label for cell in self.cells if cell.label}

    def to_json(self) -> dict[str, Any]:
        """The JSON written to manifest.json (failure and stop_reason only when set)."""
        payload = self.model_dump(mode="json")
        for optional in ("failure", "stop_reason", "thresholds", "targets", "adaptive", "ray"):
            if payload.get(optional) is None:
                payload.pop(optional, None)
        if not payload.get("sessions"):
            payload.pop("sessions", None)
        return payload
