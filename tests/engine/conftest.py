"""Engine-tier fixtures: the llama-server binary (skip the tier when none is installed) and small models."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.engine.binary import EngineError, find_llama_server
from bench.engine.gguf_maker import make_model
from bench.engine.shapes import resolve_shape


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    try:
        return find_llama_server()
    except EngineError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default preset (GQA 4:1), f16: what `bench gguf make` writes without options."""
    path = tmp_path_factory.mktemp("models") / "tiny.gguf"
    make_model(path, resolve_shape(None), "tiny")
    return path


@pytest.fixture(scope="session")
def mha_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "mha.gguf"
    make_model(path, resolve_shape("tiny-mha", weight_type="f32"), "mha")
    return path
