"""Multi-turn conversations: one virtual user's turns, the history each turn resends, and files.

A chat application sends, at every turn, the whole conversation so far (system prompt, every
user message and every assistant reply) plus the new user message. Ollama passes
`cache_prompt: true` to llama-server on every request (ollama-v0.33.md §3.3), so a turn whose
history the slot still holds evaluates only the new tokens. `cache: defeat` puts a token unique
to the request in front of the first message, so nothing matches and every turn pays for the
whole history: the two side by side show what the cache is worth.

The replies in the history are the server's own replies to the earlier turns (read even when
store_text is off, then dropped from the record), as a real client would resend them.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from bench.clients.base import RequestSpec
from bench.workload.prompt_files import FileConversation, read_conversation_file  # noqa: F401 - re-exported
from bench.workload.prompts import PromptSource, draw_tokens, nonce
from bench.records.record import Phase, RequestRecord
from bench.numbers import MAX_SECONDS
from bench.scenario import ConversationSpec, Distribution, SecondsDistribution

def draw_think_time_s(think_time: float | SecondsDistribution, rng: random.Random) -> float:
    if isinstance(think_time, SecondsDistribution):
        if think_time.distribution == "uniform":
            return rng.uniform(think_time.low, think_time.high)  # type: ignore[arg-type]
        mean = float(think_time.mean)  # type: ignore[arg-type]
        # The exponential's tail passes any bound: a draw is capped like every duration.
        return min(rng.expovariate(1.0 / mean), MAX_SECONDS) if mean > 0 else 0.0
    return float(think_time)


def render_transcript(system: str | None, history: list[tuple[str, str]], prompt: str) -> str:
    """The conversation as one text, for endpoints that take a prompt, not messages."""
    lines = [system, ""] if system else []
    for role, content in history:
        lines.append(f"{'User' if role == 'user' else 'Assistant'}: {content}")
    lines.append(f"User: {prompt}")
    lines.append("Assistant:")
    return "\n".join(lines)


@dataclass
class Conversation:
    """One virtual user's conversation: the turns still to send and the history so far."""

    conversation_id: str
    template: RequestSpec  # the cell's request fields; text, history and ids are set per turn
    user_turns: list[str]
    think_times_s: list[float]  # before turns 2..N
    system: str | None
    cache: str  # reuse | defeat
    seed: int | None
    max_tokens: list[int | None]  # per turn (None: the cell's)
    history: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0

    @property
    def turns(self) -> int:
        return len(self.user_turns)

    @property
    def finished(self) -> bool:
        return self.sent >= self.turns

    def think_time_s(self) -> float:
        """The pause before the next turn (none before the first)."""
        return self.think_times_s[self.sent - 1] if 0 < self.sent <= len(self.think_times_s) else 0.0

    def next_spec(self, request_index: int, phase: Phase, scheduled_s: float) -> RequestSpec:
        user = self.user_turns[self.sent]
        system, history = self.system, list(self.history)
        if self.cache == "defeat":
            unique = f"[{nonce(self.seed, self.template.cell_id, self.template.repeat, request_index)}] "
            system, history, user = _prefixed_first(unique, system, history, user)
        self.sent += 1
        fields: dict[str, Any] = dict(
            request_index=request_index, phase=phase, scheduled_s=scheduled_s,
            conversation_id=self.conversation_id, turn=self.sent, keep_reply=True,
        )
        if self.max_tokens[self.sent - 1] is not None:
            fields["max_tokens"] = self.max_tokens[self.sent - 1]
        if self.template.endpoint == "chat":
            fields.update(prompt=user, system=system, history=tuple(history))
        else:
            fields.update(prompt=render_transcript(system, history, user), system=None, history=())
        return dataclasses.replace(self.template, **fields)

    def observe(self, record: RequestRecord) -> bool:
        """Take the reply into the history; False ends the conversation (a failed turn)."""
        reply = record.output_text or ""
        if not self.template.store_text:
            record.output_text = None  # read for the next turn only; not written
        if not record.ok:
            return False
        self.history.append(("user", self.user_turns[self.sent - 1]))
        self.history.append(("assistant", reply))
        return not self.finished


def _prefixed_first(unique: str, system: str | None, history: list[tuple[str, str]],
                    user: str) -> tuple[str | None, list[tuple[str, str]], str]:
    """Put `unique` in front of the conversation's first message."""
    if system is not None:
        return unique + system, history, user
    if history:
        role, content = history[0]
        return system, [(role, unique + content), *history[1:]], user
    return system, history, unique + user


