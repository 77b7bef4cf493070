"""One llama-server child process, run and talked to the way Ollama v0.33's llamaServerRunner does.

Started, waited for and stopped as every child server is (bench.processes: its own process
group, SIGTERM when bench dies, a free loopback port, grace then kill). Its output goes straight to
a log file (no Python per line: with --log-verbosity 4 it logs per token); the "buffer size" lines are parsed from that file once /health answers ok, since
llama-server logs every buffer while loading.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.engine.binary import EngineError
from bench.engine.launch import LaunchSettings, llama_server_args
from bench.engine.memory_log import EngineMemory, MemoryLog
from bench.processes import NotReady, child_options, free_port, stop_group_async, wait_ready_async

HEALTH_POLL_S = 0.25  # Ollama's WaitUntilRunning polls every 250 ms
DEFAULT_LOAD_TIMEOUT_S = 300.0  # OLLAMA_LOAD_TIMEOUT's default is 5 minutes
_STOP_GRACE_S = 5.0
_ERROR_TAIL_LINES = 8
# llama.cpp states the cause of a failed load in lines like these (the "failed to create
# context" lines that follow only say that it failed).
_ERRORISH = re.compile(r"error|fail|unable|invalid|cannot|does not|requires|out of memory", re.IGNORECASE)


def error_tail(log_text: str, lines: int = _ERROR_TAIL_LINES) -> str:
    """The last lines that look like errors (else the last lines), joined for a one-line message."""
    all_lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line for line in all_lines if _ERRORISH.search(line)]
    chosen = (errors or all_lines)[-lines:]
    return " | ".join(chosen)


class EngineHTTPError(EngineError):
    """llama-server answered a request with an HTTP error status."""

    def __init__(self, path: str, status: int, body_text: str) -> None:
        super().__init__(f"llama-server {path}: HTTP {status}: {body_text[:300]}")
        self.status = status
        self.body_text = body_text

    @property
    def message(self) -> str:
        """llama-server's `error` (a string or `{"message": ...}`), else the whole body."""
        try:
            error = orjson.loads(self.body_text).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            return self.body_text.strip()
        if isinstance(error, str):
            return error.strip()
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"].strip()
        return self.body_text.strip()


class LlamaServer:
    """Start, health-check, query and stop one llama-server; async, one event loop."""

    def __init__(
        self,
        binary: Path,
        settings: LaunchSettings,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.settings = settings
        self.port = free_port()
        self.args = llama_server_args(settings, self.port)
        self._own_log_dir: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._own_log_dir = tempfile.TemporaryDirectory(prefix="bench-llama-server-")
            log_path = Path(self._own_log_dir.name) / "llama-server.log"
        self.log_path = Path(log_path)
        self.env = dict(os.environ if env is None else env)
        self.memory_log = MemoryLog()
        self.load_duration_s: float | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None
        self._model_file_bytes = settings.model_path.stat().st_size if settings.model_path.exists() else 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, timeout_s: float = DEFAULT_LOAD_TIMEOUT_S) -> None:
        """Launch and wait for /health "ok"; EngineError with llama-server's last lines on failure."""
        if not self.settings.model_path.is_file():
            raise EngineError(f"{self.settings.model_path}: model file not found")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                str(self.binary), *self.args, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                env=self.env, **child_options())
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(None, connect=5.0))
        try:
            await self._wait_healthy(timeout_s)
        except BaseException:
            await self.stop()
            raise
        self.load_duration_s = time.monotonic() - started
        self.memory_log.feed(self.log_path.read_text(errors="replace"))

    async def _wait_healthy(self, timeout_s: float) -> None:
        process = self._process
        assert process is not None and self._client is not None

        async def healthy() -> bool:
            return await self.health() == "ok"

        try:
            await wait_ready_async(healthy, lambda: process.returncode, timeout_s, poll_s=HEALTH_POLL_S)
        except NotReady as not_ready:
            if not_ready.exit_code is not None:
                raise EngineError(
                    f"llama-server exited with status {not_ready.exit_code} while loading "
                    f"{self.settings.model_path.name}: {self.last_log_lines()}") from None
            raise EngineError(f"llama-server did not become healthy in time: {self.last_log_lines()}") from None

    async def health(self) -> str:
        """llama-server's /health status: "ok", "loading model", "no slot available", or "unreachable"."""
        assert self._client is not None
        try:
            response = await self._client.get("/health", timeout=2.0)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return "unreachable"
        status = body.get("status") if isinstance(body, dict) else None
        if status is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
            status = str(body["error"].get("message", "error")).lower()
        return str(status or "error")

    def last_log_lines(self) -> str:
        try:
            return error_tail(self.log_path.read_text(errors="replace")[-32768:])
        except OSError:
            return "(no log)"

    def memory(self) -> EngineMemory:
        """/api/ps size and size_vram from the logged buffers, as Ollama computes them."""
        return self.memory_log.memory(self._model_file_bytes)

    async def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after a grace period; idempotent."""
        process, self._process = self._process, None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if process is not None:
            await stop_group_async(process, _STOP_GRACE_S)
        if self._own_log_dir is not None:
            self._own_log_dir.cleanup()
            self._own_log_dir = None

    # --- requests ---------------------------------------------------------------------------

    async def stream_json(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """POST a streaming request and yield each SSE `data:` event; EngineError on HTTP errors."""
        assert self._client is not None, "start() first"
        async with self._client.stream("POST", path, content=orjson.dumps(body),
                                       headers={"Content-Type": "application/json"}) as response:
            if response.status_code >= 400:
                raise EngineError(f"llama-server {path}: HTTP {response.status_code}: "
                                  f"{(await response.aread()).decode(errors='replace')[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[6:]
                if payload == "[DONE]":
                    return
                event = orjson.loads(payload)
                if isinstance(event, dict) and "error" in event and "content" not in event:
                    raise EngineError(f"llama-server {path}: {event['error']}")
                yield event

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        """POST a JSON request and return the decoded answer; EngineHTTPError on HTTP errors."""
        assert self._client is not None, "start() first"
        response = await self._client.post(path, content=orjson.dumps(body),
                                           headers={"Content-Type": "application/json"})
        if response.status_code >= 400:
            raise EngineHTTPError(path, response.status_code, response.text)
        return orjson.loads(response.content)

    async def tokenize(self, content: str, add_special: bool = False) -> list[int]:
        answer = await self.post_json("/tokenize", {"content": content, "add_special": add_special})
        return list(answer.get("tokens", []))

    async def detokenize(self, tokens: list[int]) -> str:
        answer = await self.post_json("/detokenize", {"tokens": tokens})
        return str(answer.get("content", ""))

    async def apply_template(self, messages: list[dict[str, Any]]) -> str:
        answer = await self.post_json("/apply-template", {"messages": messages})
        return str(answer.get("prompt", ""))

    async def __aenter__(self) -> LlamaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
