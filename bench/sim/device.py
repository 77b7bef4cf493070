"""One runner's device, shared by prompt processing and the decode batch, as llama-server shares it.

llama-server's update_slots loop runs one batch at a time: the decode tokens of every generating
slot plus up to num_batch tokens of waiting prompts (two 500-token prompts share a 1024 batch).
So prompts are processed one batch after another, and the slots that are decoding get one token
per batch: a batch's prompt time is added to the decode step it falls in (the prefill stall that
chunked-prefill servers avoid). Times here are wall-clock (time.monotonic), already divided by --speed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# A booked prompt is forgotten this long after it ended: every decoder has counted it by then
# (a decoder's deadline never lags the clock by more than a scheduling hiccup).
FORGET_AFTER_S = 30.0


@dataclass(frozen=True)
class _Prompt:
    start_s: float
    end_s: float
    batch: int  # prompts of one batch share a number: a decoder waits for all of them in one step


@dataclass
class DeviceQueue:
    """Prompts booked on the device in order, and the batches they are packed into (every profile,
    GPU or CPU: llama-server's loop is the same on both)."""

    num_batch: int = 512
    free_at_s: float = 0.0
    _booked: deque[_Prompt] = field(default_factory=deque)
    _forgotten: int = 0  # prompts dropped from the left of _booked (indices are absolute)
    _batches: int = 0
    _batch_tokens: int = 0  # prompt tokens in the last batch

    def book_prefill(self, now_s: float, prefill_wall_s: float, step_wall_s: float, prompt_tokens: int) -> tuple[float, int]:
        """Queue one prompt behind those already queued: when its prefill ends, and the index of
        the first prompt its own decode will wait for (those booked after it).

        step_wall_s: the decode step of the slots decoding now, which they get between two batches.
        """
        while self._booked and self._booked[0].end_s < now_s - FORGET_AFTER_S:
            self._booked.popleft()
            self._forgotten += 1
        waiting = bool(self._booked) and self._booked[-1].start_s > now_s  # the last batch has not started
        if waiting and self._batch_tokens + prompt_tokens <= self.num_batch:
            start_s = self.free_at_s
            self._batch_tokens += prompt_tokens
        else:
            start_s = self.free_at_s + step_wall_s if self.free_at_s > now_s else now_s
            self._batches += 1
            self._batch_tokens = prompt_tokens
        self.free_at_s = start_s + prefill_wall_s
        self._booked.append(_Prompt(start_s, self.free_at_s, self._batches))
        return self.free_at_s, self._forgotten + len(self._booked)

    def decode_token(self, deadline_s: float, step_wall_s: float, next_index: int) -> tuple[float, int]:
        """When a decoding slot's next token is out: one step after the last, plus the prompt
        batch processed meanwhile; and the index to continue from."""
        stall_s, index = self.stall_before(deadline_s + step_wall_s, next_index)
        return deadline_s + step_wall_s + stall_s, index

    def stall_before(self, deadline_s: float, next_index: int) -> tuple[float, int]:
        """Prompt time a decode step due at `deadline_s` waits for (the next batch of prompts from
        `next_index` if it starts before then: one batch per step), and the index to continue from."""
        index = max(next_index, self._forgotten)
        position = index - self._forgotten
        if position >= len(self._booked) or self._booked[position].start_s > deadline_s:
            return 0.0, index
        batch = self._booked[position].batch
        stall_s = 0.0
        while position < len(self._booked) and self._booked[position].batch == batch:
            stall_s += self._booked[position].end_s - self._booked[position].start_s
            position += 1
        return stall_s, position + self._forgotten

