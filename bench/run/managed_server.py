"""Managed server lifecycle: start `ollama serve` (or `bench sim`) on a loopback port, wait until
it answers, check its models, stop it cleanly, keep its log.

Server settings (OLLAMA_NUM_PARALLEL, OLLAMA_MAX_QUEUE, ...) are read once at startup, so the only
way to measure them is one server process per setting; bench.run.runner starts one ManagedServer per
distinct environment and reuses it for adjacent cells.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from bench.errors import TargetError
from bench.telemetry.server_info import show_model
from bench.processes import NotReady, child_options, free_port, is_loopback, log_tail, stop_group, wait_ready
from bench.run.listeners import descendants
from bench.run.reaper import RELEASE
from bench.run.redacted_log import RedactedLogCopier
from bench.run.server_marks import MARK_ENV, marked_pids, new_mark, stop_marked
from bench.secrets import has_secrets

_READY_BODY = "Ollama is running"


def sim_command(extra_args: list[str]) -> list[str]:
    """The argv that runs `bench sim` with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "bench", "sim", *extra_args]


def _host_port(host: str, port: int) -> str:
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


class ManagedServer:
    """One server process bench owns: own process group, log file, loopback address."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        log_path: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        stop_grace_s: float = 10.0,
        not_inherited: tuple[str, ...] = (),
    ) -> None:
        if not command:
            raise TargetError("server.command: empty command")
        self.command = list(command)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_copier: RedactedLogCopier | None = None
        self._stopped = False
        self.mark = new_mark()  # in the child's environment: finds what leaves the group (setsid)
        self.stop_grace_s = stop_grace_s  # also the reaper's grace when bench dies
        # Prefixes of bench's own environment variables the child does not inherit (`env` may
        # still set them: what is set there is recorded in the manifest).
        self.not_inherited = not_inherited

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process (stdout+stderr to the log) on host:port, a free port if none given."""
        if not is_loopback(self.host):
            # A managed server is bench's own child; exposing it beyond the machine is never intended.
            raise TargetError(
                f"server host {self.host!r} is not a loopback address: a managed server listens on "
                "127.0.0.1, ::1 or localhost only"
            )
        if self._process is not None:
            raise RuntimeError("ManagedServer.start() called twice")
        if self.port is None:
            self.port = free_port("127.0.0.1" if self.host == "localhost" else self.host)
        inherited = {name: value for name, value in os.environ.items()
                     if not (self.not_inherited and name.startswith(self.not_inherited))}
        child_env = {**inherited, **self.env, "OLLAMA_HOST": _host_port(self.host, self.port),
                     MARK_ENV: self.mark}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed in stop()
        try:
            # Own process group (stop() signals runners it spawned too), SIGTERM when bench dies; with
            # a key set, output goes through the redacting copier instead of straight to the log.
            self._process = subprocess.Popen(self.command, env=child_env,
                                             stdout=subprocess.PIPE if has_secrets() else self._log_file,
                                             stderr=subprocess.STDOUT, **child_options())
        except OSError as error:
            self._log_file.close()
            reason = error.strerror or str(error)
            raise TargetError(f"cannot start server {self.command[0]!r}: {reason}") from None
        if self._process.stdout is not None:
            self._log_copier = RedactedLogCopier(self._process.stdout, self._log_file)
        self._reaper = _start_reaper(self._process.pid, self.mark, self.stop_grace_s)

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Poll `GET /` until 200 `Ollama is running`; TargetError if the child exits or time runs out."""
        process = self._require_started()
        with httpx.Client(timeout=2.0, trust_env=False) as http:
            def answers() -> bool:
                try:
                    response = http.get(self.base_url + "/")
                except httpx.HTTPError:
                    return False  # not listening yet
                return response.status_code == 200 and _READY_BODY in response.text

            try:
                wait_ready(answers, process.poll, timeout_s)
            except NotReady as not_ready:
                if not_ready.exit_code is not None:
                    raise TargetError(self._with_log(
                        f"server `{self._command_text()}` exited with code {not_ready.exit_code} before it "
                        f"was ready (log {self.log_path})")) from None
                raise TargetError(self._with_log(
                    f"server `{self._command_text()}` not ready on {self.base_url} after "
                    f"{timeout_s:g}s (log {self.log_path})")) from None

    # --- state -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("ManagedServer.base_url before start()")
        return f"http://{_host_port(self.host, self.port)}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exited_within(self, timeout_s: float) -> bool:
        """Has the process exited, waiting up to timeout_s for it to be reported so?

        A killed server's sockets close a moment before waitpid() reports the exit, so a refused
        connection can come first; a short wait tells "it died" from "it stopped listening".
        """
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def last_log_lines(self, n: int = 20) -> list[str]:
        """The last n non-empty lines of the server's log (after an exit, its last words included)."""
        if self._log_copier is not None and not self.is_alive():
            # With a key set the log is copied by a thread: the child's last line (its crash
            # message) may still be in the pipe when waitpid() has already reported the exit.
            self._log_copier.join(timeout_s=2.0)
        return log_tail(self.log_path, n)

    # --- stop --------------------------------------------------------------------------------

    def stop(self, grace_s: float = 10) -> None:
        """SIGTERM the process group, SIGKILL what is left after grace_s, then the same for every
        process carrying the server's mark (daemons that left the group); safe to call twice."""
        process = self._process
        if process is None or self._stopped:
            self._close_log()
            return
        self._stopped = True
        stop_group(process, grace_s)
        stop_marked(self.mark, grace_s)
        self._release_reaper()
        self._close_log()

    def __enter__(self) -> ManagedServer:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- helpers -----------------------------------------------------------------------------

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("ManagedServer.wait_ready() before start()")
        return self._process

    def _command_text(self) -> str:
        return " ".join(self.command)

    def _with_log(self, message: str, n: int = 5) -> str:
        lines = self.last_log_lines(n)
        return f"{message}; last log lines: {' | '.join(lines)}" if lines else f"{message}; log is empty"

    def _release_reaper(self) -> None:
        """The group is stopped: tell the reaper to exit without signalling (the id may be reused)."""
        reaper, self._reaper = self._reaper, None
        if reaper is None or reaper.stdin is None:
            return
        try:
            reaper.stdin.write(RELEASE)
            reaper.stdin.close()
        except OSError:
            pass
        try:
            reaper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            reaper.kill()

    def _close_log(self) -> None:
        if self._log_copier is not None:
            self._log_copier.join(timeout_s=2.0)
            self._log_copier = None
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.close()


def _start_reaper(group: int, mark: str, grace_s: float) -> subprocess.Popen[bytes] | None:
    """bench.run.reaper for `group` and `mark`: it stops both if bench dies (see that module)."""
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.run.reaper", str(group), f"{grace_s:g}", mark],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the server's group, not hit by bench's Ctrl-C
        )
    except OSError:
        return None  # the server still runs in its own group and gets PDEATHSIG


def server_pids(server: ManagedServer) -> list[int]:
    """Every process the server's command started: its pid, all its descendants (Ollama's runner
    processes) and anything carrying its mark (a daemon that double-forked out of the tree), for
    NVML matching and the loopback check."""
    root = server.pid
    if root is None:
        return []
    marked = marked_pids(server.mark)
    if not server.is_alive():
        return marked
    return sorted(set(descendants(root)) | set(marked))


def check_models(base_url: str, models: list[str], timeout_s: float = 10,
                 api_key: str | None = None) -> dict[str, dict[str, Any]]:
    """`POST /api/show` per model (bench.telemetry.server_info.show_model); TargetError naming the
    model (and `ollama pull`) when one is missing."""
    return {model: show_model(base_url, model, api_key=api_key, need_model_info=False, timeout_s=timeout_s)
            for model in models}
