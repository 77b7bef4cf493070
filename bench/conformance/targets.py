"""The two sides: `bench sim` in-process, and a real `ollama serve` with the made models imported.

Both run with the same OLLAMA_* environment (session.PROBE_ENV) and serve the same `bench gguf
make` presets under the same names. The simulator runs as this machine would look to Ollama: no
GPU (`--gpu cpu`), so the CPU-only context and batch rules apply on both sides.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.conformance.session import Launch, ProbeModels
from bench.errors import TargetError

START_TIMEOUT_S = 60.0
CREATE_TIMEOUT_S = 300.0
_STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Target:
    """A running server to probe: what it is, where, and the llama-server launches it made."""

    label: str
    base_url: str
    launches: Callable[[], list[Launch]]
    description: str


@contextmanager
def sim_target(env: Mapping[str, str], speed: float = 1.0) -> Iterator[Target]:
    """`bench sim` (simulated engine, Ollama 0.33.0 rules, no GPU) on a free loopback port."""
    from bench.sim.testing import running_sim, simulator_for

    with running_sim(env=dict(env), gpu="cpu", speed=speed) as base_url:
        scheduler = simulator_for(base_url).scheduler

        def launches() -> list[Launch]:
            return [Launch(entry["num_ctx"] * entry["num_parallel"], entry["num_parallel"], entry["num_batch"])
                    for entry in scheduler.load_log if entry.get("outcome") == "loaded"]

        yield Target("sim", base_url, launches, f"bench sim (simulated engine, --gpu cpu, speed x{speed:g})")


_LAUNCH_LINE = re.compile(r'msg="starting llama-server" cmd="([^"]*)"')


def launches_in_log(log_text: str) -> list[Launch]:
    """Every `starting llama-server cmd=...` line of Ollama's log (llm/llama_server.go 433)."""
    found = []
    for match in _LAUNCH_LINE.finditer(log_text):
        args = shlex.split(match.group(1))

        def value(flag: str, default: int) -> int:
            return int(args[args.index(flag) + 1]) if flag in args else default

        found.append(Launch(value("-c", 0), value("-np", 1), value("-b", 0)))
    return found


def _modelfile(scratch: Path, name: str) -> Path:
    from bench.engine.models import preset_for, preset_path

    preset = preset_for(name)
    if preset is None:
        raise TargetError(f"{name}: not a `bench gguf presets` model")
    path = scratch / f"{preset}.Modelfile"
    path.write_text(f"FROM {preset_path(preset)}\n", encoding="utf-8")
    return path


def _wait_up(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise TargetError(f"ollama serve exited with {process.returncode}: {' | '.join(tail)}")
        try:
            if httpx.get(base_url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TargetError(f"ollama serve did not answer on {base_url} within {START_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group (ollama and its llama-servers), SIGKILL what is left after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(_STOP_GRACE_S)
            if sig == signal.SIGTERM:
                os.killpg(process.pid, signal.SIGKILL)  # llama-servers it did not reap
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


@contextmanager
def ollama_target(binary: Path, env: Mapping[str, str], models: ProbeModels) -> Iterator[Target]:
    """`ollama serve` on a free loopback port with its own OLLAMA_MODELS, the made models imported."""
    from bench.engine.process import _DIE_WITH_PARENT, free_loopback_port

    if not binary.is_file():
        raise TargetError(f"{binary}: no such ollama binary (build it with `bench ollama build`)")
    with tempfile.TemporaryDirectory(prefix="bench-conformance-") as scratch_name:
        scratch = Path(scratch_name)
        host = f"127.0.0.1:{free_loopback_port()}"
        server_env = {**os.environ, **env, "OLLAMA_HOST": host, "OLLAMA_MODELS": str(scratch / "models"),
                      "OLLAMA_NO_CLOUD": "1"}
        log_path = scratch / "ollama.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([str(binary), "serve"], env=server_env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_DIE_WITH_PARENT)
        try:
            base_url = f"http://{host}"
            _wait_up(base_url, process, log_path)
            for name in models.all():
                created = subprocess.run([str(binary), "create", name, "-f", str(_modelfile(scratch, name))],
                                         env=server_env, capture_output=True, text=True, timeout=CREATE_TIMEOUT_S)
                if created.returncode != 0:
                    raise TargetError(f"ollama create {name}: {(created.stderr or created.stdout).strip()[-200:]}")

            def launches() -> list[Launch]:
                return launches_in_log(log_path.read_text(errors="replace"))

            yield Target("ollama", base_url, launches, f"ollama serve ({binary})")
        finally:
            _stop(process)
