"""The two sides: `bench sim` in-process, and the pinned real `ollama serve` with the made models imported.

Both run with the same OLLAMA_* environment (session.PROBE_ENV) and serve the same `bench gguf
make` presets under the same names. The simulator runs as this machine would look to Ollama: no
GPU (`--gpu cpu`), so the CPU-only context and batch rules apply on both sides.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.conformance.session import Launch, ProbeModels


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


@contextmanager
def ollama_target(env: Mapping[str, str], models: ProbeModels) -> Iterator[Target]:
    """The pinned real Ollama (`bench ollama build`) with `env` and the made models imported."""
    from bench.ollama.testing import running_ollama

    with tempfile.TemporaryDirectory(prefix="bench-conformance-") as log_dir:
        with running_ollama(list(models.all()), env=env, log_dir=Path(log_dir)) as ollama:

            def launches() -> list[Launch]:
                return launches_in_log(ollama.log_text())

            yield Target("ollama", ollama.base_url, launches,
                         f"ollama serve {ollama.install.version} ({ollama.install.binary})")
