"""Section: latency statistics — mean, standard deviation and the scenario's percentiles per cell."""

from __future__ import annotations

from bench.outputs.statistics import SMALL_N_NOTE, statistics_rows
from bench.report.data import RunView
from bench.report.page import Block, Section, Table


def build(views: list[RunView]) -> Section | None:
    blocks: list[Block] = []
    for view in views:
        if view.cells.empty:
            continue
        percentiles = view.analysis.percentiles
        labels = {str(cell_id): str(label) for cell_id, label in view.cells["label"].items()}
        header, rows = statistics_rows(view.cells, labels, percentiles, intervals=True)
        if not rows:
            continue
        caption = f"{view.label}: " if len(views) > 1 else ""
        blocks.append(Table(tuple(header), tuple(tuple(row) for row in rows),
                            caption + "milliseconds; n = successful measured requests. " + SMALL_N_NOTE,
                            numeric=(False, False) + (True,) * (len(header) - 2)))
    if not blocks:
        return None
    return Section("statistics", "Latency statistics",
                   "Mean, sample standard deviation (n-1) and the percentiles the scenario asked for "
                   "(`percentiles:`, default 50, 90, 95, 99; numpy's linear interpolation) of each "
                   "latency, per cell. ITL pools every gap between tokens of every request.",
                   tuple(blocks))
