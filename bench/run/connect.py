"""A (new) server before the cell loop measures it: what it is and its models, written into the
manifest; telemetry started on the first server and moved to each next one; the HTTP client."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httpx

from bench.clients.http import make_http_client, resolve_transport
from bench.run.managed_server import check_models
from bench.run.targets import check_openai_models, identify_server
from bench.secrets import auth_headers
from bench.telemetry import start_telemetry

if TYPE_CHECKING:
    from bench.run.runner import CellLoop

# /api/show fields kept in the manifest (the template and modelfile are long and say nothing
# about performance).
_SHOW_KEYS = ("details", "model_info", "capabilities", "parameters")


async def connect_server(loop: CellLoop, base_url: str) -> httpx.AsyncClient:
    """Check a (new) server: what it is, its models; start telemetry on the first; make the client."""
    loop.progress.status(f"checking {base_url}: version and models…")
    identity = await identify_server(base_url, loop.run.api_key)
    ollama_note = loop.targets.ollama_note()
    if ollama_note is not None:
        loop.state.add_note(ollama_note)
    target = loop.manifest.manifest.target
    target.base_url, target.version, target.server, target.api = (base_url, identity.version,
                                                                  identity.name, identity.api)
    target.speed_basis = identity.speed_basis
    if loop.run.target_kind == "urls":
        loop.manifest.manifest.targets = loop.manifest.manifest.targets or {}
        loop.manifest.manifest.targets[base_url] = {
            "version": identity.version, "server": identity.name}
    models = sorted({str(cell.settings.model) for cell in loop.run.cells})
    if identity.is_ollama:
        shown = await asyncio.to_thread(check_models, base_url, models, api_key=loop.run.api_key)
    else:
        # Not Ollama: /api/show does not exist; the OpenAI model list is all there is to check.
        check_openai_models(base_url, identity, models, {cell.surface for cell in loop.run.cells})
        shown = {}
        loop.state.add_note(f"{identity.name} is not Ollama: /api/version and /api/ps probes skipped")
    loop.manifest.manifest.models = {
        name: {key: info[key] for key in _SHOW_KEYS if key in info} for name, info in shown.items()
    }
    _start_or_move_telemetry(loop, base_url if identity.is_ollama else None)
    max_in_flight = max(cell.settings.in_flight_cap for cell in loop.run.cells)
    transport = resolve_transport(loop.run.transport, base_url)
    loop.manifest.manifest.transport = transport  # what measured, not what was asked ("auto")
    loop.write_manifest("running")
    return make_http_client(base_url, loop.run.api_key, max_in_flight,
                            timeout_s=loop.run.scenario.load.timeout_s, transport=transport)

def _start_or_move_telemetry(loop: CellLoop, base_url: str | None) -> None:
    if loop.telemetry is not None:
        loop.telemetry.set_target(base_url, loop.targets.pids())
        return
    loop.telemetry = start_telemetry(loop.run.run_dir, loop.clock.t0, base_url, loop.targets.pids(),
                                     ps_headers=auth_headers(loop.run.api_key))
    loop.manifest.manifest.gpu = loop.telemetry.gpu_info
