"""Section 7: the native API against the OpenAI-compatible API on otherwise identical cells."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench import numbers as fmt
from bench.report import plotting
from bench.report.data import RunView, describe_settings
from bench.report.page import Block, Figure, Section, Table

_METRICS = (("TTFT p50", "ttft_p50_s", True), ("TPOT p50", "tpot_p50_s", True),
            ("output tok/s", "output_tps", False))


def matched_pairs(view: RunView) -> list[tuple[str, str, str]]:
    """(label, native cell_id, openai cell_id) for cells whose settings differ only in surface."""
    if "surface" not in view.cells:
        return []
    by_key: dict[str, dict[str, str]] = {}
    for cell_id, settings in view.manifest.cell_settings().items():
        if cell_id in view.cells.index and settings.surface is not None:
            key = repr({name: value for name, value in settings.row().items() if name != "surface"})
            by_key.setdefault(key, {})[settings.surface] = cell_id
    names = [n for n in view.varying if n not in ("surface", "endpoint")]
    pairs = []
    for surfaces in by_key.values():
        if "native" in surfaces and "openai" in surfaces and all(
                view.cells.at[surfaces[name], "ok"] > 0 for name in ("native", "openai")):
            native = view.cells.loc[surfaces["native"]].to_dict()
            label = describe_settings(native, ["endpoint"] if not names else names)
            label = label.replace("native/", "") if label.startswith("native/") else label
            pairs.append((label or str(native.get("endpoint")), surfaces["native"], surfaces["openai"]))
    return pairs


def build(views: list[RunView]) -> Section | None:
    pairs = {view.label: matched_pairs(view) for view in views}
    if not any(pairs.values()):
        return None
    blocks: list[Block] = []
    several = len(views) > 1
    for view in views:
        if not pairs[view.label]:
            continue
        blocks.append(Figure(_figure(view, pairs[view.label], several)))
        blocks.append(_table(view, pairs[view.label], several))
    return Section("surfaces", "Native API against OpenAI API",
                   "The same model, prompts and load sent through Ollama's native API (/api/chat, NDJSON) and "
                   "its OpenAI-compatible API (/v1/chat/completions, SSE). Note the OpenAI API ignores "
                   "keep_alive and num_ctx, so server defaults apply there.", tuple(blocks))


def _figure(view: RunView, pairs: list[tuple[str, str, str]], several: bool) -> plotting.Plot:
    figure, axes = plotting.new_figure(1, 3, height_in=plotting.bar_height_in(2 * len(pairs)) + 0.8)
    y = np.arange(len(pairs))
    for index, (ax, (title, column, is_time)) in enumerate(zip(axes, _METRICS)):
        native = np.array([view.cells.at[n, column] for _, n, _ in pairs], dtype=float)
        openai = np.array([view.cells.at[o, column] for _, _, o in pairs], dtype=float)
        scale, unit = plotting.time_unit(np.concatenate([native, openai])) if is_time else (1.0, "tokens/s")
        ax.barh(y - 0.2, np.nan_to_num(native) * scale, height=0.38, color="#1f77b4", label="native API")
        ax.barh(y + 0.2, np.nan_to_num(openai) * scale, height=0.38, color="#ff7f0e", label="OpenAI API")
        ax.set_title(title)
        ax.set_xlabel(f"{title.split()[0] if is_time else 'output'} ({unit})")
        ax.set_yticks(y, [plotting.shorten(label, 28) for label, _, _ in pairs] if index == 0 else [])
        ax.invert_yaxis()
    plotting.figure_legend(figure, axes[0], columns=2)
    figure.suptitle(f"Native against OpenAI API on matched cells{' — ' + view.label if several else ''}",
                    fontweight="bold")
    return plotting.render(figure, "Native against OpenAI API",
                           "Paired bars: TTFT, TPOT and output throughput on each API for matched cells.")


def _table(view: RunView, pairs: list[tuple[str, str, str]], several: bool) -> Table:
    from bench.analysis.recommend_basis import cell_basis, ratio_interval
    from bench.analysis.samples import percentile_change_interval

    rows = []
    ok = view.measured[view.measured["error_class"].isna()] if "error_class" in view.measured else view.measured
    for label, native, openai in pairs:
        row: tuple[str, ...] = (label, f"{int(view.cells.at[native, 'ok'])} / {int(view.cells.at[openai, 'ok'])}")
        for _, column, is_time in _METRICS:
            show = fmt.seconds if is_time else fmt.rate
            change = fmt.change(view.cells.at[native, column], view.cells.at[openai, column])
            if is_time:
                sample = column.replace("_p50_s", "_s")
                interval = percentile_change_interval(ok.loc[ok["cell_id"] == native, sample],
                                                      ok.loc[ok["cell_id"] == openai, sample], 50)
            else:
                # Throughput: the two cells' requests resampled as (tokens, e2e) pairs, as the
                # NUM_PARALLEL recommendation judges a tie (bench.analysis.recommend_basis).
                interval = ratio_interval(cell_basis(view.requests, native), cell_basis(view.requests, openai))
            # The interval on a second line: a 1400 px page showed the table's last column cut.
            change += "\n" + ("(n too small)" if interval is None else
                             f"[{interval[0] * 100:+.1f}, {interval[1] * 100:+.1f}]%")
            row += (show(view.cells.at[native, column]), show(view.cells.at[openai, column]), change)
        rows.append(row)
    columns = ("cell", "n (native / OpenAI)") + tuple(f"{name} {part}" for name, _, _ in _METRICS
                                                      for part in ("native", "OpenAI", "Δ"))
    return Table(columns, tuple(rows), caption="Matched cells (Δ: OpenAI relative to native, with the 95% "
                 "bootstrap interval of the change: of the p50 for TTFT and TPOT, of output tok/s resampling the requests' (tokens, e2e) pairs; an interval that spans 0 means no clear difference; "
                 "n too small: fewer than 10 successful requests on a side)"
                 + (f" — {view.label}" if several else ""),
                 numeric=(False,) + (True,) * (len(columns) - 1))
