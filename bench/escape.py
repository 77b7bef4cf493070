"""Text from servers and scenarios made safe for the medium it is shown in: the one owner.

Model names, server error bodies and scenario strings are other people's text: on a terminal
they may carry rich markup (`[/]` crashes a markup render), ANSI escapes (clear screen, set the
window title), a newline (a second, forged `error:` line) or a bidi override (U+202E shows
`evil.yaml` as `lmay.live`); they may be 200,000 characters long; in Markdown they may carry `|`
(breaks a table) or HTML; in HTML (and XML) a NUL or another C0 control is invalid and some
viewers stop at it. Every shown string goes through one of these.
"""

from __future__ import annotations

import re

# C0 and C1 control characters and DEL: a tab or newline in a one-line field is as misleading as
# an escape sequence. Then the characters that reorder or hide text without being seen: the bidi
# embeddings, overrides and isolates, the marks, the line and paragraph separators, zero-width
# joiners and the BOM.
_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_HTML_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKDOWN_SPECIAL_RE = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
# A one-line message or a name in a table stays readable: a 200,000-character model name is cut
# here, its length said.
TERMINAL_MAX_CHARS = 1000


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _capped(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}… ({len(text) - max_chars:,} more characters)"


def plain_terminal(text: object, max_chars: int = TERMINAL_MAX_CHARS) -> str:
    """One line for a terminal: control and bidi characters and newlines shown as `\\x1b`,
    `\\u202e`, `\\x0a` instead of acting; cut to max_chars with the rest's length said."""
    return _CONTROL_RE.sub(_visible, _capped(str(text), max_chars))


def for_terminal(text: object, max_chars: int = TERMINAL_MAX_CHARS) -> str:
    """Safe inside a rich markup string: plain_terminal, then `[` escaped."""
    from rich.markup import escape

    return escape(plain_terminal(text, max_chars))


def for_markdown(text: object) -> str:
    """Safe in a Markdown table cell: no control characters, Markdown and HTML characters escaped."""
    return _MARKDOWN_SPECIAL_RE.sub(r"\\\1", plain_terminal(text))


def html_text(text: str) -> str:
    """Text with NUL, the other C0 controls (tab, newline, carriage return kept) and DEL removed:
    what HTML and XML 1.0 may hold. Escaping `<&` is the template's (Jinja autoescape) or
    ElementTree's; this runs on text before them and on the finished page."""
    return _HTML_CONTROL_RE.sub("", text)
