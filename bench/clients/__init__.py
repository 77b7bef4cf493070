"""One module per HTTP surface; each turns one RequestSpec into one RequestRecord.

Clients know nothing of concurrency or schedules: bench.load drives them.
"""

from __future__ import annotations

import httpx

from bench.clients import native, openai
from bench.clients.base import RequestSpec
from bench.records.record import RequestRecord


async def send(http: httpx.AsyncClient, spec: RequestSpec, t0: float) -> RequestRecord:
    """Send one request on the surface the spec names (native NDJSON or OpenAI SSE)."""
    if spec.surface == "native":
        return await native.send(http, spec, t0)
    if spec.surface == "openai":
        return await openai.send(http, spec, t0)
    raise ValueError(f"unknown surface {spec.surface!r}")
