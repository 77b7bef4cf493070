"""Figures for the report: one house style, units on axes, and embedding as a data: URI.

Figures are drawn on matplotlib's Agg-based `Figure` objects (no pyplot global state) and saved
as SVG inside an <img src="data:image/svg+xml;base64,...">: crisp at any zoom, and an SVG loaded
as an image can run no script and cannot clash with the ids of the other plots on the page.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

_STYLE = {
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
    "svg.fonttype": "path",  # text as outlines: the SVG looks the same without our fonts
    "svg.hashsalt": "bench-report",  # stable ids: the same run gives the same file
    "text.parse_math": False,  # a '$' in a model name or label is text, not mathtext
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
# Tableau 10: distinct hues for categories (offered loads, settings); never a sequential map.
QUALITATIVE = PALETTE
RUN_LINESTYLES = ("--", "-", ":", "-.")  # baseline dashed, current solid
SERIES_LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
WIDTH_IN = 9.5


@dataclass(frozen=True)
class Plot:
    """A rendered figure: its data: URI and the text that describes it."""

    title: str
    data_uri: str
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


def render(figure: Figure, title: str, alt: str) -> Plot:
    """Save as SVG and wrap it as a data: URI."""
    buffer = io.BytesIO()
    with _style():
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    width_in, height_in = figure.get_size_inches()
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Plot(title, f"data:image/svg+xml;base64,{encoded}", alt,
                int(width_in * 96), int(height_in * 96))


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


def plain_tick_labels(axis: Axis) -> None:
    """Tick labels like 300 and 1000 on a log axis.

    matplotlib labels log axes in mathtext (10^3), which the style's parse_math=False (a '$' in
    a model name is text) would print raw as $\\mathdefault{10^{3}}$.
    """
    axis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda x, _pos: f"{x:g}" if f"{x:g}"[0] in "25" else ""))


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


def series_style(names: list[str], name: str, run_index: int, runs: int) -> dict[str, object]:
    """Colour by series, line style by run (baseline dashed when comparing)."""
    index = names.index(name) if name in names else 0
    # Hollow markers and distinct dashes keep lines that coincide (native and OpenAI often do) visible.
    style: dict[str, object] = {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
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
