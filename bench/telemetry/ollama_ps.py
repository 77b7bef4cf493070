"""`/api/ps` timeline: a background thread polls which models are loaded and Ollama's memory estimate.

A failed poll (server restarting, timeout) is counted and skipped; the timeline simply has a gap.
A poll that finds nothing loaded writes one row with name None, so plots show unloads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from bench.records.atomic import write_parquet_atomically
from bench.endpoints import PS_PATH
from bench.inputs.server_json import server_json
from bench.secrets import redact

PS_COLUMNS: tuple[str, ...] = (
    "t_s",
    "name",
    "size_bytes",
    "size_vram_bytes",
    "context_length",
    "expires_at",
)

PS_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("name", pa.string()),
        ("size_bytes", pa.int64()),
        ("size_vram_bytes", pa.int64()),
        ("context_length", pa.int64()),
        ("expires_at", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class PsRow:
    """One loaded model in one poll (name None: nothing was loaded)."""

    t_s: float
    name: str | None
    size_bytes: int | None
    size_vram_bytes: int | None
    context_length: int | None
    expires_at: str | None


# Sizes and lengths are counts: a negative one, a fraction or one past int64 (a parquet column)
# is a server's error, kept out of the timeline rather than failing its write at the end.
_MAX_COUNT = 2**62


def _redacted(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


def _int_or_none(value: Any) -> int | None:
    if type(value) is float and value.is_integer():
        value = int(value)
    return value if type(value) is int and 0 <= value <= _MAX_COUNT else None


def parse_ps(payload: Any, t_s: float) -> list[PsRow]:
    """Turn one /api/ps body into rows; raises ValueError when it is not Ollama's shape."""
    if not isinstance(payload, dict) or not isinstance(payload.get("models", []), list):
        raise ValueError("not an /api/ps body")
    models = [model for model in payload.get("models") or [] if isinstance(model, dict)]
    if not models:
        return [PsRow(t_s, None, None, None, None, None)]
    return [
        PsRow(
            t_s=t_s,
            name=str(model.get("name") or model.get("model")),
            size_bytes=_int_or_none(model.get("size")),
            size_vram_bytes=_int_or_none(model.get("size_vram")),
            # Older Ollama versions do not report context_length.
            context_length=_int_or_none(model.get("context_length")),
            expires_at=None if model.get("expires_at") is None else str(model["expires_at"]),
        )
        for model in models
    ]


class PsPoller:
    """Polls GET {base_url}/api/ps every `interval_s` seconds on a daemon thread."""

    def __init__(
        self,
        t0: float,
        base_url: str | None,
        interval_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 2.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.t0 = t0
        self.interval_s = interval_s
        self.rows: list[PsRow] = []
        self.polls = 0
        self.failed_polls = 0
        self.notes: list[str] = []
        self._base_url = base_url.rstrip("/") if base_url else None
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        # headers: the target's Authorization, as on every other request to it.
        self._client = httpx.Client(transport=transport, timeout=timeout_s, trust_env=False,
                                    headers=headers)

    def set_target(self, base_url: str | None) -> None:
        """Poll another server from the next poll on (a managed server restarted on a new port)."""
        with self._lock:
            self._base_url = base_url.rstrip("/") if base_url else None

    def poll_once(self) -> list[PsRow]:
        """One poll; returns the rows added (none when the poll failed or no target is set)."""
        with self._lock:
            base_url = self._base_url
        if base_url is None:
            return []
        self.polls += 1
        try:
            response = self._client.get(f"{base_url}{PS_PATH}")
            t_s = time.monotonic() - self.t0
            response.raise_for_status()
            rows = parse_ps(server_json(response.content, f"{base_url}{PS_PATH}"), t_s)
        except (httpx.HTTPError, ValueError):  # ServerJSONError is a ValueError
            self.failed_polls += 1
            return []
        self.rows.extend(rows)
        return rows

    def _loop(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception as error:  # noqa: BLE001 - a server's answer must not end sampling
                self.failed_polls += 1
                if len(self.notes) < 3:
                    self.notes.append(f"/api/ps: an answer bench could not read ({type(error).__name__})")
            self._stop_event.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="bench-ps", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling and close the client; safe to call twice."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._client.close()
        if self.failed_polls:
            self.notes.append(
                f"/api/ps: {self.failed_polls} of {self.polls} polls failed (server unreachable or restarting)"
            )
            self.failed_polls = 0

    def to_table(self) -> pa.Table:
        """The polls as ps.parquet's table; a server's text (model names, expiry) goes through
        redact() as every stored text does: a server that echoes the key puts it nowhere."""
        columns = {name: [_redacted(getattr(row, name)) for row in self.rows] for name in PS_COLUMNS}
        return pa.table(columns, schema=PS_SCHEMA)

    def write(self, path: Path) -> Path | None:
        """Write ps.parquet; nothing is written when no poll ever succeeded."""
        if not self.rows:
            return None
        return write_parquet_atomically(self.to_table(), path)
