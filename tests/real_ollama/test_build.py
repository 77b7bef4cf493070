"""`bench ollama build` / `path` with stand-in tools: steps, layout, cache, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.engine import binary
from bench.ollama.build import installed
from bench.ollama.pins import LLAMA_CPP_BUILD, OLLAMA_VERSION

# `go env GOVERSION` and `go install -ldflags "-X ...Version=V" module@vV`: writes an `ollama` that
# reports V the way `ollama --version` does without a server.
FAKE_GO = """#!/bin/sh
if [ "$1" = env ]; then echo go1.99; exit 0; fi
mkdir -p "$GOBIN"
echo "$@" >> "$GOBIN/../go-args"
version=$(echo "$3" | sed 's/.*=//')
printf '#!/bin/sh\\necho "Warning: could not connect to a running Ollama instance"\\necho "Warning: client version is %s"\\n' "$version" > "$GOBIN/ollama"
chmod +x "$GOBIN/ollama"
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with a fake go, C compiler and llama.cpp bin directory (llama-server, llama-quantize, a library)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "go", FAKE_GO)
    _script(bin_dir / "cc", "#!/bin/sh\n")
    llama_dir = tmp_path / "llama"
    llama_dir.mkdir()
    _script(llama_dir / "llama-server", f"#!/bin/sh\necho 'version: {LLAMA_CPP_BUILD} (deadbeef)' >&2\n")
    _script(llama_dir / "llama-quantize", "#!/bin/sh\n")
    (llama_dir / "libllama.so.0").write_bytes(b"\x7fELF")
    (llama_dir / "libllama.so").symlink_to("libllama.so.0")
    monkeypatch.setenv("PATH", f"{bin_dir}:{llama_dir}:/usr/bin:/bin")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "cc")
    monkeypatch.setattr(binary, "_from_extra", lambda: None)
    return tmp_path


def test_build_puts_llama_server_beside_ollama_and_path_prints_it(tools: Path) -> None:
    result = CliRunner().invoke(cli, ["ollama", "build"])
    assert result.exit_code == 0, result.output
    steps = [line for line in result.output.splitlines() if line.startswith("[")]
    assert [line[:5] for line in steps] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert f"llama-server b{LLAMA_CPP_BUILD}" in steps[0]
    root = tools / "cache" / "ollama" / OLLAMA_VERSION
    assert (root / "bin" / "ollama").is_file()
    lib = root / "lib" / "ollama"
    assert (lib / "llama-server").is_file() and (lib / "llama-quantize").is_file()
    assert (lib / "libllama.so").is_symlink() and (lib / "libllama.so.0").is_file()
    assert f"-X github.com/ollama/ollama/version.Version={OLLAMA_VERSION}" in (root / "go-args").read_text()
    info = json.loads((root / "build.json").read_text())
    assert info["llama_cpp_build"] == LLAMA_CPP_BUILD and info["ollama_version"] == OLLAMA_VERSION
    assert not root.with_name(f"{OLLAMA_VERSION}.partial").exists()
    path = CliRunner().invoke(cli, ["ollama", "path"])
    assert path.exit_code == 0 and path.output.strip() == str(root / "bin" / "ollama")
    again = CliRunner().invoke(cli, ["ollama", "build"])
    assert again.exit_code == 0 and "already built" in again.output


def test_a_failed_build_leaves_nothing_usable(tools: Path) -> None:
    _script(tools / "bin" / "go", "#!/bin/sh\nif [ \"$1\" = env ]; then echo go1.99; exit 0; fi\n"
                                  "echo 'cgo: C compiler \"cc\" not found' >&2; exit 1\n")
    result = CliRunner().invoke(cli, ["ollama", "build"])
    assert result.exit_code == 2
    assert "go install github.com/ollama/ollama@v" in result.output and "cgo" in result.output
    assert installed() is None


@pytest.mark.parametrize(("missing", "named"), [
    ("go", "go not found"), ("cc", "no C compiler: CC=no-such-cc"),
    ("llama-server", "llama-server not found"), ("llama-quantize", "llama-quantize not found"),
])
def test_a_missing_tool_is_one_line_naming_it(tools: Path, monkeypatch: pytest.MonkeyPatch,
                                              missing: str, named: str) -> None:
    for directory in ("bin", "llama"):
        (tools / directory / missing).unlink(missing_ok=True)
    if missing == "cc":
        monkeypatch.setenv("CC", "no-such-cc")  # gcc and cc in /usr/bin are found otherwise
    result = CliRunner().invoke(cli, ["ollama", "build"])
    assert result.exit_code == 2
    assert named in result.output and len(result.output.strip().splitlines()) == 1


def test_path_before_a_build_says_how_to_build(tools: Path) -> None:
    result = CliRunner().invoke(cli, ["ollama", "path", "--version", "0.34.4"])
    assert result.exit_code == 2
    assert "bench ollama build --version 0.34.4" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_malformed_version_is_refused(tools: Path) -> None:
    result = CliRunner().invoke(cli, ["ollama", "build", "--version", "latest"])
    assert result.exit_code == 2 and "--version latest" in result.output
