"""Section 8: the environment — versions, GPU, host, models, servers, and the scenario as run."""

from __future__ import annotations

from typing import Any

import yaml

from bench.analysis.ollama_semantics import semantics_for
from bench.report import formatting as fmt
from bench.report.data import RunView
from bench.report.page import Preformatted, Section, Table


def build(views: list[RunView]) -> Section:
    blocks: list[Any] = []
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
        scenario = view.manifest.get("scenario")
        if scenario:
            blocks.append(Preformatted(_as_yaml(scenario), caption=f"Scenario as run "
                                       f"({view.manifest.get('scenario_path') or 'resolved'}){suffix}"))
    return Section("environment", "Environment", "What was measured, on what, with which settings.", tuple(blocks))


def _facts(view: RunView, suffix: str) -> Table:
    manifest = view.manifest
    target = manifest.get("target") or {}
    host = manifest.get("host") or {}
    client = manifest.get("client") or {}
    rows = [
        ("run", fmt.text(manifest.get("run_id"))),
        ("status", fmt.text(manifest.get("status"))),
        ("started / ended", f"{fmt.text(manifest.get('started_at'))} / {fmt.text(manifest.get('ended_at'))}"),
        ("bench version", fmt.text(manifest.get("bench_version"))),
        ("server", f"{fmt.text(target.get('kind'))} at {fmt.text(target.get('base_url'))}"),
        ("server version", fmt.text(target.get("server") or target.get("version"))),
        ("fields read with", semantics_for(target.get("version")).describe()),
        ("GPU", _gpu(manifest.get("gpu"), _simulated_gpus(manifest))),
        *(_speed_rows(view)),
        ("host", f"{fmt.text(host.get('hostname'))}: {fmt.text(host.get('platform'))}, "
                 f"Python {fmt.text(host.get('python'))}, {fmt.text(host.get('cpu_count'))} CPUs"),
        ("load generator", f"{fmt.text(manifest.get('workers') or 1)} worker(s), CPU {fmt.text(client.get('cpu_s'))} s, "
                           f"dispatch lag p99 {fmt.seconds(client.get('dispatch_lag_p99_s'))}, "
                           f"saturated: {'yes' if client.get('saturated') else 'no'}"),
        ("run directory", str(view.run.path)),
    ]
    rows += [("note", str(note)) for note in manifest.get("notes") or []]
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


def _simulated_gpus(manifest: dict[str, Any]) -> list[str]:
    """`simulated l4 (24GiB)` for every bench sim server of the run (its --gpu / --gpu-memory)."""
    described: list[str] = []
    for server in manifest.get("servers") or []:
        args = _sim_args(server.get("command") or [])
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
    from bench.analysis.studies import time_scale

    servers = view.manifest.get("servers") or []
    sim_ids = [s.get("server_id") for s in servers if _sim_args(s.get("command") or []) is not None]
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
                                               f"({fmt.gib(memory)})" if memory else "",
                                               f"driver {device['driver']}" if device.get("driver") else "") if p))
        else:
            parts.append(str(device))
    return "; ".join(parts) or str(gpu)


def _models(view: RunView, suffix: str) -> Table | None:
    models = view.manifest.get("models") or {}
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
    servers = view.manifest.get("servers") or []
    if not servers:
        return None
    rows = tuple((fmt.text(s.get("server_id")),
                  " ".join(f"{k}={v}" for k, v in (s.get("env") or {}).items()) or fmt.DASH,
                  " ".join(str(part) for part in s.get("command") or []) or fmt.DASH,
                  fmt.text(s.get("log"))) for s in servers)
    return Table(("server", "environment", "command", "log"), rows, caption=f"Servers started by bench{suffix}")


def _as_yaml(scenario: Any) -> str:
    try:
        return yaml.safe_dump(scenario, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    except yaml.YAMLError:
        import json

        return json.dumps(scenario, indent=2, default=str)
