"""A managed real `ollama serve`: its private state directory, its environment, its models.

bench never lets a managed Ollama touch the user's own: HOME (where `ollama serve` writes its
~/.ollama/id_ed25519 key pair on first start, cmd/cmd.go initializeKeypair) and OLLAMA_MODELS point
into bench's cache (`<cache>/ollama/state`), cloud models are off (OLLAMA_NO_CLOUD=1, an offline
start), and blob pruning at startup is off (OLLAMA_NOPRUNE=1) because several managed servers may
share that directory: one starting up would otherwise delete a blob another is importing.

Models are the GGUFs `bench gguf make` writes, by preset name (`tiny-llama3.2-1b`), or by the name
of the catalog model a preset is scaled from (`llama3.2:1b` → that preset), so scenarios written
for the simulator run unchanged; each is imported with `ollama create NAME -f Modelfile` (`FROM
<gguf>`), which detects the ChatML template from the GGUF as it does for any imported model.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from bench.engine.memory_log import kv_bytes_per_launch
from bench.engine.models import cache_dir, ollama_name, preset_for, preset_path
from bench.engine.shapes import PRESETS
from bench.errors import TargetError

if TYPE_CHECKING:
    from bench.plan import Cell
    from bench.scenario import Scenario

CREATE_TIMEOUT_S = 300.0
_ERROR_TAIL_LINES = 4


def state_dir() -> Path:
    """HOME and OLLAMA_MODELS of every managed `ollama serve`: bench's, never the user's."""
    return cache_dir() / "ollama" / "state"


def serve_env(state: Path | None = None) -> dict[str, str]:
    """The variables bench sets for a managed `ollama serve` (they win over the scenario's)."""
    state = state or state_dir()
    (state / "home").mkdir(parents=True, exist_ok=True)
    (state / "models").mkdir(parents=True, exist_ok=True)
    return {"HOME": str(state / "home"), "OLLAMA_MODELS": str(state / "models"),
            "OLLAMA_NO_CLOUD": "1", "OLLAMA_NOPRUNE": "1"}


def stand_ins() -> dict[str, str]:
    """Catalog model name (with its tag) → the preset scaled from it, from each preset's `shaped_like`."""
    found: dict[str, str] = {}
    for preset in PRESETS.values():
        catalog_name = preset.shaped_like.split(" (", 1)[0]
        if " " not in catalog_name:  # "an MHA model such as ..." names no single model
            found[ollama_name(catalog_name)] = preset.name
    return found


def preset_of(model: str) -> str:
    """The preset that serves `model` on a managed Ollama; TargetError listing the choices otherwise."""
    preset = preset_for(model) or stand_ins().get(ollama_name(model))
    if preset is None:
        names = ", ".join([*PRESETS, *(name.removesuffix(":latest") for name in stand_ins())])
        raise TargetError(f'model "{model}": a managed Ollama (--target ollama) serves the models '
                          f"bench gguf make writes: a preset or a model one is scaled from ({names})")
    return preset


def import_models(binary: Path, host: str, models: list[str], env: dict[str, str]) -> dict[str, str]:
    """`ollama create` each model from its preset's GGUF (made on first use); {model: preset}."""
    imported: dict[str, str] = {}
    modelfiles = Path(env["HOME"]) / "modelfiles"
    modelfiles.mkdir(parents=True, exist_ok=True)
    for model in models:
        preset = preset_of(model)
        modelfile = modelfiles / f"{preset}.Modelfile"
        modelfile.write_text(f"FROM {preset_path(preset)}\n")
        _create(binary, host, model, modelfile, env)
        imported[model] = preset
    return imported


def _create(binary: Path, host: str, model: str, modelfile: Path, env: dict[str, str]) -> None:
    command = [str(binary), "create", model, "-f", str(modelfile)]
    try:
        answer = subprocess.run(command, env={**os.environ, **env, "OLLAMA_HOST": host}, capture_output=True,
                                text=True, timeout=CREATE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TargetError(f"ollama create {model}: no answer in {CREATE_TIMEOUT_S:g} s") from None
    if answer.returncode != 0:
        lines = [line.strip() for line in (answer.stdout + answer.stderr).splitlines() if line.strip()]
        raise TargetError(f"ollama create {model} failed (exit {answer.returncode}): "
                          f"{' | '.join(lines[-_ERROR_TAIL_LINES:])}")


def ollama_command_and_env(scenario: Scenario, cell: Cell) -> tuple[list[str], dict[str, str]]:
    """`ollama serve` of the pinned build, with the cell's variables: a server: block's env (its
    axes restart Ollama per cell, as they restart a managed simulator) or sim.env for a scenario
    written for `target: sim`; bench's own variables (serve_env) win."""
    from bench.ollama.build import require_installed

    install = require_installed()
    if scenario.server is not None:
        env = dict(cell.server_env)
    else:
        env = {name: str(value) for name, value in scenario.sim.env.items()}
    return [str(install.binary), "serve"], {**env, **serve_env()}


def logged_kv_bytes(log_path: Path) -> dict[str, int]:
    """{-c: KV bytes} of every llama-server a stopped `ollama serve` logged (its log holds their lines)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    return {str(ctx): size for ctx, size in kv_bytes_per_launch(text).items()}
