"""What one cell measures, typed: made once by bench.plan, stored in manifest.json, read back by
`bench.records.load_run`. Everything later reads its attributes; the run's cells DataFrame is
a view of it (`row`).

Stored flat, as every run before this model stored it: one key per setting, a managed server's
variables beside them (`OLLAMA_NUM_PARALLEL: "2"`). Only the settings a cell was made with are
stored (`row`), so the cell ids hashed from them (bench.plan.cell_id_for) and the baselines keyed
by them stay those of older runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from bench.records.record import Endpoint, Surface
from bench.scenario.fields import Arrival

# The most requests a cell's client keeps in flight when its load sets no concurrency (open-loop
# arrivals, trace replay, a sweep's rate steps): the connection pool's size. Past it, requests
# wait in the client, which shows as dispatch lag (bench.load.health), not as server queueing.
UNCAPPED_IN_FLIGHT = 256


class CellSettings(BaseModel):
    """One cell's settings: the request sent, the load offered, the server it ran on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Field order is the stored key order (and so the order of a cell label's parts).
    surface: Surface | None = None
    endpoint: Endpoint | None = None
    model: str | None = None
    arrival: Arrival | None = None  # a sweep's steps: closed, then its rate steps' arrival
    concurrency: int | None = None  # closed loop: requests in flight; None: open loop, uncapped
    rate_rps: float | None = None  # open loop: the offered rate
    prompt_tokens: int | None = None  # None: prompts from a file
    max_tokens: int | str | None = None  # "from_data": each request's own, from the prompt file
    num_ctx: int | None = None  # None: the server's default
    keep_alive: str | int | float | None = None  # as Ollama takes it: "5m", seconds, 0
    temperature: float | None = None
    format: str | None = None  # none | json | schema
    requests: int | None = None  # per repeat
    duration_s: float | None = None  # per repeat
    warmup_requests: int = 0  # per repeat
    repeat: int = 1  # times the cell's load is run; records carry their repeat index
    gap_s: float | None = None  # idle time before the cell (keep_alive studies)
    shared_prefix_tokens: int | None = None
    turns: int | float | None = None  # user turns per conversation (a distribution's mean)
    prompt_cache: str | None = None  # reuse | defeat (stored only when the scenario sets it)
    target: str | None = None  # `targets:` runs: the URL of the cell's server
    # A managed server's variables for this cell (OLLAMA_NUM_PARALLEL: "2"), stored flat.
    server_env: dict[str, str] = Field(default_factory=dict)
    sweep_step: str | None = None  # sync | throughput | rate i/K

    @model_validator(mode="before")
    @classmethod
    def _server_variables_from_flat(cls, stored: Any) -> Any:
        """The stored flat form: a key that is no field is a server variable (its value as text)."""
        if not isinstance(stored, dict):
            return stored
        known = {name: value for name, value in stored.items() if name in cls.model_fields}
        extra = {str(name): value for name, value in stored.items() if name not in cls.model_fields}
        if extra:
            server_env = dict(known.get("server_env") or {})
            server_env.update({name: str(value) for name, value in extra.items() if value is not None})
            known["server_env"] = server_env
        return known

    def row(self) -> dict[str, Any]:
        """The stored flat form: the settings the cell was made with, server variables inline.

        The one place a cell's settings become a dict: manifest.json, cell ids, labels and the
        run's cells DataFrame are all made from it.
        """
        made = self.model_fields_set
        flat: dict[str, Any] = {}
        for name in type(self).model_fields:
            if name == "server_env":
                flat.update(self.server_env)
            elif name in made:
                flat[name] = getattr(self, name)
        return flat

    @model_serializer
    def _stored(self) -> dict[str, Any]:
        return self.row()

    @property
    def prompt_cache_mode(self) -> str:
        """reuse (what every scenario did before the axis existed, so not stored) or defeat."""
        return self.prompt_cache or "reuse"

    @property
    def in_flight_cap(self) -> int:
        """The most requests this cell keeps in flight: its concurrency, else UNCAPPED_IN_FLIGHT."""
        return self.concurrency if self.concurrency is not None else UNCAPPED_IN_FLIGHT

    def server_setting(self, name: str) -> str | None:
        """A managed server's variable for this cell (OLLAMA_NUM_PARALLEL), None when not set."""
        return self.server_env.get(name)
