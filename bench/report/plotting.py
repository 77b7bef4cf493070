"""Figures for the report: one house style, units on axes, and embedding as inline SVG.

Figures are drawn on matplotlib's Agg-based `Figure` objects (no pyplot global state) and saved
as SVG written straight into the page: crisp at any zoom, text selectable and searchable (SVG
<text>, not glyph outlines), a hover title on every labelled series, and no script (matplotlib
writes none; the page's Content-Security-Policy forbids any). Each figure gets its own id salt,
so the ids of one plot's clip paths and markers never clash with another's on the same page.
Measured on the quick-start report (same run): 618 kB as base64 <img> with text as outlines; 376 kB
inline with text, the run-over-time figure and the token-rate table added.
"""

from __future__ import annotations

import html
import io
import itertools
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

_STYLE: dict[RcKeyType, Any] = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.5,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.5,
    "legend.framealpha": 0.85,
    # Text as <text>: selectable, searchable, a fraction of the bytes of outlines. The page names
    # DejaVu Sans (matplotlib's metrics) first and falls back to the reader's sans-serif.
    "svg.fonttype": "none",
    "font.family": ["DejaVu Sans"],
    "text.parse_math": False,  # a '$' in a model name or label is text, not mathtext
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
# Tableau 10: distinct hues for categories (offered loads, settings); never a sequential map.
QUALITATIVE = PALETTE
RUN_LINESTYLES: tuple[Literal["--", "-", ":", "-."], ...] = ("--", "-", ":", "-.")  # baseline dashed, current solid
SERIES_LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WIDTH_IN = 9.5


@dataclass(frozen=True)
class Plot:
    """A rendered figure: its SVG markup (from matplotlib, trusted) and the text that describes it."""

    title: str
    svg: str
    alt: str
    width_px: int
    height_px: int


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def new_figure(rows: int = 1, cols: int = 1, height_in: float = 3.6, *,
               sharex: bool = False, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A constrained-layout figure (labels never overlap) and its axes, flattened."""
    with _style():
        figure = Figure(figsize=(WIDTH_IN, height_in * rows), layout="constrained")
        axes = figure.subplots(rows, cols, sharex=sharex, sharey=sharey, squeeze=False)
    return figure, list(axes.flat)


_FIGURE_NUMBERS = itertools.count(1)


def _series_titles(figure: Figure, prefix: str) -> dict[str, str]:
    """Give every labelled line and collection a gid; gid -> its label, for hover titles."""
    titles: dict[str, str] = {}
    for ax in figure.axes:
        for number, artist in enumerate([*ax.lines, *ax.collections]):
            label = str(artist.get_label() or "")
            if label and not label.startswith("_"):
                gid = f"{prefix}-s{number}-{len(titles)}"
                artist.set_gid(gid)
                titles[gid] = label
    return titles


def render(figure: Figure, title: str, alt: str) -> Plot:
    """Save as SVG markup for the page, with hover titles, ids unique on the page."""
    prefix = f"f{next(_FIGURE_NUMBERS)}"
    titles = _series_titles(figure, prefix)
    buffer = io.StringIO()
    # The salt makes this figure's clip-path and marker ids its own (stable for the same run and order).
    with _style(), matplotlib.rc_context({"svg.hashsalt": f"bench-report-{prefix}"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    width_in, height_in = figure.get_size_inches()
    return Plot(title, _for_page(buffer.getvalue(), titles, alt), alt, int(width_in * 96), int(height_in * 96))


def _for_page(svg: str, titles: dict[str, str], alt: str) -> str:
    """matplotlib's SVG document as an element of the page: no XML prolog, sized by CSS, a title."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'<svg ([^>]*?)width="[^"]*" height="[^"]*"', r'<svg \1', svg, count=1)
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(alt)}" ', 1)
    opening = svg.index(">") + 1
    svg = svg[:opening] + f"<title>{html.escape(alt)}</title>" + svg[opening:]
    for gid, label in titles.items():
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{html.escape(label)}</title>', 1)
    return svg


def time_unit(values_s: Sequence[float] | np.ndarray) -> tuple[float, str]:
    """(multiplier, unit) so that latencies read naturally: ms below 10 s, else s."""
    finite = np.asarray(values_s, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) and float(np.max(finite)) >= 10.0:
        return 1.0, "s"
    return 1000.0, "ms"


def load_axis(ax: Axes, values: Sequence[float], label: str) -> None:
    """An x axis of offered load: log2 when it spans a wide range, ticks at the values used."""
    finite = sorted({float(v) for v in values if v is not None and math.isfinite(float(v))})
    ax.set_xlabel(label)
    if not finite:
        return
    if finite[0] > 0 and finite[-1] / finite[0] >= 8:
        ax.set_xscale("log", base=2)
        plain_tick_labels(ax.xaxis)
    if len(finite) <= 12:
        ax.xaxis.set_major_locator(FixedLocator(finite))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    if len(finite) == 1:
        ax.set_xlim(finite[0] * 0.5, finite[0] * 1.5) if finite[0] > 0 else None


def tick_counts(axis: Axis, counts: dict[float, tuple[int, int]]) -> None:
    """Tick labels `4` over `n=40` (or `n=4–24`): the sample count under each offered load."""
    def label(x: float, _pos: int | None) -> str:
        low, high = next((n for value, n in counts.items() if math.isclose(value, x, rel_tol=1e-9)), (None, None))
        if low is None:
            return f"{x:g}"
        return f"{x:g}\nn={low}" if low == high else f"{x:g}\nn={low}–{high}"

    axis.set_major_formatter(FuncFormatter(label))


