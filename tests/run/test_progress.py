"""Live progress: measured requests only, on the summary's definitions; warmup shown apart; plain
lines off a terminal; the end-of-run table with goodput and SLO verdicts, one precision per column."""

from __future__ import annotations

import dataclasses
import io

import pandas as pd
import pytest
from rich.console import Console

from bench.analysis.metrics import cell_summary
from bench.records import RequestRecord
from bench.outputs.summary import summary_table
from bench.run.progress import RunProgress, _CellStats


def record(index: int, sent_s: float, ttft_s: float, tokens: int, *, phase: str = "measure",
           error: str | None = None, repeat: int = 0) -> RequestRecord:
    first = sent_s + ttft_s
    chunks = [first + i * 0.01 for i in range(tokens)] if error is None else []
    return RequestRecord(cell_id="c", request_index=index, surface="native", endpoint="chat", model="m",
                         repeat=repeat, phase=phase, scheduled_s=sent_s, sent_s=sent_s,
                         first_token_s=first if error is None else None,
                         end_s=(chunks[-1] if chunks else sent_s) + 0.001, chunk_times_s=chunks,
                         status=200 if error is None else 500, error_class=error,
                         output_tokens=tokens if error is None else None)


RECORDS = [
    record(0, 0.0, 5.0, 8, phase="warmup"),  # a slow warmup (cold load) must not count
    *[record(i, 1.0 + 0.3 * i, 0.1 + 0.01 * i, 10 + i) for i in range(1, 8)],
    record(8, 3.5, 0.0, 0, error="server_error"),
    *[record(i, 4.0 + 0.2 * i, 0.12, 12, repeat=1) for i in range(1, 4)],
]


def test_live_figures_agree_with_the_summary() -> None:
    stats = _CellStats()
    for item in RECORDS:
        stats.add(item)
    frame = pd.DataFrame([dataclasses.asdict(item) for item in RECORDS])
    summary = cell_summary(frame).loc["c"]
    assert stats.warmup == 1 and stats.measured == len(RECORDS) - 1 and stats.errors == 1
    assert stats.ttft_p50_s() == pytest.approx(summary.ttft_p50_s)
    assert stats.output_tps() == pytest.approx(summary.output_tps)


def test_plain_lines_off_a_terminal_show_warmup_elapsed_and_the_live_figures() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    progress = RunProgress(console, total_cells=2)
    progress.start_cell(0, "native/chat c=4", expected=10, warmup=1)
    for item in RECORDS[:5]:
        progress.record(item)
    progress.end_cell("complete")
    progress.close()
    text = out.getvalue()
    assert "cell 1/2 native/chat c=4" in text
    assert "warmup 1, 4/10 measured" in text and "TTFT p50" in text and "tok/s" in text
    assert "elapsed 0:0" in text and "run ETA" in text
    assert "\x1b[" not in text  # no bars or colours in a log file


def test_bars_on_a_terminal_show_run_and_cell_progress() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True)
    progress = RunProgress(console, total_cells=3)
    progress.status("starting the simulator (bench sim)…")
    progress.start_cell(0, "c=1", expected=7, warmup=1)
    progress.record(RECORDS[0])
    assert "warmup 1/1" in progress._cell_description() or progress.stats.warmup == 1
    for item in RECORDS[1:8]:
        progress.record(item)
    assert progress.progress is not None
    cell_task = progress.progress.tasks[-1]
    assert cell_task.completed == 8 and cell_task.total == 8
    assert "TTFT p50" in cell_task.fields["stats"]
    progress.end_cell("complete")
    assert progress.progress.tasks[0].completed == 1  # the run bar: one of three cells
    progress.close()
    assert "cell 1/3 c=1" in out.getvalue()


