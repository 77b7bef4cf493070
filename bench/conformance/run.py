"""Probe one side: start it, run every probe through one session, stop it."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager

from bench.conformance.compare import Observed
from bench.conformance.probes import PROBE_NAMES, run_probes
from bench.conformance.session import ProbeModels, ProbeSession
from bench.conformance.targets import Target


async def _observe(target: Target, names: tuple[str, ...], models: ProbeModels) -> Observed:
    session = ProbeSession(target.base_url, target.launches, models)
    try:
        return await run_probes(session, names)
    finally:
        await session.close()


def observe(side: AbstractContextManager[Target], names: tuple[str, ...] = PROBE_NAMES,
            models: ProbeModels | None = None) -> tuple[str, Observed]:
    """(description of the side, its observations); the side is stopped even when a probe fails."""
    with side as target:
        return target.description, asyncio.run(_observe(target, names, models or ProbeModels()))