@dataclass
class ConversationMaker:
    """Starts the conversations of one cell: synthetic, or taken in turn from a file."""

    prompts: PromptSource
    spec: ConversationSpec
    template: RequestSpec
    key: tuple[str, str, str]
    turns: int | None  # the cell's turns (None: a distribution, or a file's own)
    prompt_tokens: int | None
    shared_prefix_tokens: int | None
    cache: str
    file_conversations: list[FileConversation] | None = None
    max_tokens: Any = None  # the cell's number, `from_data`, or a Distribution (per turn)

    def start(self, repeat: int, index: int, phase: Phase) -> Conversation:
        cell_id = self.template.cell_id
        tag = f"{'w' if phase == 'warmup' else 'c'}{index}"
        conversation_id = f"r{repeat}-{tag}"
        rng = random.Random(f"{self.prompts.seed}:{cell_id}:{repeat}:{tag}")
        if self.file_conversations is not None:
            source = self.file_conversations[index % len(self.file_conversations)]
            count = min(len(source.user_turns), self.turns or len(source.user_turns))
            # A replayed conversation starts with a token of its own, so two users replaying the
            # same file conversation do not share a cached prefix no real pair of users would.
            first = f"[{nonce(self.prompts.seed, cell_id, repeat, index)}] {source.user_turns[0]}"
            users = [first, *source.user_turns[1:count]]
            system = source.system
            max_tokens: list[int | None] = [
                self.prompts.reply_tokens(self.key, reply) if self.max_tokens == "from_data" else None
                for reply in source.reference_replies[:count]]
        else:
            count = self._draw_turns(rng)
            users = [
                self.prompts.user_text(self.key, f"{cell_id}:{repeat}:{tag}:{turn}",
                                       self.prompts.draw_user_tokens(rng, self.prompt_tokens))
                for turn in range(count)
            ]
            system = None
            max_tokens = [None] * count
        if isinstance(self.max_tokens, Distribution):
            max_tokens = [draw_tokens(self.max_tokens, rng) for _ in range(count)]
        shared = self.prompts.system_for(self.key, self.shared_prefix_tokens, "reuse", "")
        if shared is not None:
            system = shared if system is None else f"{shared}\n\n{system}"
        think = [draw_think_time_s(self.spec.think_time_s, rng) for _ in range(count - 1)]
        template = dataclasses.replace(self.template, repeat=repeat)
        return Conversation(conversation_id, template, users, think, system, self.cache,
                            self.prompts.seed, max_tokens)

    def _draw_turns(self, rng: random.Random) -> int:
        if isinstance(self.spec.turns, Distribution):
            return draw_tokens(self.spec.turns, rng)
        return self.turns or 1


def trace_conversations(entries: list[Any], template: RequestSpec, prompts: PromptSource,
                        key: tuple[str, str, str], time_scale: float, cache: str,
                        system: str | None) -> list[tuple[float, Conversation]]:
    """A trace's requests as (offset seconds, conversation): lines sharing a conversation_id are
    the turns of one conversation object; every other line is a one-turn conversation."""
    if not entries:
        return []
    first_s = entries[0].time_s
    grouped: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        grouped.setdefault(entry.conversation_id or f"line-{index}", []).append(index)
    conversations: dict[str, Conversation] = {}
    for conversation_id, indexes in grouped.items():
        users = []
        for turn, index in enumerate(indexes):
            entry = entries[index]
            seed_key = f"{template.cell_id}:{template.repeat}:trace:{index}"
            if entry.prompt is not None:
                text = entry.prompt
                if turn == 0:  # unique per replay, as every bench prompt (bench.workload.prompts)
                    text = f"[{nonce(prompts.seed, template.cell_id, template.repeat, index)}] {text}"
            else:
                text = prompts.user_text(key, seed_key, entry.prompt_tokens)
            users.append(text)
        conversations[conversation_id] = Conversation(
            conversation_id=f"r{template.repeat}-{conversation_id}", template=template, user_turns=users,
            think_times_s=[], system=system, cache=cache, seed=prompts.seed,
            max_tokens=[entries[index].max_tokens for index in indexes],
        )
    by_line = {index: conversations[cid] for cid, indexes in grouped.items() for index in indexes}
    # time_scale may stretch a week-long trace past a week: every offset is capped like a duration.
    return [(min((entry.time_s - first_s) * time_scale, MAX_SECONDS), by_line[index])
            for index, entry in enumerate(entries)]