def test_end_of_run_table_shows_goodput_and_slo_verdicts_with_one_precision_per_column() -> None:
    summary = pd.DataFrame({"ok": [10, 10], "requests": [10, 10], "rejected": [0, 0], "errors": [0, 0],
                            "ttft_p50_s": [0.011, 0.00864], "ttft_p95_s": [0.02, 0.9], "tpot_p50_s": [0.005, 0.006],
                            "tpot_p95_s": [0.005, 0.006], "output_tps": [100.0, 150.0], "rps": [2.0, 3.0],
                            "goodput_rps": [2.0, 0.5]}, index=["a", "b"])
    console = Console(width=250, record=True, force_terminal=False)
    console.print(summary_table(summary, {"a": "c=1", "b": "c=8"}, {"ttft_p95": "500ms"}))
    text = console.export_text()
    assert "goodput req/s" in text and "SLOs" in text
    assert "met" in text and "misses ttft_p95" in text
    assert "(n=10: too few for ttft_p95)" in text  # a p95 SLO judged on 10 requests says so
    assert "11.00" in text and "8.64" in text  # same decimals in the TTFT p50 column
    plain = Console(width=250, record=True)
    plain.print(summary_table(summary, {"a": "c=1", "b": "c=8"}))
    assert "goodput" not in plain.export_text()


def test_end_of_run_says_when_p95s_rest_on_too_few_requests(tmp_path) -> None:  # noqa: ANN001
    from bench.load.health import ClientHealth
    from bench.outputs.summary import print_summary

    summary = pd.DataFrame({"ok": [16, 64], "requests": [16, 64], "rejected": [0, 0], "errors": [0, 0],
                            "ttft_p95_s": [0.2, 0.2]}, index=["a", "b"])
    console = Console(width=250, record=True)
    print_summary(console, tmp_path, "complete", None, summary, {"a": 0, "b": 1}, {"a": "c=1", "b": "c=2"},
                  ClientHealth(cpu_s=1.0, wall_s=10.0, dispatch_lag_p99_s=0.001, saturated=False), [])
    text = console.export_text()
    assert "1 of 2 cells have fewer than 40 successful requests" in text


def test_bars_at_80_columns_trim_the_label_and_keep_every_figure() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, record=True)
    progress = RunProgress(console, total_cells=25)
    progress.start_cell(0, "native/chat llama3.1:8b num_ctx=16384 c=16 NP=8", expected=60, warmup=1)
    for item in RECORDS[:8]:
        progress.record(item)
    assert progress.progress is not None
    table = progress.progress.make_tasks_table(progress.progress.tasks)
    render = Console(width=80, record=True, file=io.StringIO())
    render.print(table)
    lines = render.export_text().splitlines()
    stats = progress.progress.tasks[-1].fields["stats"]
    assert all(len(line) <= 80 for line in lines)
    assert any(stats in line for line in lines), (stats, lines)  # TTFT and tok/s in full
    assert any("8/61" in line for line in lines)
    progress.close()


def test_end_of_run_table_fits_80_columns_with_every_figure_whole() -> None:
    summary = pd.DataFrame({"ok": [50, 60], "requests": [50, 60], "rejected": [0, 0], "errors": [0, 0],
                            "ttft_p50_s": [0.238, 1.181], "ttft_p95_s": [0.262, 1.247], "tpot_p50_s": [0.00303, 0.00591],
                            "tpot_p95_s": [0.003, 0.0062], "output_tps": [202.3, 988.6], "rps": [1.58, 7.72],
                            "goodput_rps": [1.58, 0.0]}, index=["a", "b"])
    labels = {"a": "c=1 NP=1", "b": "c=16 NP=8"}
    slos = {"ttft_p95": "500ms", "tpot_p95": "5.5ms"}
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(summary_table(summary, labels, slos, width=80))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    for figure in ("50/50", "238", "1247", "5.91", "989", "1.58", "c=16 NP=8", "p50 ms", "misses", "ttft_p95"):
        assert figure in text, figure
    assert "rej" not in text and "err " not in text  # no rejections or errors anywhere: columns left out
    wide = Console(width=250, record=True, file=io.StringIO())
    wide.print(summary_table(summary, labels, slos, width=250))
    wide_text = wide.export_text()
    assert "rej" in wide_text and "TTFT p50 ms" in wide_text
