"""Section 8: the environment — versions, GPU, host, models, servers, and the scenario as run."""

from __future__ import annotations

from typing import Any

import pandas as pd
import yaml

from bench.analysis.ollama_semantics import semantics_for
from bench import numbers as fmt
from bench.records.manifest import ClientRecord, Manifest
from bench.report.data import RunView
from bench.report.page import Block, Preformatted, Section, Table


def build(views: list[RunView]) -> Section:
    blocks: list[Block] = []
    several = len(views) > 1
    for view in views:
        suffix = f" — {view.label}" if several else ""
        blocks.append(_facts(view, suffix))
        models = _models(view, suffix)
        if models is not None:
            blocks.append(models)
        servers = _servers(view, suffix)
        if servers is not None:
            blocks.append(servers)
        scenario = view.manifest.scenario
        if scenario:
            blocks.append(Preformatted(_as_yaml(scenario), caption=f"Scenario as run "
                                       f"({view.manifest.scenario_path or 'resolved'}){suffix}"))
    return Section("environment", "Environment", "What was measured, on what, with which settings.", tuple(blocks))


def _facts(view: RunView, suffix: str) -> Table:
    manifest = view.manifest
    target, host = manifest.target, manifest.host
    client = manifest.client or ClientRecord()
    rows = [
        ("run", fmt.text(manifest.run_id)),
        ("status", fmt.text(manifest.status)),
        ("started / ended", f"{fmt.text(manifest.started_at)} / {fmt.text(manifest.ended_at)}"),
        ("bench version", fmt.text(manifest.bench_version)),
        ("server", f"{fmt.text(target.kind)} at {fmt.text(target.base_url)}"),
        ("server version", fmt.text(target.server or target.version)),
        ("fields read with", semantics_for(target.version).describe()),
        ("GPU", _gpu(manifest.gpu, _simulated_gpus(manifest))),
        *(_speed_rows(view)),
        ("host", f"{fmt.text(host.hostname)}: {fmt.text(host.platform)}, "
                 f"Python {fmt.text(host.python)}, {fmt.text(host.cpu_count)} CPUs"),
        ("load generator", f"{fmt.text(manifest.workers or 1)} worker(s), CPU {fmt.text(client.cpu_s)} s, "
                           f"dispatch lag p99 {fmt.seconds(client.dispatch_lag_p99_s)}, "
                           f"saturated: {'yes' if client.saturated else 'no'}"),
        ("run directory", str(view.run.path)),
    ]
    rows += [("note", str(note)) for note in manifest.notes]
    return Table(("", ""), tuple(rows), caption=f"Run{suffix}")


def _sim_args(command: list[Any]) -> list[str] | None:
    """The arguments of a `bench sim` command line (as bench ran it), None for another server."""
    words = [str(word) for word in command]
    for index in range(len(words) - 1):
        if words[index] == "bench" and words[index + 1] == "sim":
            return words[index + 2:]
    return None


def _flag(args: list[str], name: str) -> str | None:
    for flag, value in zip(args, args[1:]):
        if flag == name:
            return value
    return None


def _simulated_gpus(manifest: Manifest) -> list[str]:
    """`simulated l4 (24GiB)` for every bench sim server of the run (its --gpu / --gpu-memory)."""
    described: list[str] = []
    for server in manifest.servers:
        args = _sim_args(server.command)
        if args is None:
            continue
        gpu = _flag(args, "--gpu") or "rtx4090"  # bench sim's default profile
        memory = _flag(args, "--gpu-memory")
        text = f"simulated {gpu}" + (f" ({memory})" if memory else "")
        if text not in described:
            described.append(text)
    return described


def _speed_rows(view: RunView) -> list[tuple[str, str]]:
    """The simulator's speed per server: every duration is 1/speed of the modelled GPU's."""
    from bench.analysis.server_studies import time_scale

    sim_ids = [s.server_id for s in view.manifest.servers if _sim_args(s.command) is not None]
    if not sim_ids:
        return []
    speeds = sorted({time_scale(view.run, server_id) for server_id in sim_ids})
    text = " / ".join(f"×{speed:g}" for speed in speeds)
    return [("simulator speed", f"{text} (durations are 1/speed of the modelled GPU's, tok/s speed times)")]


