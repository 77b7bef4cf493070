"""The simulated backend: a roofline-timed stand-in for llama-server behind the sim's Ollama front.

Implements bench/sim/backend.py's contract. Durations come from roofline.py in simulated seconds and
are divided by --speed; memory comes from memory.py (v0.33: llama-server's buffers and --fit;
v0.12.6: Ollama's old estimate). The prompt cache is prompt_cache.py's per-slot prefix cache.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.sim import memory, roofline, textgen, tokens
from bench.sim.backend import (
    CompletionRequest,
    CompletionTimings,
    EmbedResult,
    LoadReport,
    LoadRequest,
    RunnerRequestError,
)
from bench.sim.catalog import GpuProfile
from bench.sim.device import Device, SlotWork
from bench.sim.live_device import LiveDevice, Ticket
from bench.sim.prompt_cache import SlotCache


@dataclass(frozen=True)
class SimulatedHardware:
    gpu: GpuProfile
    speed: float
    seed: int
    legacy_memory: bool = False  # v0.12.6's estimate instead of llama-server's buffers


class SimulatedBackend:
    """Starts SimulatedRunners; `load` sleeps for the simulated load time (scaled by --speed)."""

    name = "simulated"

    def __init__(self, hardware: SimulatedHardware) -> None:
        self.hardware = hardware
        self.jitter = roofline.Jitter(hardware.seed)

    def scaled(self, simulated_s: float) -> float:
        return simulated_s / self.hardware.speed

    async def load(self, request: LoadRequest) -> "SimulatedRunner":
        if self.hardware.legacy_memory:
            report = memory.legacy_layout(request)
        else:
            report = memory.llama_server_buffers(request)  # raises LoadOutOfMemory
        raw_s = roofline.load_s(request.model) * self.jitter.factor()
        await asyncio.sleep(self.scaled(roofline.observed_load_s(raw_s)))
        return SimulatedRunner(self, request, report)


class SimulatedRunner:
    """One loaded model: NUM_PARALLEL slots with a prompt cache, and a shared decode batch."""

    def __init__(self, backend: SimulatedBackend, request: LoadRequest, report: LoadReport) -> None:
        self.backend = backend
        self.request = request
        self.memory = report
        self.slots = SlotCache(request.num_parallel)
        bpe_type = request.kv_cache_type if not backend.hardware.legacy_memory or request.flash_attention == "on" else None
        self._kv_bpe = memory.KV_TYPE_BYTES[bpe_type or "f16"]
        self.closed = False
        self.generating = 0  # requests in the runner: prompt queued, prefilling or decoding
        self.max_generating = 0
        self.device = LiveDevice(Device(report.num_batch, self._decode_step_s, self._prefill_s), backend.scaled, backend.jitter.factor)

    async def health(self) -> bool:
        return not self.closed

    async def tokenize(self, text: str) -> list[int]:
        return tokens.tokenize(text)

    async def count_tokens(self, text: str) -> int:
        return tokens.count(text)  # no ids: the front's per-request fit stays cheap

    async def apply_template(self, messages: Sequence[dict[str, Any]]) -> str:
        return tokens.render_chat(messages, self.request.model.chat_template)

    async def close(self) -> None:
        self.closed = True
        await asyncio.sleep(self.backend.scaled(roofline.UNLOAD_S))

    def _plan(self, request: CompletionRequest) -> tuple[Iterable[str], str]:
        """Output pieces and stop type: deterministic in (sim seed, prompt, options.seed, temperature)."""
        seed = self.backend.hardware.seed
        options = request.options
        rng = random.Random(textgen.stable_int("text", seed, request.sample_key, options.get("seed"), options.get("temperature")))
        if request.json_schema:
            pieces = textgen.chunk_text(textgen.structured_text(request.json_schema, rng))
        elif self.request.model.never_stops:
            return textgen.endless_prose(rng, request.n_predict), "limit"
        else:
            pieces = textgen.prose_tokens(rng, textgen.natural_length(seed, request.sample_key))
        if 0 <= request.n_predict < len(pieces):
            return pieces[: request.n_predict], "limit"
        return pieces, "eos"

    async def completion(self, request: CompletionRequest) -> AsyncIterator[str | CompletionTimings]:
        prompt = tokens.tokenize(request.prompt) if isinstance(request.prompt, str) else list(request.prompt)
        pieces, stop_type = self._plan(request)
        if not self.request.context_shift:
            room = max(0, self.request.num_ctx - len(prompt))
            pieces = list(itertools.islice(pieces, room + 1))
            if room < len(pieces):
                pieces, stop_type = pieces[:room], "limit"
        slot, cache_n = self.slots.take(prompt)
        prompt_n = len(prompt) - cache_n
        produced: list[str] = []
        self.generating += 1
        self.max_generating = max(self.max_generating, self.generating)
        ticket = self._submit(slot.index, len(prompt), prompt_n, pieces, request.n_predict)
        last_token_s = 0.0
        try:
            for piece in pieces:
                last_token_s = await ticket.events.get()
                produced.append(piece)
                yield piece
            if not produced:
                last_token_s = await ticket.events.get()  # the prompt still runs before the answer
            yield CompletionTimings(
                cache_n=cache_n, prompt_n=prompt_n, prompt_ms=self.backend.scaled(ticket.work.prefill_s) * 1000,
                predicted_n=len(produced), predicted_ms=max(0.0, last_token_s - ticket.prompt_done_s) * 1000,
                stop_type=stop_type,
            )
        finally:
            self.generating -= 1
            self.device.withdraw(ticket)
            self.slots.give_back(slot, prompt + tokens.tokenize("".join(produced)))

    def _submit(self, slot: int, context_tokens: int, prompt_n: int, pieces: Iterable[str], n_predict: int) -> Ticket:
        """Put the request on the device: its prompt (at least one token: llama-server evaluates
        the last one again for its logits), then as many tokens as it has pieces."""
        if isinstance(pieces, Sequence):
            max_tokens: int | None = len(pieces)
        else:  # an endless model's generator: n_predict, or until the client goes away
            max_tokens = n_predict if n_predict >= 0 else None
        return self.device.submit(SlotWork(slot, max(1, prompt_n), context_tokens, max_tokens))

    def _decode_step_s(self, slots: int, context_tokens_total: int) -> float:
        """One batch's decode step for `slots` sequences holding `context_tokens_total` tokens (simulated seconds)."""
        return roofline.decode_step_s(self.request.model, self.backend.hardware.gpu, self.memory.gpu_fraction,
                                      slots, context_tokens_total, self._kv_bpe)

    def _prefill_s(self, prompt_tokens: int) -> float:
        """One batch's prompt tokens (simulated seconds)."""
        return roofline.prefill_s(self.request.model, self.backend.hardware.gpu, self.memory.gpu_fraction,
                                  prompt_tokens, self.memory.num_batch)

    async def embed(self, texts: Sequence[str], truncate: bool = True) -> EmbedResult:
        num_ctx = self.memory.context_length  # the front's loaded.options.num_ctx
        if not truncate and any(tokens.count(text) > num_ctx for text in texts):
            raise RunnerRequestError(400, "the input length exceeds the context length")
        texts = [text[: num_ctx * tokens.CHARS_PER_TOKEN] for text in texts]
        counts = [tokens.count(text) for text in texts]
        total = sum(counts)
        hardware = self.backend.hardware
        wall_s = self.backend.scaled(
            roofline.prefill_s(self.request.model, hardware.gpu, self.memory.gpu_fraction, total, self.memory.num_batch)
            * self.backend.jitter.factor()
        )
        self.generating += 1
        try:
            await asyncio.sleep(wall_s)
        finally:
            self.generating -= 1
        dimensions = self.request.model.embedding_length
        vectors = [textgen.embedding_vector(text, dimensions, hardware.seed) for text in texts]
        return EmbedResult(vectors=vectors, prompt_n=total)
