"""Prompts for requests: synthetic (unique, seeded, calibrated length) or read from a file.

Ollama reuses a slot's cached prompt prefix, so every prompt starts with a nonce unique to
(seed, cell, repeat, request): no two requests share a prefix beyond a few tokens. Lengths are in
tokens, turned into characters by a chars-per-token ratio fitted against the server's own
prompt_eval_count / usage.prompt_tokens (two probes), so no tokenizer is needed.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.workload.prompt_files import read_conversation_file, read_prompt_file  # noqa: F401 - read_prompt_file re-exported
from bench.errors import ScenarioError
from bench.records.record import RequestRecord
from bench.scenario import Distribution, PromptSpec, Scenario

DEFAULT_CHARS_PER_TOKEN = 4.0  # English text with Llama-family tokenizers, before calibration
_PROBE_SHORT_CHARS = 200
_PROBE_LONG_CHARS = 2400

# Common English words: natural-looking text tokenizes like real prompts (unlike random letters).
_WORDS = (
    "the of and to in is was for on that with as by at from his her they this which be are "
    "an not or have had one all were there when more can their time would about what so out "
    "if up who into them some could two other these new then may first any like now over such "
    "our only its also after most people through many where before years city river house "
    "water light music garden market winter summer morning evening history science language "
    "journey mountain village teacher student letter window story number system question "
    "answer problem kitchen bridge forest station harbor museum library engine paper stone "
    "silver golden quiet gentle rapid simple careful distant ancient modern bright narrow"
).split()


@dataclass(frozen=True)
class Calibration:
    """tokens ≈ overhead_tokens + chars / chars_per_token, fitted per (model, surface, endpoint)."""

    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    overhead_tokens: float = 0.0  # template tokens the server adds (chat roles, BOS)
    source: str = "default"  # "fitted" or "default (<why>)"
    probes: tuple[dict[str, Any], ...] = ()

    def chars_for(self, tokens: int) -> int:
        """Characters of text that make a prompt of about `tokens` tokens in all."""
        return max(1, round((tokens - self.overhead_tokens) * self.chars_per_token))

    def chars_for_content(self, tokens: int) -> int:
        """Characters of text that add about `tokens` tokens to a prompt (no template overhead)."""
        return max(1, round(tokens * self.chars_per_token))

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["probes"] = list(self.probes)
        return payload


def nonce(seed: int | None, cell_id: str, repeat: int, request_index: int) -> str:
    return hashlib.sha256(f"{seed}:{cell_id}:{repeat}:{request_index}".encode()).hexdigest()[:12]


def filler_text(chars: int, rng: random.Random) -> str:
    """Deterministic English-like text of exactly `chars` characters (cut at the end)."""
    words: list[str] = []
    total = 0
    while total < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        total += len(word) + 1
    return " ".join(words)[:chars]


def draw_tokens(distribution: Distribution, rng: random.Random) -> int:
    """One prompt length from the scenario's distribution, clipped to [min, max]."""
    if distribution.distribution == "uniform":
        value = rng.uniform(distribution.low, distribution.high)  # type: ignore[arg-type]
    elif distribution.distribution == "normal":
        value = rng.gauss(distribution.mean, distribution.stddev)  # type: ignore[arg-type]
    else:
        value = rng.lognormvariate(math.log(distribution.mean), distribution.sigma)  # type: ignore[arg-type]
    return int(min(max(round(value), distribution.min), distribution.max))


def shared_prefix_text(seed: int | None, tokens: int, calibration: Calibration) -> str:
    """The system prompt common to every request of a run with this prefix length."""
    rng = random.Random(f"{seed}:shared-prefix:{tokens}")
    return "You are a helpful assistant. " + filler_text(calibration.chars_for_content(tokens), rng)


