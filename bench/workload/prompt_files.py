"""Prompt and conversation files, read once: JSONL `prompt` lines, ShareGPT `conversations`,
OpenAI-style `messages`, or one JSON list of those. Every problem is one ScenarioError naming the
file and the line (bench.workload.prompts and bench.workload.conversations use what is read here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import ScenarioError

def read_text_file(path: Path) -> str:
    """A prompt or conversation file's text; ScenarioError (one line) when unreadable or not UTF-8."""
    from bench.inputs import MAX_DATA_BYTES, read_input_text

    return read_input_text(path, MAX_DATA_BYTES, ScenarioError, "prompt file")


def read_json_items(path: Path) -> list[tuple[int, Any]]:
    """(line or position, value) of a JSONL file or a JSON list; ScenarioError naming the line."""
    text = read_text_file(path)
    try:
        if text.lstrip().startswith("["):
            try:
                return list(enumerate(json.loads(text), start=1))
            except json.JSONDecodeError as error:
                raise ScenarioError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
        items = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((line_number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise ScenarioError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
        return items
    except RecursionError:
        raise ScenarioError(f"{path}: not valid JSON (nested too deeply)") from None


def read_prompt_file(path: Path) -> list[str]:
    """Prompts from JSONL (`prompt` per line) or ShareGPT (`conversations`, JSONL or a JSON list)."""
    prompts = [_prompt_of(item, path, where) for where, item in read_json_items(path)]
    if not prompts:
        raise ScenarioError(f"{path}:1: no prompts in file")
    return prompts


def _prompt_of(item: Any, path: Path, where: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        return str(item["prompt"])
    if isinstance(item, dict) and isinstance(item.get("conversations"), list):
        for turn in item["conversations"]:
            if isinstance(turn, dict) and turn.get("from") in ("human", "user") and isinstance(
                turn.get("value"), str
            ):
                return str(turn["value"])
    raise ScenarioError(f"{path}:{where}: expected {{\"prompt\": ...}} or ShareGPT conversations")


_SHAREGPT_USER = ("human", "user")
_SHAREGPT_ASSISTANT = ("gpt", "assistant", "chatgpt", "bard", "bing", "model")


@dataclass(frozen=True)
class FileConversation:
    """A conversation read from a file: its user turns and the reference reply after each."""

    user_turns: tuple[str, ...]
    reference_replies: tuple[str | None, ...]  # the file's assistant reply to each user turn
    system: str | None = None


def read_conversation_file(path: Path) -> list[FileConversation]:
    """Conversations from ShareGPT (`conversations`), OpenAI-style `messages`, or `prompt` lines.

    JSONL (one item a line) or one JSON list. Errors name the file and the line (or item).
    """
    conversations = [_conversation_of(item, path, where) for where, item in read_json_items(path)]
    conversations = [c for c in conversations if c.user_turns]
    if not conversations:
        raise ScenarioError(f"{path}:1: no prompts in file (no line with a prompt or a user turn)")
    return conversations


def _conversation_of(item: Any, path: Path, where: int) -> FileConversation:
    if isinstance(item, dict) and isinstance(item.get("prompt"), str):
        reply = next((item[k] for k in ("output", "completion", "response")
                      if isinstance(item.get(k), str)), None)
        return FileConversation((item["prompt"],), (reply,))
    if isinstance(item, dict) and isinstance(item.get("conversations"), list):
        pairs = [(turn.get("from"), turn.get("value")) for turn in item["conversations"]
                 if isinstance(turn, dict)]
    elif isinstance(item, dict) and isinstance(item.get("messages"), list):
        pairs = [(turn.get("role"), turn.get("content")) for turn in item["messages"]
                 if isinstance(turn, dict)]
    else:
        raise ScenarioError(
            f"{path}:{where}: expected {{\"prompt\": ...}}, ShareGPT conversations or messages"
        )
    system: str | None = None
    users: list[str] = []
    replies: list[str | None] = []
    for role, content in pairs:
        if not isinstance(content, str):
            raise ScenarioError(f"{path}:{where}: a turn's text is not a string")
        if role == "system" and not users:
            system = content
        elif role in _SHAREGPT_USER:
            users.append(content)
            replies.append(None)
        elif role in _SHAREGPT_ASSISTANT and users and replies[-1] is None:
            replies[-1] = content
        # Other roles (tool, function) and assistant turns before any user turn are skipped:
        # they are not something a load generator can ask for.
    return FileConversation(tuple(users), tuple(replies), system)
