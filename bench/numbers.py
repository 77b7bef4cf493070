"""Numbers in and out: the upper bounds on every number a scenario or flag gives, and the one way
bench writes a number for people (sizes, milliseconds, durations, a column at one precision, and
the report's table cells, '–' where nothing was measured).

No imports beyond the standard library: the CLI reads the bounds at start. The bounds are far
beyond any real benchmark, well inside the 64-bit range NumPy, Arrow and Ollama use: a value past
them is a typo, not a study.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

MAX_COUNT = 10_000_000  # requests, tokens, warmup requests
MAX_CONCURRENCY = 10_000  # workers are real coroutines: two million of them exhaust memory
MAX_SECONDS = 7 * 24 * 3600.0  # durations, timeouts, gaps: a week
MAX_RATE_RPS = 1_000_000.0
# Cells of one scenario (the matrix's product, sweep steps included): counted before expanding,
# so three 1000-value lists are refused at once instead of building 10^9 cells.
MAX_CELLS = 10_000
# Cells one report draws (all its runs together): the page plots every cell, ~46 ms of CPU each
# (2,000 cells: 92 s CPU, 4.6 min wall on a busy 2-core box); summary.csv holds any number.
MAX_REPORT_CELLS = 1_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Aliases may share YAML nodes; a scenario expanding past this many is an alias bomb.
MAX_YAML_NODES = 100_000


def is_missing(value: Any) -> bool:
    """None or NaN: not measured."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def gib(size_bytes: float | None) -> str:
    """A size in the one-line reasons bench prints: 23.1 GiB; 'n/a' when unknown."""
    return "n/a" if size_bytes is None else f"{size_bytes / 2**30:.1f} GiB"


def binary_size(size_bytes: float) -> str:
    """Binary units, three significant figures: 1073741824 → '1.00 GiB', 11489037517 → '10.7 GiB'."""
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B" or abs(value) >= 100:
        return f"{value:.0f} {unit}"
    return f"{value:.1f} {unit}" if abs(value) >= 10 else f"{value:.2f} {unit}"


def clock_time(seconds: float) -> str:
    """Elapsed time as a clock shows it: 0:42, 12:05, 1:02:03."""
    whole = max(0, int(seconds))
    if whole >= 3600:
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{whole // 60}:{whole % 60:02d}"


def decimals_for(values: Iterable[Any], significant: int = 3, most: int = 2) -> int:
    """Decimals that give the smallest value `significant` figures (at most `most`), so every row of
    a column has the same precision (`11.0` beside `8.64` would not)."""
    finite = [abs(float(v)) for v in values if not is_missing(v) and v != 0]
    if not finite:
        return 0
    magnitude = math.floor(math.log10(min(finite)))
    return max(0, min(most, significant - 1 - magnitude))


def fixed(value: Any, decimals: int) -> str:
    """`value` with `decimals` decimals; '-' when not measured."""
    return "-" if is_missing(value) else f"{float(value):.{decimals}f}"


def column(values: Iterable[Any], scale: float = 1.0) -> list[str]:
    """A table column of numbers (times `scale`) at one precision; '-' for those not measured."""
    scaled = [None if is_missing(v) else float(v) * scale for v in values]
    decimals = decimals_for(scaled)
    return [fixed(v, decimals) for v in scaled]


# The report's and the statistics tables' cells: '–' where nothing was measured.
DASH = "–"
# A figure missing from a one-line reason ('ttft_p95 n/a (SLO 500ms)').
NOT_AVAILABLE = "n/a"


def figure(value: Any, decimals: int, unit: str = "", *, scale: float = 1.0, sign: bool = False,
           missing: str = DASH) -> str:
    """`value` × `scale` at `decimals` decimals, `unit` appended as given ('%', ' ms'), with a sign
    when `sign`: (0.1234, 1, '%', scale=100) → '12.3%'; `missing` when not a finite number."""
    number = _number(value)
    if number is None:
        return missing
    return f"{number * scale:{'+' if sign else ''}.{decimals}f}{unit}"


def significant(value: Any, figures: int = 3, unit: str = "", *, scale: float = 1.0, sign: bool = False,
                missing: str = DASH) -> str:
    """`value` × `scale` to `figures` significant figures ('g': no trailing zeros), `unit` appended as
    given: (0.0123,) → '0.0123'; (0.1, 6, '%', scale=100, sign=True) → '+10%'; `missing` when not finite."""
    number = _number(value)
    if number is None:
        return missing
    return f"{number * scale:{'+' if sign else ''}.{figures}g}{unit}"


def compact_seconds(value_s: Any, missing: str = NOT_AVAILABLE) -> str:
    """A duration in a one-line reason, no space: 0.5123 → '512ms', 1.5 → '1.50s'."""
    number = _number(value_s)
    if number is None:
        return missing
    return significant(number, 3, "ms", scale=1000) if number < 1 else figure(number, 2, "s")


def milliseconds(value_s: Any) -> str:
    """Seconds as milliseconds to 3 significant figures, no exponent: 0.1912 → '191'; DASH if missing."""
    number = _number(value_s)
    if number is None:
        return DASH
    return fixed(number * 1000, decimals_for([number * 1000]))


def _number(value: Any) -> float | None:
    """A stored value as a float; None when missing (None, NaN, pandas' NA), infinite (a ratio over
    zero) or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def seconds(value_s: Any) -> str:
    """A duration with its unit, three figures: 0.1234 → '123 ms'; 0.0004 → '0.400 ms'; 12.3 → '12.30 s'."""
    number = _number(value_s)
    if number is None:
        return DASH
    if abs(number) >= 10:
        return f"{number:.2f} s"
    ms = number * 1000
    if ms != 0 and abs(ms) < 1:
        return f"{ms:.3f} ms"
    return f"{ms:.1f} ms" if abs(ms) < 100 else f"{ms:.0f} ms"


def rate(value: Any, unit: str = "") -> str:
    """A rate (tok/s, req/s): one decimal from 10 up, two below."""
    number = _number(value)
    if number is None:
        return DASH
    text = f"{number:.1f}" if abs(number) >= 10 else f"{number:.2f}"
    return f"{text} {unit}".strip()


def percent(value: Any) -> str:
    """A fraction as a percentage: 0.123 → '12.3%'."""
    number = _number(value)
    if number is None:
        return DASH
    return "0%" if number == 0 else f"{number * 100:.1f}%"


def size_gib(value_bytes: Any) -> str:
    """A size in a table cell: '2.00 GiB' (gib() is the one-decimal form of printed reasons)."""
    number = _number(value_bytes)
    return DASH if number is None else f"{number / 2**30:.2f} GiB"


def integer(value: Any) -> str:
    """A count, or a mean of counts, rounded: '512'."""
    number = _number(value)
    return DASH if number is None else f"{number:.0f}"


def change(baseline: Any, current: Any) -> str:
    """Relative change, signed: '+12.3%'."""
    base, now = _number(baseline), _number(current)
    if base is None or now is None or base == 0:
        return DASH
    return f"{(now - base) / base * 100:+.1f}%"


def text(value: Any) -> str:
    """Any stored value as text; DASH when missing."""
    return DASH if is_missing(value) else str(value)
