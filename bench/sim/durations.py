"""Go-style duration and byte-size parsing, as Ollama's api/types.go and envconfig do it."""

from __future__ import annotations

import math
import re

from bench.sim.config_errors import SimConfigError

# A negative keep_alive means "never unload" (api.Duration maps it to MaxInt64); inf models that.
NEVER_S = math.inf

_GO_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration_s(text: str) -> float:
    """Parse a Go time.ParseDuration string ("5m", "1h30m", "300ms", "-1s", "0") into seconds."""
    stripped = text.strip()
    sign = 1.0
    if stripped[:1] in "+-" and stripped:
        sign = -1.0 if stripped[0] == "-" else 1.0
        stripped = stripped[1:]
    if stripped == "0":
        return 0.0
    if not stripped:
        raise ValueError(f"invalid duration {text!r}")
    position = 0
    total_s = 0.0
    for match in _GO_PART.finditer(stripped):
        if match.start() != position:
            raise ValueError(f"invalid duration {text!r}")
        total_s += float(match.group(1)) * _GO_UNITS_S[match.group(2)]
        position = match.end()
    if position != len(stripped):
        raise ValueError(f"invalid duration {text!r}")
    return sign * total_s


def keep_alive_s(value: object) -> float:
    """A keep_alive as Ollama accepts it: number of seconds, or a duration string; negative = never.

    Like envconfig.KeepAlive, a bare integer string counts as seconds.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration_s(value)
        except ValueError:
            try:
                seconds = float(int(value.strip()))
            except ValueError:
                raise ValueError(f"time: invalid duration {value!r}") from None
    else:
        raise ValueError(f"invalid keep_alive {value!r}")
    return NEVER_S if seconds < 0 else seconds


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_FACTORS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(text: str, field: str) -> int:
    """Parse "24GiB", "80GB", "512MiB" or a plain byte count."""
    match = _SIZE.match(text)
    if not match:
        raise SimConfigError(f"{field}: cannot read {text!r} as a size (e.g. 24GiB, 80GB, 25769803776)")
    factor = _SIZE_FACTORS[(match.group(2) or "b").lower()]
    return int(float(match.group(1)) * factor)
