"""Request options as Ollama decodes them (api/types.go Options.FromMap) and the runner options
the scheduler compares (api.Runner)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_INT = {"num_ctx", "num_batch", "num_gpu", "num_thread", "draft_num_predict", "num_keep", "seed", "num_predict", "top_k", "repeat_last_n"}
_FLOAT = {"top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty"}
_POINTER_INT = {"main_gpu"}
_POINTER_BOOL = {"use_mmap"}
_STRINGS = {"stop"}


class OptionTypeError(Exception):
    """FromMap's error: Ollama returns it from scheduleRunner's default branch as HTTP 500."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decode_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Typed options; unknown keys are dropped (Ollama logs a warning), nulls are skipped."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _INT or key in _POINTER_INT:
            if not _is_number(value):
                raise OptionTypeError(f'option "{key}" must be of type integer')
            decoded[key] = int(value)
        elif key in _FLOAT:
            if not _is_number(value):
                raise OptionTypeError(f'option "{key}" must be of type float32')
            decoded[key] = float(value)
        elif key in _POINTER_BOOL:
            if not isinstance(value, bool):
                raise OptionTypeError(f'option "{key}" must be of type boolean')
            decoded[key] = value
        elif key in _STRINGS:
            if not isinstance(value, list):
                raise OptionTypeError(f'option "{key}" must be of type array')
            if not all(isinstance(item, str) for item in value):
                raise OptionTypeError(f'option "{key}" must be of an array of strings')
            decoded[key] = list(value)
    return decoded


@dataclass(frozen=True)
class RunnerOptions:
    """api.Runner: the options fixed when a model is loaded; a difference means a reload."""

    num_ctx: int
    num_batch: int = 512
    num_gpu: int = -1
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0
    draft_num_predict: int = 0
