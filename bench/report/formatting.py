"""Numbers as people read them in tables: ms, tok/s, percentages, GiB; '–' when not measured."""

from __future__ import annotations

from typing import Any

from bench.records import missing_as_none, number_or_none

DASH = "–"


def seconds(value_s: Any) -> str:
    """0.1234 → '123 ms'; 12.3 → '12.30 s'."""
    number = number_or_none(value_s)
    if number is None:
        return DASH
    if abs(number) >= 10:
        return f"{number:.2f} s"
    milliseconds = number * 1000
    if milliseconds != 0 and abs(milliseconds) < 1:
        return f"{milliseconds:.3f} ms"
    return f"{milliseconds:.1f} ms" if abs(milliseconds) < 100 else f"{milliseconds:.0f} ms"


def rate(value: Any, unit: str = "") -> str:
    number = number_or_none(value)
    if number is None:
        return DASH
    text = f"{number:.1f}" if abs(number) >= 10 else f"{number:.2f}"
    return f"{text} {unit}".strip()


def percent(value: Any) -> str:
    number = number_or_none(value)
    if number is None:
        return DASH
    return "0%" if number == 0 else f"{number * 100:.1f}%"


def gib(value_bytes: Any) -> str:
    number = number_or_none(value_bytes)
    return DASH if number is None else f"{number / 2**30:.2f} GiB"


def integer(value: Any) -> str:
    number = number_or_none(value)
    return DASH if number is None else f"{int(number)}"


def change(baseline: Any, current: Any) -> str:
    """Relative change, signed: '+12.3%'."""
    base, now = number_or_none(baseline), number_or_none(current)
    if base is None or now is None or base == 0:
        return DASH
    return f"{(now - base) / base * 100:+.1f}%"


def text(value: Any) -> str:
    if missing_as_none(value) is None:
        return DASH
    return str(value)
