"""The server under test: a fixed URL, the embedded simulator, or managed servers per env group;
plus the checks that it is there (preflight, /api/version)."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.errors import TargetError, UsageError
from bench.inputs.server_json import server_json, server_object
from bench.secrets import auth_headers
from bench.plan import Cell
from bench.run.listeners import non_loopback_listeners
from bench.run.managed_server import ManagedServer, server_pids, sim_command
from bench.endpoints import MODELS_PATH, VERSION_PATH, resolve_ollama_host
from bench.processes import free_port
from bench.ollama.pins import OLLAMA_VERSION
from bench.ollama.serve import import_models, logged_kv_bytes, ollama_command_and_env
from bench.scenario import Scenario

if TYPE_CHECKING:
    from bench.run.resolve import ResolvedRun


class Targets:
    """The server under test: a fixed URL, the embedded simulator, or managed servers per env group."""

    def __init__(self, run: ResolvedRun) -> None:
        self.scenario, self.sim_speed, self.run_dir = run.scenario, run.sim_speed, run.run_dir
        self.kind = run.target_kind
        self.base_url = run.target_url
        self.server: ManagedServer | None = None
        self.group: int | None = None
        self.servers: list[dict[str, Any]] = []
        if run.resume is not None:
            # Server ids (and server-<n>.log names) continue where the last session stopped.
            self.servers = [server.model_dump(mode="json") for server in run.resume.manifest.servers]
        self.port = free_port()  # one port for every server of the run: URLs stay stable
        self.models = sorted({str(cell.settings.model) for cell in run.cells})
        self.imported: dict[str, str] = {}  # target ollama: model -> the preset imported for it

    def _command_and_env(self, cell: Cell) -> tuple[list[str], dict[str, str]]:
        if self.kind == "sim":
            sim = self.scenario.sim
            args = ["--speed", str(self.sim_speed or sim.speed)]
            if sim.gpu:
                args += ["--gpu", sim.gpu]
            if sim.gpu_memory:
                args += ["--gpu-memory", sim.gpu_memory]
            if sim.seed is not None:
                args += ["--seed", str(sim.seed)]
            if sim.ollama_version is not None:
                args += ["--ollama-version", sim.ollama_version]
            if sim.calibrate:
                args += ["--calibrate", os.path.abspath(Path(sim.calibrate).expanduser())]
            # Last, so they win over anything in sim.args: the simulator listens on loopback only.
            loopback = ["--host", "127.0.0.1", "--port", str(self.port)]
            return sim_command(args + list(sim.args) + loopback), {k: str(v) for k, v in sim.env.items()}
        if self.kind == "ollama":
            return ollama_command_and_env(self.scenario, cell)
        assert self.scenario.server is not None
        command = resolve_server_command(self.scenario.server.argv)
        if self.sim_speed is not None:
            command = with_sim_speed(command, self.sim_speed)
        return command, dict(cell.server_env)

    def needs_start(self, cell: Cell) -> bool:
        """Whether `ensure(cell)` will start a server (for the progress line)."""
        if self.kind in ("url", "urls"):
            return False
        return not (self.server is not None and self.group == cell.server_group and self.server.is_alive())

    def describe_start(self, cell: Cell) -> str:
        """`bench sim` / `the server (OLLAMA_NUM_PARALLEL=4)`: what ensure(cell) is starting."""
        if self.kind == "sim":
            return "the simulator (bench sim)"
        settings = " ".join(f"{name}={value}" for name, value in cell.server_env)
        if self.kind == "ollama":
            return f"Ollama {OLLAMA_VERSION} (ollama serve{f', {settings}' if settings else ''})"
        settings = " ".join(f"{name}={value}" for name, value in cell.server_env)
        return f"the server{f' ({settings})' if settings else ''}"

    def ensure(self, cell: Cell) -> tuple[str, bool]:
        """The base URL for this cell, (re)starting a server when its settings change; (url, new?)."""
        if self.kind == "url":
            assert self.base_url is not None
            return self.base_url, self.group is None and self._mark(cell.server_group)
        if self.kind == "urls":  # the scenario's `targets:` list: this cell's server
            fresh = self.group != cell.server_group
            self.base_url = resolve_ollama_host(str(cell.settings.target))
            self.group = cell.server_group
            return self.base_url, fresh
        if self.server is not None and self.group == cell.server_group and self.server.is_alive():
            self._hold_to_loopback(self.server)  # again per cell: a socket opened later counts too
            return self.server.base_url, False
        self.stop()
        command, env = self._command_and_env(cell)
        server_id = len(self.servers)
        log_path = self.run_dir / f"server-{server_id}.log"
        child_env = {**env, "OLLAMA_HOST": f"127.0.0.1:{self.port}"}
        grace_s = self.scenario.server.stop_grace_s if self.scenario.server else 5.0
        server = ManagedServer(command, child_env, log_path, port=self.port, stop_grace_s=grace_s,
                               not_inherited=_not_inherited(command))
        self.servers.append({"server_id": server_id, "env": env, "command": command,
                             "log": log_path.name})
        server.start()
        self.servers[-1]["pid"] = server.pid
        self.server, self.group = server, cell.server_group
        ready_timeout_s = self.scenario.server.ready_timeout_s if self.scenario.server else 60.0
        server.wait_ready(ready_timeout_s)
        self._hold_to_loopback(server)
        if self.kind == "ollama" and not self.imported:  # OLLAMA_MODELS outlives the restarts
            self.imported = import_models(Path(command[0]), f"127.0.0.1:{self.port}", self.models, env)
        return server.base_url, True

    def ollama_note(self) -> str | None:
        """target ollama: which build ran and which made model stood in for each scenario model."""
        if self.kind != "ollama" or not self.imported:
            return None
        from bench.ollama.build import require_installed

        build = require_installed().info()
        models = ", ".join(name if name.removesuffix(":latest") == preset else f"{name} = preset {preset}"
                           for name, preset in self.imported.items())
        return (f"real Ollama {build.get('ollama_version', OLLAMA_VERSION)} built by bench ollama build "
                f"(llama.cpp b{build.get('llama_cpp_build')}), models made by bench gguf make: {models}")

    def _hold_to_loopback(self, server: ManagedServer) -> None:
        """Stop a ready server that listens beyond loopback (a script can bind 0.0.0.0 unannounced)."""
        exposed = non_loopback_listeners(server_pids(server))
        if exposed:
            self.stop()
            field = "server.command" if self.scenario.server is not None else "sim.args"
            raise TargetError(f"{field}: the managed server listened on {', '.join(exposed)}; bench's "
                              "servers listen on loopback (127.0.0.1) only, so bench stopped it")

    def _mark(self, group: int) -> bool:
        self.group = group
        return True

    @property
    def server_id(self) -> int | None:
        return len(self.servers) - 1 if self.servers else None

    def server_died(self, wait_s: float = 0.0) -> bool:
        """The managed server exited (waiting up to wait_s for its exit to be reported)."""
        if self.server is None:
            return False
        return not self.server.is_alive() or (wait_s > 0 and self.server.exited_within(wait_s))

    def pids(self) -> list[int] | None:
        return [self.server.pid] if self.server is not None and self.server.pid else None

    def stop(self) -> None:
        if self.server is not None:
            grace_s = self.scenario.server.stop_grace_s if self.scenario.server else 5.0
            self.server.stop(grace_s=grace_s)
            if self.kind == "ollama" and self.servers:  # its log is complete now
                self.servers[-1]["logged_kv_bytes"] = logged_kv_bytes(self.server.log_path)
            self.server = None


_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")
# A fault left exported in bench's shell (BENCH_SIM_FAULT_ERROR_RATE=1) would reach a managed
# simulator unseen and fail every request; faults come from the scenario (sim.args, sim.env), which
# the manifest records.
SIM_FAULT_PREFIX = "BENCH_SIM_FAULT_"


def _not_inherited(command: list[str]) -> tuple[str, ...]:
    return (SIM_FAULT_PREFIX,) if bench_sim_args(command) is not None else ()


def bench_sim_args(argv: list[str]) -> list[str] | None:
    """The arguments after `sim` when argv runs bench's simulator (`bench sim ...`, `python -m bench
    sim ...`, any path to either); None for any other server (`ollama serve`)."""
    if len(argv) >= 2 and Path(argv[0]).name == "bench" and argv[1] == "sim":
        return argv[2:]
    if len(argv) >= 4 and _PYTHON.match(Path(argv[0]).name) and argv[1:4] == ["-m", "bench", "sim"]:
        return argv[4:]
    return None


def resolve_server_command(argv: list[str]) -> list[str]:
    """A managed `bench sim` runs on this interpreter, whatever `python` or `bench` is on PATH.

    `python -m bench sim` in a scenario would otherwise take the first python on PATH, which in a
    virtual environment that is not activated (or a pipx install) lacks bench's dependencies.
    """
    args = bench_sim_args(argv)
    return argv if args is None else sim_command(args)


def with_sim_speed(command: list[str], speed: float) -> list[str]:
    """--sim-speed applied to a managed `bench sim` (replacing its --speed); refused for other servers."""
    args = bench_sim_args(command)
    if args is None:
        raise UsageError(f"--sim-speed {speed:g}: the scenario's server is `{' '.join(command)}`, not "
                         "bench sim; drop --sim-speed")
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--speed":
            skip = True
            continue
        if arg.startswith("--speed="):
            continue
        kept.append(arg)
    return sim_command(["--speed", f"{speed:g}", *kept])


def check_ollama_target(cells: tuple[Cell, ...]) -> None:
    """`target: ollama`: the pinned Ollama is built and every model has a preset to import."""
    from bench.ollama.build import require_installed
    from bench.ollama.serve import preset_of

    require_installed()
    for model in sorted({str(cell.settings.model) for cell in cells}):
        preset_of(model)


def check_sim_speed(scenario: Scenario, target_override: str | None, sim_speed: float | None) -> None:
    """Refuse --sim-speed where there is no simulator to apply it to (before a run directory exists)."""
    if sim_speed is None:
        return
    if scenario.server is not None and (target_override or scenario.target) != "ollama":
        with_sim_speed(resolve_server_command(scenario.server.argv), sim_speed)
        return
    target = target_override or scenario.target
    if target != "sim":
        raise UsageError(f"--sim-speed {sim_speed:g}: the target is {target}, not the simulator "
                         "(target: sim or a server: block running bench sim); drop --sim-speed")


def _refused(base_url: str, error: httpx.ConnectError | None = None) -> TargetError:
    """The true reason a connection failed: refused, a TLS handshake (https:// to a plain HTTP
    server), a name that does not resolve; httpx calls all of these ConnectError."""
    reason = " ".join(str(error or "").split())
    if error is not None and ("SSL" in reason or "TLS" in reason or "handshake" in reason):
        return TargetError(f"cannot connect to {base_url}: TLS handshake failed ({reason[:200]}); "
                           "does the server speak https? Ollama serves plain http://")
    if error is not None and reason and "refused" not in reason.lower():
        return TargetError(f"cannot connect to {base_url} ({reason[:200]})")
    return TargetError(
        f"cannot connect to {base_url} (connection refused): is Ollama running? "
        "Set the scenario's target, --target or OLLAMA_HOST"
    )


def preflight(base_url: str, api_key: str | None = None) -> None:
    """GET / once: a server that is not there is a one-line TargetError, not an empty run."""
    try:
        with httpx.Client(timeout=10.0, trust_env=False, headers=auth_headers(api_key)) as http:
            http.get(base_url + "/")
    except httpx.ConnectError as error:
        raise _refused(base_url, error) from None
    except httpx.HTTPError as error:
        raise TargetError(f"{base_url}: {type(error).__name__}: {error}") from None


# bench sim names the basis of its speed figures here ("speed from published llama.cpp measurements
# of this GPU, ±15%", "calibrated from run X"); a real Ollama sends no such header.
SPEED_BASIS_HEADER = "x-bench-speed-basis"


async def _version_response(base_url: str, api_key: str | None) -> httpx.Response:
    """GET /api/version; connection refused becomes a one-line TargetError."""
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False,
                                     headers=auth_headers(api_key)) as http:
            return await http.get(VERSION_PATH)
    except httpx.ConnectError as error:
        raise _refused(base_url, error) from None
    except httpx.HTTPError as error:
        raise TargetError(f"{base_url}: {type(error).__name__}: {error}") from None


def _version_of(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return None
    try:
        version = server_object(response.content, VERSION_PATH).get("version")
    except ValueError:  # ServerJSONError included
        return None
    # A version is a short string; an Ollama-shaped answer without one is still Ollama.
    return version[:100] if isinstance(version, str) else "unknown"


async def fetch_version(base_url: str, api_key: str | None = None) -> str | None:
    """GET /api/version's version (None when the server does not answer it as Ollama does)."""
    return _version_of(await _version_response(base_url, api_key))


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """What the target is: Ollama (answers /api/version) or only OpenAI-compatible (/v1/models)."""

    api: str  # "ollama" | "openai-compatible"
    name: str  # shown in the report: "Ollama 0.33.0", "llama.cpp llama-server (build 11434 ...)"
    version: str | None
    openai_models: tuple[str, ...] = ()  # /v1/models ids (OpenAI-compatible servers only)
    speed_basis: str | None = None  # bench sim only: what its speed figures rest on

    @property
    def is_ollama(self) -> bool:
        return self.api == "ollama"


async def identify_server(base_url: str, api_key: str | None = None) -> ServerIdentity:
    """Ollama if /api/version answers; else an OpenAI-compatible server if /v1/models does."""
    response = await _version_response(base_url, api_key)
    version = _version_of(response)
    if version is not None:
        basis = response.headers.get(SPEED_BASIS_HEADER)  # percent-encoded: it holds "±"
        return ServerIdentity("ollama", f"Ollama {version}", version,
                              speed_basis=unquote(basis) if basis else None)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False,
                                     headers=auth_headers(api_key)) as http:
            models_response = await http.get(MODELS_PATH)
            props_response = await http.get("/props")  # llama.cpp's server describes itself here
    except httpx.HTTPError as error:
        raise TargetError(f"{base_url}: {type(error).__name__}: {error}") from None
    if models_response.status_code != 200:
        raise TargetError(
            f"{base_url}: neither Ollama (/api/version) nor OpenAI-compatible (/v1/models answered HTTP "
            f"{models_response.status_code})"
        )
    try:
        listed = server_object(models_response.content, f"{base_url}/v1/models").get("data") or []
        ids = tuple(str(entry["id"]) for entry in listed if isinstance(entry, dict) and "id" in entry)
    except (ValueError, AttributeError, KeyError, TypeError):
        raise TargetError(f"{base_url}/v1/models: not an OpenAI model list") from None
    return ServerIdentity("openai-compatible", _openai_server_name(models_response, props_response), None, ids)


def _openai_server_name(models_response: httpx.Response, props_response: httpx.Response) -> str:
    build = None
    if props_response.status_code == 200:
        try:
            props = server_json(props_response.content, "/props")
        except ValueError:
            props = None
        if isinstance(props, dict) and ("build_info" in props or "default_generation_settings" in props):
            build = str(props.get("build_info") or "").strip()
            return f"llama.cpp llama-server{f' ({build})' if build else ''}"
    header = models_response.headers.get("server")
    return f"OpenAI-compatible server ({header})" if header else "OpenAI-compatible server"


def check_openai_models(base_url: str, identity: ServerIdentity, models: list[str], surfaces: set[str]) -> None:
    """One-line TargetErrors, before any load: native cells, or models the server does not list."""
    if "native" in surfaces:
        raise TargetError(
            f"{base_url} is {identity.name}, not Ollama: the native surface (/api/generate, /api/chat) "
            "needs Ollama; use surface openai"
        )
    missing = [model for model in models if model not in identity.openai_models]
    if missing:
        offered = ", ".join(identity.openai_models) or "none"
        raise TargetError(f'model "{missing[0]}" not offered by {base_url} (/v1/models lists: {offered})')
