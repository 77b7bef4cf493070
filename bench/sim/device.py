"""One runner's device, iteration by iteration, as llama-server's update_slots loop runs it (b10488).

Each iteration is one batch: a token of every generating slot first, then prompt tokens of the
slots still processing their prompt, in slot order, until the batch holds `num_batch` tokens
(decode tokens take room too). So a 4096-token prompt at -b 2048 is split over two or three
batches, the slots that are decoding get a token after each, and a later prompt waits only for
the batch room, not for the whole of an earlier prompt. A slot whose last prompt token is in the
batch samples its first token from that batch.

The cost of a batch is its decode step (roofline.decode_step_s for the slots that get a token)
plus the prefill of its prompt tokens (roofline.prefill_s, one chunk): the prompt stall that
chunked-prefill servers avoid. This module only plans and applies batches; the live simulator
(bench/sim/live_device.py) sleeps through them, bench/sim/closed_loop.py adds them up in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

StepCost = Callable[[int, int], float]  # (slots getting a token, their KV tokens) -> seconds
PrefillCost = Callable[[int], float]  # prompt tokens in one batch -> seconds


@dataclass(eq=False)
class SlotWork:
    """One request on the device: its prompt, then its tokens."""

    slot: int  # llama-server's slot index: prompts join a batch in slot order
    prompt_tokens: int  # tokens to evaluate (after the prompt cache; at least 1)
    context_tokens: int  # tokens it holds in the KV cache once its prompt is in
    max_tokens: int | None  # tokens to generate; None: until its owner removes it
    prompt_left: int = 0
    produced: int = 0
    prefill_s: float = 0.0  # its share of the batches' prefill time (simulated seconds)

    def __post_init__(self) -> None:
        self.prompt_left = self.prompt_tokens

    @property
    def done(self) -> bool:
        return self.prompt_left == 0 and self.max_tokens is not None and self.produced >= self.max_tokens


@dataclass(frozen=True)
class Batch:
    """One update_slots iteration: who gets a token, which prompt chunks go in, and what it costs."""

    tokens: tuple[SlotWork, ...]  # decoding slots, and slots whose prompt ends in this batch
    chunks: tuple[tuple[SlotWork, int], ...]
    step_s: float
    prefill_s: float

    @property
    def duration_s(self) -> float:
        return self.step_s + self.prefill_s


@dataclass
class Device:
    """The works a runner holds, and the next batch llama-server would build from them."""

    num_batch: int
    step_cost: StepCost
    prefill_cost: PrefillCost
    works: list[SlotWork] = field(default_factory=list)

    def add(self, work: SlotWork) -> None:
        self.works.append(work)

    def remove(self, work: SlotWork) -> None:
        if work in self.works:
            self.works.remove(work)

    def plan(self) -> Batch | None:
        """The next batch, or None when no slot has anything to process."""
        decoding = [work for work in self.works if work.prompt_left == 0 and not work.done]
        room = self.num_batch - len(decoding)
        chunks: list[tuple[SlotWork, int]] = []
        for work in sorted((w for w in self.works if w.prompt_left > 0), key=lambda w: w.slot):
            if room <= 0:
                break
            take = min(room, work.prompt_left)
            chunks.append((work, take))
            room -= take
        finishing = [work for work, take in chunks if take == work.prompt_left and work.max_tokens != 0]
        tokens = tuple(decoding + finishing)
        if not tokens and not chunks:
            return None
        kv_tokens = sum(work.context_tokens + work.produced for work in tokens)
        step_s = self.step_cost(len(tokens), kv_tokens) if tokens else 0.0
        prompt_tokens = sum(take for _, take in chunks)
        return Batch(tokens, tuple(chunks), step_s, self.prefill_cost(prompt_tokens) if chunks else 0.0)

    def apply(self, batch: Batch, factor: float = 1.0) -> list[SlotWork]:
        """The batch ran (its costs scaled by `factor`): the works that got a token, in order.
        Works removed meanwhile (a client that went away) get nothing."""
        prompt_tokens = sum(take for _, take in batch.chunks)
        for work, take in batch.chunks:
            work.prompt_left -= take
            work.prefill_s += batch.prefill_s * factor * take / prompt_tokens
        served = [work for work in batch.tokens if work in self.works]
        for work in served:
            work.produced += 1
        self.works = [work for work in self.works if not work.done]
        return served
