"""Text from servers and scenarios made safe for the medium it is shown in.

Model names, server error bodies and scenario strings are other people's text: on a terminal
they may carry rich markup (`[/]` crashes a markup render) or ANSI escapes (clear screen, set
the window title); in Markdown they may carry `|` (breaks a table) or HTML.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL, except none: a tab or newline in a one-line field is
# as misleading as an escape sequence.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def plain_terminal(text: object) -> str:
    """Control characters shown as `\\x1b` instead of acting on the terminal."""
    return _CONTROL_RE.sub(_visible, str(text))


def for_terminal(text: object) -> str:
    """Safe inside a rich markup string: control characters visible, `[` escaped."""
    from rich.markup import escape

    return escape(plain_terminal(text))


def for_markdown(text: object) -> str:
    """Safe in a Markdown table cell: no control characters, Markdown and HTML characters escaped."""
    return _MARKDOWN_SPECIAL_RE.sub(r"\\\1", plain_terminal(text))
