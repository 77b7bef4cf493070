"""What a probe may do to a server under test: requests, streams, /api/ps, waiting on a condition.

The same session drives `bench sim` and a real `ollama serve`; nothing here knows which. The
one server-side view a probe gets is `launches()`: the llama-server launches the server made
(from the real server's log, from the simulator's load log), for the context/batch it chose.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.errors import TargetError


@dataclass(frozen=True)
class Launch:
    """One llama-server launch: `-c` (all slots), `-np`, `-b`."""

    ctx_total: int
    num_parallel: int
    num_batch: int


@dataclass(frozen=True)
class ProbeModels:
    """The made models every target serves (`bench gguf make` presets, by these names)."""

    chat: str = "tiny-llama3.2-1b:latest"
    other: str = "tiny-qwen2.5-0.5b:latest"
    third: str = "tiny-mha:latest"
    embed: str = "tiny-embed:latest"

    def all(self) -> tuple[str, ...]:
        return (self.chat, self.other, self.third, self.embed)


# The server every probe runs against: small enough to exercise the queue and eviction quickly.
PROBE_ENV = {
    "OLLAMA_NUM_PARALLEL": "2",
    "OLLAMA_MAX_QUEUE": "3",
    "OLLAMA_MAX_LOADED_MODELS": "2",
}


@dataclass(frozen=True)
class Streamed:
    """A streamed response: status, content type, and every parsed event in order."""

    status: int
    content_type: str
    events: list[Any]
    raw_lines: list[str]


class ProbeSession:
    def __init__(self, base_url: str, launches: Callable[[], list[Launch]], models: ProbeModels | None = None,
                 request_timeout_s: float = 120.0) -> None:
        self.base_url = base_url
        self.launches = launches
        self.models = models or ProbeModels()
        self.client = httpx.AsyncClient(base_url=base_url, timeout=request_timeout_s)

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body)

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def generate(self, model: str, prompt: str = "hello", **fields: Any) -> httpx.Response:
        return await self.post("/api/generate", {"model": model, "prompt": prompt, "stream": False, **fields})

    async def stream(self, path: str, body: Any) -> Streamed:
        """POST and collect the stream: NDJSON objects, or SSE `data:` payloads ("[DONE]" kept as is)."""
        async with self.client.stream("POST", path, json=body) as response:
            lines = [line async for line in response.aiter_lines() if line.strip()]
            content_type = response.headers.get("content-type", "")
        events: list[Any] = []
        for line in lines:
            payload = line[5:].strip() if line.startswith("data:") else line
            try:
                events.append(payload if payload == "[DONE]" else json.loads(payload))
            except json.JSONDecodeError:
                events.append({"unparsed": payload[:80]})
        return Streamed(response.status_code, content_type.split(";")[0].strip(), events, lines)

    async def stream_until(self, path: str, body: Any, max_lines: int) -> tuple[int, dict[str, Any] | None]:
        """Read at most `max_lines` NDJSON lines: (lines read, the done line or None if cut off).

        For requests that may never end (a made model never stops by itself).
        """
        count = 0
        async with self.client.stream("POST", path, json=body) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                count += 1
                event = json.loads(line)
                if isinstance(event, dict) and (event.get("done") or "error" in event):
                    return count, event
                if count >= max_lines:
                    break
        return count, None

    async def ps(self) -> list[dict[str, Any]]:
        response = await self.get("/api/ps")
        response.raise_for_status()
        return list(response.json().get("models") or [])

    async def loaded_names(self) -> list[str]:
        return sorted(entry["name"] for entry in await self.ps())

    async def unload_all(self, deadline_s: float = 60.0) -> None:
        """keep_alive 0 with no prompt for every loaded model, then wait until /api/ps is empty.

        An embedding model cannot generate (400): it is unloaded by an empty /api/embed instead.
        """
        for entry in await self.ps():
            response = await self.post("/api/generate", {"model": entry["name"], "keep_alive": 0})
            if response.status_code == 400:
                await self.post("/api/embed", {"model": entry["name"], "input": [], "keep_alive": 0})
        await self.wait_until(lambda: self._ps_empty(), deadline_s, "every model unloaded")

    async def _ps_empty(self) -> bool:
        return not await self.ps()

    async def wait_until(self, condition: Callable[[], Awaitable[bool]], deadline_s: float, what: str) -> float:
        """Poll `condition` every 50 ms until true; the seconds it took, TargetError past the deadline."""
        start = time.monotonic()
        while not await condition():
            if time.monotonic() - start > deadline_s:
                raise TargetError(f"{self.base_url}: waited {deadline_s:.0f} s for {what}")
            await asyncio.sleep(0.05)
        return time.monotonic() - start