def _gpu(gpu: Any, simulated: list[str] | None = None) -> str:
    if simulated:
        modelled = "; ".join(simulated) + " (bench sim's model of that card)"
        return modelled if not gpu else f"{modelled}; the host's GPU (NVML): {_gpu(gpu)}"
    if not gpu:
        return "none recorded (no NVML)"
    devices = gpu if isinstance(gpu, list) else gpu.get("devices", [gpu]) if isinstance(gpu, dict) else [gpu]
    parts = []
    for device in devices:
        if isinstance(device, dict):
            memory = device.get("mem_total_bytes") or device.get("memory_total_bytes")
            parts.append(" ".join(p for p in (str(device.get("name") or "GPU"),
                                               f"({fmt.size_gib(memory)})" if memory else "",
                                               f"driver {device['driver']}" if device.get("driver") else "") if p))
        else:
            parts.append(str(device))
    return "; ".join(parts) or str(gpu)


def _models(view: RunView, suffix: str) -> Table | None:
    models = view.manifest.models
    if not models:
        return None
    rows = []
    for name, shown in models.items():
        shown = shown or {}
        details = shown.get("details") or {}
        info = shown.get("model_info") or {}
        arch = info.get("general.architecture") or details.get("family")
        context = info.get(f"{arch}.context_length") if arch else None
        rows.append((str(name), fmt.text(details.get("family")), fmt.text(details.get("parameter_size")),
                     fmt.text(details.get("quantization_level")), fmt.text(details.get("format")),
                     fmt.text(context), ", ".join(str(c) for c in shown.get("capabilities") or []) or fmt.DASH))
    return Table(("model", "family", "parameters", "quantisation", "format", "trained context", "capabilities"),
                 tuple(rows), caption=f"Models{suffix}")


def _servers(view: RunView, suffix: str) -> Table | None:
    """The settings each server ran with: a managed server's environment with Ollama's defaults for
    what it left unset; for a server bench did not start, what /api/version and /api/ps showed."""
    from bench.analysis.saturation import effective_settings

    servers = view.manifest.servers
    if not servers:
        return _remote_settings(view, suffix)
    rows = tuple((fmt.text(s.server_id),
                  " ".join(f"{name}={value}" for name, value in effective_settings(s.env)),
                  " ".join(str(part) for part in s.command) or fmt.DASH,
                  fmt.text(s.log)) for s in servers)
    return Table(("server", "effective settings (unset: Ollama v0.33's default)", "command", "log"), rows,
                 caption=f"Servers started by bench{suffix}")


def _remote_settings(view: RunView, suffix: str) -> Table | None:
    """A server bench did not start: its version, and per loaded model the context and placement
    /api/ps reported (NUM_PARALLEL itself is not reported by Ollama's API)."""
    target = view.manifest.target
    rows: list[tuple[str, str]] = [("version (/api/version)", fmt.text(target.version))]
    ps = view.run.ps
    if ps is not None and len(ps) and "name" in ps:
        for model, group in ps.dropna(subset=["name"]).groupby("name"):
            contexts = sorted({int(c) for c in group.get("context_length", pd.Series(dtype=float)).dropna()})
            size = group["size_bytes"].max() if "size_bytes" in group else None
            vram = group["size_vram_bytes"].min() if "size_vram_bytes" in group else None
            rows.append((f"{model} (/api/ps)", f"context_length {', '.join(f'{c:,}' for c in contexts) or fmt.DASH}; "
                                              f"size {fmt.size_gib(size)}, size_vram {fmt.size_gib(vram)}"))
    rows.append(("OLLAMA_NUM_PARALLEL", "not reported by the API (bench did not start this server)"))
    return Table(("setting", "value"), tuple(rows), caption=f"Server settings seen{suffix}")


def _as_yaml(scenario: Any) -> str:
    try:
        return str(yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100))
    except yaml.YAMLError:
        import json

        return json.dumps(scenario, indent=2, default=str)
