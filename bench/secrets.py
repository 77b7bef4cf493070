"""The API key of this process: read and checked once, redacted from any text shown or stored.

Redaction is deliberately loose: a server or gateway may echo the key changed (lower-cased,
cut, quoted inside a longer token), so any run of FRAGMENT_CHARS or more characters of a key,
in any letter case, is replaced. URL credentials (`http://user:pw@host`) and query tokens
(`?token=...`) are redacted from every text passed through redact(), remembered key or not.
"""

from __future__ import annotations

import os
import re

from bench.errors import UsageError

_KNOWN_SECRETS: set[str] = set()
REDACTED = "[redacted]"
# A run this long of a key is the key: 8 characters of a random key are ~48 bits, never an
# ordinary word, and a prefix a gateway logs ("sk-abcd1234...") is no longer recognisable.
FRAGMENT_CHARS = 8
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;][^=&\s'\"<>#]*(?:token|key|secret|passw|pwd|auth|sig|credential|session)"
    r"[^=&\s'\"<>#]*=)[^&\s'\"<>#]+")


def read_api_key(variable: str) -> str:
    """The key in environment variable `variable`, stripped; UsageError when unset or unusable.

    A trailing newline (`export KEY=$(cat key.txt)`) is stripped, not sent: it would make every
    request fail with an error that quotes the key.
    """
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        raise UsageError(f"api_key_env: environment variable {variable} is not set")
    key = raw.strip()
    remember(key)
    # Header values are visible ASCII (RFC 9110 field-value); anything else fails every request.
    if not all(0x21 <= ord(char) <= 0x7E for char in key):
        raise UsageError(f"api_key_env: {variable} holds characters an HTTP header cannot carry "
                         "(spaces, control or non-ASCII characters)")
    return key


def remember(secret: str) -> None:
    """Redact `secret` from every text passed through redact() in this process."""
    if len(secret) >= 4:  # a 1-3 character "key" would redact ordinary words
        _KNOWN_SECRETS.add(secret)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers that carry the key: on every request to the target, probes included."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def has_secrets() -> bool:
    return bool(_KNOWN_SECRETS)


def redact(text: str) -> str:
    """`text` with every remembered secret (any case, any 8+ character run of one) and every URL
    credential or query token replaced by [redacted]."""
    if "://" in text or "=" in text:
        text = _URL_USERINFO.sub(lambda match: f"{match.group(1)}{REDACTED}@", text)
        text = _QUERY_SECRET.sub(lambda match: f"{match.group(1)}{REDACTED}", text)
    for secret in _KNOWN_SECRETS:
        spans = _secret_spans(text, secret)
        if spans:
            text = _replace_spans(text, spans)
    return text


def _secret_spans(text: str, secret: str) -> list[tuple[int, int]]:
    """Where `secret` or a run of FRAGMENT_CHARS+ of its characters occurs in `text`, any case;
    each found window grown to the whole run that matches the secret."""
    folded, key = text.lower(), secret.lower()
    window = min(FRAGMENT_CHARS, len(key))
    spans: list[tuple[int, int]] = []
    for offset in range(len(key) - window + 1):
        piece = key[offset:offset + window]
        start = folded.find(piece)
        while start >= 0:
            begin, end, key_begin, key_end = start, start + window, offset, offset + window
            while begin > 0 and key_begin > 0 and folded[begin - 1] == key[key_begin - 1]:
                begin, key_begin = begin - 1, key_begin - 1
            while end < len(folded) and key_end < len(key) and folded[end] == key[key_end]:
                end, key_end = end + 1, key_end + 1
            spans.append((begin, end))
            start = folded.find(piece, end)
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int]]) -> str:
    merged: list[list[int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    pieces, cursor = [], 0
    for begin, end in merged:
        pieces += [text[cursor:begin], REDACTED]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_address(raw: str) -> str:
    """An address a user wrote (`user:pw@host:port`, a scheme or none) fit to print: credentials,
    query tokens and remembered keys redacted."""
    host_part = raw.split("://", 1)[-1].split("/", 1)[0]
    if "@" in host_part:
        raw = raw.replace(host_part.rsplit("@", 1)[0], REDACTED, 1)
    return redact(raw)