@dataclass
class PromptSource:
    """Makes the prompt of each request; deterministic from (seed, cell, repeat, index)."""

    spec: PromptSpec
    seed: int | None = None
    calibrations: dict[tuple[str, str, str], Calibration] = field(default_factory=dict)
    conversations: bool = False  # the file holds conversations to replay turn by turn
    _file_prompts: list[str] | None = None
    file_conversations: list[Any] | None = None  # bench.workload.prompt_files.FileConversation
    file_replies: list[str | None] = field(default_factory=list)  # reference answer per file item

    def __post_init__(self) -> None:
        if self.spec.file is None:
            return
        # Every form a prompt file takes (prompt lines, ShareGPT, messages), with reference answers.
        conversations = read_conversation_file(Path(self.spec.file))
        self._file_prompts = [c.user_turns[0] for c in conversations]
        self.file_replies = [c.reference_replies[0] for c in conversations]
        if self.conversations:
            self.file_conversations = conversations

    def reply_tokens(self, key: tuple[str, str, str], reply: str | None) -> int | None:
        """A reference answer's length in tokens: characters / the calibration's chars per token
        (4 when the prompts come from a file and nothing was fitted); None without an answer."""
        if reply is None:
            return None
        calibration = self.calibrations.get(key, Calibration())
        return max(1, round(len(reply) / calibration.chars_per_token))

    def max_tokens_for(self, key: tuple[str, str, str], max_tokens: Any, seed_key: str,
                       file_index: int) -> int | None:
        """One request's max_tokens: the cell's number, a draw from the scenario's distribution,
        or (from_data) the length of the file item's reference answer (the median of the file's
        answers for an item without one)."""
        if isinstance(max_tokens, Distribution):
            return draw_tokens(max_tokens, random.Random(f"{self.seed}:{seed_key}:max_tokens"))
        if max_tokens != "from_data":
            return None if max_tokens is None else int(max_tokens)
        lengths = [self.reply_tokens(key, reply) for reply in self.file_replies]
        own = lengths[file_index % len(lengths)] if lengths else None
        if own is not None:
            return own
        known = sorted(length for length in lengths if length is not None)
        return known[len(known) // 2] if known else None

    @property
    def synthetic(self) -> bool:
        return self._file_prompts is None

    def prompt_for(
        self,
        key: tuple[str, str, str],
        cell_id: str,
        repeat: int,
        request_index: int,
        prompt_tokens: int | None,
    ) -> str:
        """The prompt of one request; key = (model, surface, endpoint) picks the calibration."""
        request_nonce = nonce(self.seed, cell_id, repeat, request_index)
        rng = random.Random(f"{self.seed}:{cell_id}:{repeat}:{request_index}")
        if self._file_prompts is not None:
            # Cells walk the file from the same start, so cells see the same prompts.
            return f"[{request_nonce}] {self._file_prompts[request_index % len(self._file_prompts)]}"
        tokens = self.spec.tokens
        if isinstance(tokens, Distribution):
            target_tokens = draw_tokens(tokens, rng)
        else:
            target_tokens = prompt_tokens or 128
        calibration = self.calibrations.get(key, Calibration())
        head = f"[{request_nonce}] Continue this text: "
        body_chars = max(0, calibration.chars_for(target_tokens) - len(head))
        return head + filler_text(body_chars, rng)

    def system_for(self, key: tuple[str, str, str], shared_prefix_tokens: int | None,
                   cache: str, request_nonce: str) -> str | None:
        """The system message: the scenario's, then the shared prefix; under `defeat` a nonce first.

        `defeat` puts a token unique to the request in front of everything, so a server's prefix
        cache matches nothing; `reuse` leaves what requests share (this text) identical.
        """
        parts = [self.spec.system] if self.spec.system else []
        if shared_prefix_tokens:
            calibration = self.calibrations.get(key, Calibration())
            parts.append(shared_prefix_text(self.seed, shared_prefix_tokens, calibration))
        if not parts:
            return None
        text = "\n\n".join(parts)
        return f"[{request_nonce}] {text}" if cache == "defeat" else text

    def user_text(self, key: tuple[str, str, str], seed_key: str, tokens: int) -> str:
        """A unique user message of about `tokens` tokens (a conversation turn)."""
        rng = random.Random(f"{self.seed}:{seed_key}")
        head = f"[{hashlib.sha256(seed_key.encode()).hexdigest()[:12]}] "
        calibration = self.calibrations.get(key, Calibration())
        return head + filler_text(max(0, calibration.chars_for_content(tokens) - len(head)), rng)

    def draw_user_tokens(self, rng: random.Random, prompt_tokens: int | None) -> int:
        """One user-message length: the cell's prompt_tokens, or a draw from the distribution."""
        if isinstance(self.spec.tokens, Distribution):
            return draw_tokens(self.spec.tokens, rng)
        return prompt_tokens or 128


ProbeSender = Callable[[str], Awaitable[RequestRecord]]


async def calibrate(send_probe: ProbeSender, seed: int | None) -> Calibration:
    """Fit chars-per-token from two probes (short, long); falls back to the default on failure."""
    rng = random.Random(f"{seed}:calibration")
    probes: list[dict[str, Any]] = []
    for chars in (_PROBE_SHORT_CHARS, _PROBE_LONG_CHARS):
        text = f"[{nonce(seed, 'calibration', 0, chars)}] Continue this text: " + filler_text(chars, rng)
        record = await send_probe(text)
        probes.append(
            {"prompt_chars": len(text), "prompt_tokens": record.prompt_tokens,
             "error_class": record.error_class}
        )
    return fit_calibration(probes)


def fit_calibration(probes: list[dict[str, Any]]) -> Calibration:
    """Line through the two probes: slope gives chars/token, intercept the template overhead."""
    short, long = probes[0], probes[-1]
    if short["prompt_tokens"] is None or long["prompt_tokens"] is None:
        return Calibration(source="default (probe failed or server sent no prompt token count)",
                           probes=tuple(probes))
    delta_tokens = long["prompt_tokens"] - short["prompt_tokens"]
    if delta_tokens <= 0:
        return Calibration(source="default (probe token counts did not grow)", probes=tuple(probes))
    chars_per_token = (long["prompt_chars"] - short["prompt_chars"]) / delta_tokens
    if not 0.5 <= chars_per_token <= 16:
        return Calibration(source=f"default (implausible {chars_per_token:.2f} chars/token)",
                           probes=tuple(probes))
    overhead = max(0.0, short["prompt_tokens"] - short["prompt_chars"] / chars_per_token)
    return Calibration(chars_per_token=round(chars_per_token, 4),
                       overhead_tokens=round(overhead, 2), source="fitted", probes=tuple(probes))


def prompt_source(scenario: Scenario) -> PromptSource:
    """The run's prompts, its prompt file read and checked now (ScenarioError naming the file)."""
    where = scenario.where("workload", "prompt", "file")
    try:
        return PromptSource(scenario.workload.prompt, scenario.workload.seed,
                            conversations=scenario.workload.conversation is not None)
    except ScenarioError as error:
        raise ScenarioError(f"{where}: {error}") from None
