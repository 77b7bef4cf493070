"""llama-server's per-slot prompt cache: each slot remembers the tokens it last held.

A request goes to the idle slot whose cached tokens share the longest common prefix with its
prompt when that prefix covers more than half the prompt (llama.cpp server
`get_available_slot`, `--slot-prompt-similarity` 0.5; the b10488 default is UNCONFIRMED),
else to the least recently used idle slot. The reused prefix is `cache_n`; at least the last
prompt token is always evaluated again (llama.cpp re-processes one token to get logits).
After the request the slot holds its prompt plus the generated tokens.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

SLOT_PROMPT_SIMILARITY = 0.5


def common_prefix_length(left: Sequence[int], right: Sequence[int]) -> int:
    length = 0
    for a, b in zip(left, right):
        if a != b:
            break
        length += 1
    return length


@dataclass
class Slot:
    index: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: int = 0


class SlotCache:
    """NUM_PARALLEL slots; the caller guarantees at most that many are taken at once."""

    def __init__(self, slot_count: int) -> None:
        self.slots = [Slot(index) for index in range(max(1, slot_count))]
        self._clock = itertools.count(1)

    def take(self, prompt: Sequence[int]) -> tuple[Slot, int]:
        """Pick a slot for `prompt`; returns it and cache_n (prompt tokens reused)."""
        idle = [slot for slot in self.slots if not slot.busy]
        if not idle:
            raise RuntimeError("no idle slot: the front let more than NUM_PARALLEL requests through")
        best, best_prefix = None, 0
        for slot in idle:
            prefix = common_prefix_length(slot.tokens, prompt)
            if prefix > best_prefix:
                best, best_prefix = slot, prefix
        if best is None or best_prefix <= SLOT_PROMPT_SIMILARITY * len(prompt):
            best = min(idle, key=lambda slot: slot.last_used)
            best_prefix = common_prefix_length(best.tokens, prompt)
        best.busy = True
        cache_n = min(best_prefix, max(0, len(prompt) - 1))
        return best, cache_n

    def give_back(self, slot: Slot, tokens: list[int]) -> None:
        slot.tokens = tokens
        slot.busy = False
        slot.last_used = next(self._clock)
