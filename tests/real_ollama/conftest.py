"""The `ollama` tier's fixtures: the built Ollama (skip, or fail under CI=true, without it) and
running servers with made models (bench.ollama.testing.running_ollama)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from bench.ollama.build import OllamaBuildError, OllamaInstall, find_toolchain, require_installed
from bench.ollama.testing import RunningOllama, running_ollama


def _missing(reason: str) -> None:
    """Skip the tier with one line; under CI=true a missing toolchain or build fails instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: the ollama tier cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ollama_install() -> OllamaInstall:
    try:
        find_toolchain()
    except OllamaBuildError as error:
        _missing(f"real Ollama tier skipped: {error}")
    try:
        return require_installed()
    except OllamaBuildError as error:
        _missing(f"real Ollama tier skipped: {error}")
    raise AssertionError("unreachable")


@pytest.fixture
def start_ollama(ollama_install: OllamaInstall, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Callable[..., RunningOllama]]:
    """Factory: `ollama = start_ollama(["tiny-llama3.2-1b"], env={"OLLAMA_NUM_PARALLEL": "2"})`;
    every server it started is stopped (whole process tree) at teardown."""
    with ExitStack() as stack:

        def start(models: list[str], env: dict[str, Any] | None = None) -> RunningOllama:
            log_dir = tmp_path_factory.mktemp("ollama")
            return stack.enter_context(running_ollama(models, env=env, log_dir=log_dir))

        yield start


@pytest.fixture(scope="session")
def real_ollama(ollama_install: OllamaInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOllama]:
    """One shared `ollama serve` (NUM_PARALLEL 2, one llama.cpp thread) with tiny-llama3.2-1b and tiny-embed."""
    env = {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_CONTEXT_LENGTH": "2048", "LLAMA_ARG_THREADS": "1",
           "OLLAMA_KEEP_ALIVE": "10m"}
    with running_ollama(["tiny-llama3.2-1b", "tiny-embed"], env=env,
                        log_dir=tmp_path_factory.mktemp("real-ollama")) as running:
        yield running
