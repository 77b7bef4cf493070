"""Engine-tier fixtures: the llama-server binary (skip the tier when none is installed) and small models."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine.binary import EngineError, find_llama_server
from bench.engine.gguf_maker import make_model
from bench.engine.shapes import resolve_shape
from run_wide import once_per_run, run_wide


@pytest.fixture(scope="session")
@run_wide  # a lookup on PATH: no reason to keep the engine tests on one worker
def llama_server_binary() -> Path:
    try:
        return find_llama_server()
    except EngineError as error:
        pytest.skip(str(error))


def _made(path: Path, shape: str | None, name: str, weight_type: str | None = None) -> Path:
    make_model(path, resolve_shape(shape, weight_type=weight_type), name)  # None: the preset's own
    return path


@pytest.fixture(scope="session")
@run_wide
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default preset (GQA 4:1), f16: what `bench gguf make` writes without options (once per run)."""
    return once_per_run(tmp_path_factory, "tiny-gguf", lambda folder: _made(folder / "tiny.gguf", None, "tiny"))


@pytest.fixture(scope="session")
@run_wide
def mha_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return once_per_run(tmp_path_factory, "mha-gguf", lambda folder: _made(folder / "mha.gguf", "tiny-mha", "mha", "f32"))
