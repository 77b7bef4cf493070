"""The simulated tokenizer and chat template: real token identity, so prompt caching can hit.

Text is cut into 4-character chunks (one token each, id = CRC-32 of the chunk); markers written
`<|name|>` are one special token each, as llama.cpp parses special tokens in a rendered prompt.
A chat renders as BOS, then per message `<|start|><|role|><|sep|>content<|end|>`, then the
generation prompt `<|start|><|assistant|><|sep|>`: the same conversation replayed with the
model's answer appended shares its whole earlier prompt and the answer's tokens with the slot's
cache (llama-server keeps prompt + generated tokens in the slot), as a real template does.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

CHARS_PER_TOKEN = 4
BOS = "<|bos|>"
GENERATION_PROMPT = "<|start|><|assistant|><|sep|>"
_SPECIAL = re.compile(r"<\|[a-z_]{1,24}\|>")


def _text_ids(text: str, out: list[int]) -> None:
    for start in range(0, len(text), CHARS_PER_TOKEN):
        out.append(zlib.crc32(text[start : start + CHARS_PER_TOKEN].encode()))


def tokenize(text: str) -> list[int]:
    """Token ids of a rendered prompt (what llama-server's /tokenize would answer)."""
    ids: list[int] = []
    position = 0
    for match in _SPECIAL.finditer(text):
        _text_ids(text[position : match.start()], ids)
        ids.append(zlib.crc32(match.group().encode()) | 0x8000_0000_0000)
        position = match.end()
    _text_ids(text[position:], ids)
    return ids


def count(text: str) -> int:
    """Number of tokens of `text` (cheap: no ids)."""
    total = 0
    position = 0
    for match in _SPECIAL.finditer(text):
        total += -(-(match.start() - position) // CHARS_PER_TOKEN) + 1
        position = match.end()
    return total + -(-(len(text) - position) // CHARS_PER_TOKEN)


def message_text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content) if content is not None else ""


def render_chat(messages: Sequence[dict[str, Any]], template: str = "") -> str:
    """The prompt a chat template would produce (Ollama renders it before calling llama-server).

    `template` "chatml": ChatML, as the Go TEMPLATE of a ChatML model renders it (no BOS: the
    engine's tokenizer adds one if the model wants it).
    """
    if template == "chatml":
        turns = [f"<|im_start|>{m.get('role') or 'user'}\n{message_text(m.get('content'))}<|im_end|>\n" for m in messages]
        return "".join(turns) + "<|im_start|>assistant\n"
    parts = [BOS]
    for message in messages:
        role = str(message.get("role") or "user").lower()
        role = role if re.fullmatch(r"[a-z_]{1,24}", role) else "user"
        parts.append(f"<|start|><|{role}|><|sep|>{message_text(message.get('content'))}<|end|>")
    parts.append(GENERATION_PROMPT)
    return "".join(parts)


def render_generate(prompt: str, system: str = "") -> str:
    """/api/generate without raw: system then prompt (a template would wrap them; the sim does not)."""
    return f"{system}{prompt}"
