"""Section 4: rejections (503 from a full queue) and errors against offered load, by error class."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.records import ERROR_CLASSES
from bench.report import plotting
from bench.report.data import RunView, load_label, load_series
from bench.report.page import Block, Figure, Note, Section, Table

_CLASS_COLORS = dict(zip(ERROR_CLASSES, ("#ff7f0e", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f",
                                             "#bcbd22")))
_MESSAGE_LIMIT = 240


def build(views: list[RunView]) -> Section | None:
    failed = {v.label: _failed(v.measured) for v in views}
    if not any(len(frame) for frame in failed.values()):
        return None
    blocks: list[Block] = []
    for kind in ("closed", "open"):
        lines = load_series(views, kind)
        if lines:
            blocks.append(Figure(_rates_against_load(views, kind)))
    blocks.append(Figure(_outcomes_per_cell(views),
                         "rejected: HTTP 503, the server's pending queue (OLLAMA_MAX_QUEUE) was full; "
                         "client_error: other 4xx; server_error: other 5xx or an error inside the stream; "
                         "timeout, disconnected, bad_stream: the connection or stream failed."))
    blocks.append(_classes_table(views, failed))
    blocks.extend(_queue_verdicts(views))
    return Section("errors", "Rejections and errors",
                   "Requests that did not succeed, by offered load and by kind.", tuple(blocks))


def _failed(measured: pd.DataFrame) -> pd.DataFrame:
    if measured.empty or "error_class" not in measured:
        return measured.iloc[0:0]
    return measured[measured["error_class"].notna()]


def _rates_against_load(views: list[RunView], kind: str) -> plotting.Plot:
    lines = load_series(views, kind)
    names = list(dict.fromkeys(line.name for line in lines))
    # Only the panels that have something to show: a flat zero line explains nothing.
    panels = [(column, title) for column, title in (("rejection_rate", "Rejected (503) against load"),
                                                    ("error_rate", "Other errors against load"))
              if any((line.cells[column].fillna(0) > 0).any() for line in lines)]
    panels = panels or [("rejection_rate", "Rejected (503) against load")]
    figure, axes = plotting.new_figure(1, len(panels), height_in=3.3)
    xs: list[float] = []
    for line in lines:
        style = plotting.series_style(names, line.name, line.run_index, len(views))
        label = plotting.series_label(line.name, line.run_label, len(views))
        x = line.cells["offered_load"].to_numpy(float)
        xs.extend(x)
        for ax, (column, _) in zip(axes, panels):
            ax.plot(x, line.cells[column].to_numpy(float) * 100, label=label, **style)
    for ax, (_, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_ylabel("share of requests (%)")
        ax.set_ylim(-2, 102)
        plotting.load_axis(ax, xs, load_label(kind).replace("offered load: ", ""))
    plotting.figure_legend(figure, axes[0])
    return plotting.render(figure, "Rejections and errors against offered load",
                           "Two line charts: percentage of requests rejected and failed against offered load.")


def _outcomes_per_cell(views: list[RunView]) -> plotting.Plot:
    rows = []
    for view in views:
        measured = view.measured
        for cell_id in view.cells.index:
            cell = measured[measured["cell_id"] == cell_id] if len(measured) else measured
            counts = cell["error_class"].fillna("ok").value_counts() if len(cell) else pd.Series(dtype=int)
            prefix = f"{view.label} · " if len(views) > 1 else ""
            rows.append({"label": prefix + str(view.cells.at[cell_id, "label"]), **counts.to_dict()})
    frame = pd.DataFrame(rows).fillna(0)
    classes = ["ok"] + [c for c in ERROR_CLASSES if c in frame] + sorted(
        c for c in frame.columns if c not in ERROR_CLASSES and c not in ("ok", "label"))
    figure, (ax,) = plotting.new_figure(1, 1, height_in=plotting.bar_height_in(len(frame)) + 0.7)
    y = np.arange(len(frame))
    left = np.zeros(len(frame))
    for name in classes:
        if name not in frame:
            continue
        widths = frame[name].to_numpy(float)
        ax.barh(y, widths, left=left, height=0.65, label=name,
                color="#c7d3e3" if name == "ok" else _CLASS_COLORS.get(name, "#444444"))
        left += widths
    ax.set_yticks(y, [plotting.shorten(label, 40) for label in frame["label"]])
    ax.invert_yaxis()
    ax.set_xlabel("measured requests (count)")
    ax.set_title("Outcome of every measured request, per cell")
    plotting.figure_legend(figure, ax, columns=4)
    return plotting.render(figure, "Outcome per cell",
                           "Stacked bars: successful, rejected and failed requests per cell.")


def _classes_table(views: list[RunView], failed: dict[str, pd.DataFrame]) -> Table:
    rows = []
    for view in views:
        frame = failed[view.label]
        if frame.empty:
            continue
        status = frame["status"].map(lambda s: "none" if pd.isna(s) else str(int(s)))
        for (error_class, code), group in frame.groupby([frame["error_class"], status], sort=True):
            labels = [str(view.cells.at[c, "label"]) if c in view.cells.index else str(c)
                      for c in dict.fromkeys(group["cell_id"])]
            message = next((str(m) for m in group["error_message"] if isinstance(m, str) and m), "")
            if len(message) > _MESSAGE_LIMIT:
                message = message[: _MESSAGE_LIMIT - 1] + "…"
            rows.append(((view.label,) if len(views) > 1 else ()) + (
                str(error_class), code, str(len(group)), ", ".join(labels[:8]) + (" …" if len(labels) > 8 else ""),
                message))
    columns = (("run",) if len(views) > 1 else ()) + ("error class", "HTTP status", "requests", "cells",
                                                       "example message (from the server or the client)")
    numeric = tuple(c in ("requests",) for c in columns)
    return Table(columns, tuple(rows), caption="Failures by class", numeric=numeric)


def _queue_verdicts(views: list[RunView]) -> list[Block]:
    """Where 503s came from (bench.analysis.server_studies.queue_study), for runs that had rejections."""
    blocks: list[Block] = []
    for view in views:
        if not (view.cells["rejected"] > 0).any():
            continue
        try:
            from bench.analysis.server_studies import queue_study

            cells = queue_study(view.run)
        except Exception as error:  # noqa: BLE001 - an analysis bug must not cost the whole report
            blocks.append(Note(f"Queue analysis unavailable: {type(error).__name__}: {error}", "warning"))
            continue
        labels = view.cells["label"].to_dict()
        rows = tuple((str(labels.get(c.cell_id, c.cell_id)), c.model_state, str(c.rejected), str(c.rejected_while_loading),
                      str(c.rejected_while_warm), c.verdict) for c in cells if c.rejected > 0)
        if rows:
            blocks.append(Table(("cell", "model was", "rejected", "while loading", "while warm", "verdict"), rows,
                                caption=f"Where the 503s came from{' — ' + view.label if len(views) > 1 else ''}",
                                numeric=(False, False, True, True, True, False)))
    return blocks
