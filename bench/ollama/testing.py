"""A running real Ollama for tests and tools: `with running_ollama(["tiny-llama3.2-1b"]) as ollama: ...`.

The same pieces a `--target ollama` run uses (the pinned build, bench's private state directory,
ManagedServer's process group, PDEATHSIG and reaper, `ollama create` from made GGUFs), without a
scenario. The server's log (Ollama's own lines and every llama-server line it passes on) is kept at
`log_path` for memory-buffer parsing (bench.engine.memory_log).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.ollama.build import OllamaInstall, require_installed
from bench.ollama.serve import import_models, serve_env
from bench.run.managed_server import ManagedServer


@dataclass
class RunningOllama:
    """A started `ollama serve`: where it listens, its process, its log, the models it has."""

    server: ManagedServer
    install: OllamaInstall
    models: dict[str, str] = field(default_factory=dict)  # model -> the preset it was made from

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def host(self) -> str:
        """OLLAMA_HOST for a client (`host:port`)."""
        return self.base_url.removeprefix("http://")

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_ollama(models: list[str], env: Mapping[str, str] | None = None, log_dir: Path | None = None,
                   ready_timeout_s: float = 60.0) -> Iterator[RunningOllama]:
    """Start the pinned Ollama on a free loopback port with `env` (OLLAMA_NUM_PARALLEL, ...), import
    `models` (presets, or catalog names a preset is scaled from), yield it; always stop its whole tree."""
    install = require_installed()
    own_dir = tempfile.TemporaryDirectory(prefix="bench-ollama-") if log_dir is None else None
    directory = Path(own_dir.name) if own_dir is not None else Path(log_dir)  # type: ignore[arg-type]
    child_env = {**{name: str(value) for name, value in (env or {}).items()}, **serve_env()}
    server = ManagedServer([str(install.binary), "serve"], child_env, directory / "ollama-serve.log")
    try:
        server.start()
        server.wait_ready(ready_timeout_s)
        running = RunningOllama(server, install)
        running.models = import_models(install.binary, running.host, list(models), child_env)
        yield running
    finally:
        server.stop(grace_s=10)
        if own_dir is not None:
            own_dir.cleanup()
