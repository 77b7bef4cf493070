"""The simulator's shared state: config, backend, scheduler, request ids, emit log, fault RNG."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO

from bench.sim.backend import Backend
from bench.sim.config import SimConfig
from bench.sim.config_errors import SimConfigError
from bench.sim.generation import FaultPlan, plan_faults
from bench.sim.scheduler import Scheduler
from bench.sim.simulated import SimulatedBackend, SimulatedHardware

MODIFIED_AT = "2025-01-01T00:00:00Z"


def created_at() -> str:
    """RFC 3339 with fractional seconds in UTC, as Go's time.Time marshals."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_backend(config: SimConfig) -> Backend:
    """The runner backend for `--engine`: the simulated one, or bench.engine's llama-server."""
    if config.engine == "simulated":
        assert config.gpu is not None
        hardware = SimulatedHardware(
            gpu=config.gpu, speed=config.speed, seed=config.seed, legacy_memory=not config.rules.llama_server_memory
        )
        return SimulatedBackend(hardware)
    try:
        from bench.engine.sim_backend import create_backend as create_engine_backend  # type: ignore[import-not-found]
    except ImportError:
        raise SimConfigError(f"--engine {config.engine}: not available in this installation (bench.engine.sim_backend)") from None
    return create_engine_backend(config)  # type: ignore[no-any-return]


@dataclass
class Simulator:
    config: SimConfig
    scheduler: Scheduler
    _request_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _fault_rng: random.Random = field(default_factory=random.Random)
    _emit_log: IO[str] | None = None
    _emit_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, config: SimConfig) -> "Simulator":
        sim = cls(config=config, scheduler=Scheduler(config, create_backend(config)))
        sim._fault_rng = random.Random(config.seed ^ 0x5EED)
        if config.emit_log_path is not None:
            sim._emit_log = open(config.emit_log_path, "a", encoding="utf-8", buffering=1)
        return sim

    @property
    def version(self) -> str:
        return self.config.rules.version

    @property
    def speed_basis(self) -> str:
        """What the served speed rests on: the profile's basis, or the real engine on this machine."""
        if self.config.engine != "simulated":
            return f"the real llama.cpp engine ({self.config.engine}) on this machine"
        assert self.config.gpu is not None
        return self.config.gpu.speed_basis

    def request_id(self, header_value: str | None) -> str:
        return header_value or str(next(self._request_ids))

    def faults_for(self, token_count: int) -> FaultPlan:
        return plan_faults(self.config.faults, self._fault_rng, token_count)

    def emit(self, request_id: str, chunk_index: int, payload: bytes) -> bytes:
        """The one place every streamed chunk passes through on its way to the socket."""
        if self._emit_log is not None:
            self._emit_log.write(
                json.dumps({"request_id": request_id, "chunk_index": chunk_index, "t_monotonic_s": time.monotonic()}) + "\n"
            )
        return payload

    def close(self) -> None:
        if self._emit_log is not None:
            self._emit_log.close()
            self._emit_log = None
