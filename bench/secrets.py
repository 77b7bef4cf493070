"""The API key of this process: read and checked once, redacted from any text shown or stored."""

from __future__ import annotations

import os

from bench.errors import UsageError

_KNOWN_SECRETS: set[str] = set()
REDACTED = "[redacted]"


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
    """`text` with every remembered secret replaced by [redacted]."""
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