def plain_tick_labels(axis: Axis) -> None:
    """Tick labels like 300 and 1000 on a log axis.

    matplotlib labels log axes in mathtext (10^3), which the style's parse_math=False (a '$' in
    a model name is text) would print raw as $\\mathdefault{10^{3}}$.
    """
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))

    def minor(x: float, _pos: int | None) -> str:
        # 2 and 5 between the powers of ten only on a short axis: over more than about a decade
        # "1000" and "2000" sit closer than their width (seen on the sizing report's TTFT CDFs).
        low, high = sorted(axis.get_view_interval())
        powers = math.floor(math.log10(high)) - math.ceil(math.log10(low)) + 1 if low > 0 else 0
        short = low > 0 and (math.log10(high / low) <= 1.2 or powers < 2)  # else the powers of ten suffice
        return f"{x:g}" if short and f"{x:g}"[0] in "25" else ""

    axis.set_minor_formatter(FuncFormatter(minor))


# Space above the highest point, as a share of the axis: a flat series or a marker at the maximum
# is drawn inside the plot, not on (and cut by) its top edge.
HEADROOM = 0.10
# A latency axis whose values span this ratio or more is drawn on a log scale: a linear axis to
# 10 s leaves a 500 ms SLO and every warm cell in a strip along the bottom.
LOG_SPAN = 10.0


def headroom(ax: Axes, fraction: float = HEADROOM) -> None:
    """Raise the top of the y axis by `fraction` of its span (in decades on a log axis)."""
    bottom, top = ax.get_ylim()
    if ax.get_yscale() == "log" and bottom > 0 and top > bottom:
        ax.set_ylim(bottom, top * (top / bottom) ** fraction)
    elif top > bottom:
        ax.set_ylim(bottom, top + (top - bottom) * fraction)


def spans_decades(values: Sequence[float] | np.ndarray) -> bool:
    """Whether positive finite values span LOG_SPAN or more (a log axis shows them better)."""
    data = np.asarray(values, dtype=float).ravel()
    data = data[np.isfinite(data) & (data > 0)]
    return len(data) > 1 and float(data.max()) / float(data.min()) >= LOG_SPAN


def latency_axis(ax: Axes, values: Sequence[float] | np.ndarray) -> bool:
    """A log y axis (plain tick labels) when the latencies span decades, else linear from 0; True if log."""
    if spans_decades(values):
        ax.set_yscale("log")
        plain_tick_labels(ax.yaxis)
        return True
    ax.set_ylim(bottom=0)
    return False


def interval_bars(ax: Axes, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str,
                  center: np.ndarray | None = None) -> None:
    """Vertical interval bars (e.g. a bootstrap 95% CI) where both ends are known; nothing elsewhere."""
    x, low, high = (np.asarray(a, dtype=float) for a in (x, low, high))
    known = np.isfinite(x) & np.isfinite(low) & np.isfinite(high)
    if not known.any():
        return
    mid = (low + high) / 2 if center is None else np.asarray(center, dtype=float)
    below, above = np.clip(mid - low, 0, None), np.clip(high - mid, 0, None)
    ax.errorbar(x[known], mid[known], yerr=[below[known], above[known]], fmt="none", ecolor=color,
                elinewidth=1.0, capsize=3, alpha=0.85)


def figure_legend(figure: Figure, ax: Axes, columns: int = 3) -> None:
    """One legend for the whole figure, below the plots (constrained layout makes room for it)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=min(columns, len(handles)))


def legend(ax: Axes, title: str | None = None) -> None:
    """A legend outside the data when there are many entries, else in the best corner."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) > 6:
        # About ten entries fit beside a plot of ordinary height; more go into further columns.
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0,
                  ncols=math.ceil(len(handles) / 10), fontsize="small" if len(handles) > 10 else None)
    else:
        ax.legend(title=title, loc="best")


def shorten(text: str, limit: int = 48) -> str:
    """Long labels cut with an ellipsis, so tick labels and legends stay readable."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def bar_height_in(count: int) -> float:
    """Height for a horizontal bar chart of `count` rows."""
    return min(12.0, 1.2 + 0.32 * max(count, 1))


def series_style(names: list[str], name: str, run_index: int, runs: int) -> dict[str, Any]:
    """Colour by series, line style by run (baseline dashed when comparing): keyword arguments of
    Axes.plot, whose **kwargs matplotlib types as Any."""
    index = names.index(name) if name in names else 0
    # Hollow markers and distinct dashes keep lines that coincide (native and OpenAI often do) visible.
    style: dict[str, Any] = {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
                                "markersize": 6, "markerfacecolor": "none", "markeredgewidth": 1.4,
                                "linewidth": 1.6, "alpha": 0.9}
    if runs > 1:
        style["linestyle"] = RUN_LINESTYLES[run_index % len(RUN_LINESTYLES)]
    else:
        style["linestyle"] = SERIES_LINESTYLES[index % len(SERIES_LINESTYLES)]
    return style


def series_label(name: str, run_label: str, runs: int, suffix: str = "") -> str:
    parts = ([run_label] if runs > 1 else []) + ([name] if name else []) + ([suffix] if suffix else [])
    return shorten(" · ".join(parts) or "all cells", 60)
