"""The run-over-time section (throughput, in flight, TTFT, failures, server-reported memory per
cell's span) and the memory answer from /api/ps on hosts without NVML."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.run_analysis import analyse_run
from bench.records import load_run
from bench.report import write_report
from bench.report.data import build_views
from bench.report.timeline import cell_spans, in_flight, output_rate


def _html(run_dir: Path) -> str:
    return write_report([run_dir], run_dir / "report.html").read_text(encoding="utf-8")


def _section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def test_in_flight_steps_up_at_sends_and_down_at_ends() -> None:
    requests = pd.DataFrame({"sent_s": [0.0, 1.0, 2.0], "end_s": [2.0, 3.0, 2.5]})
    times, flying = in_flight(requests)
    # At t=2.0 one request ends as another starts: the end is counted first, so no false peak of 3.
    assert list(times) == [0.0, 1.0, 2.0, 2.0, 2.5, 3.0]
    assert list(flying) == [1, 2, 1, 2, 1, 0]


def test_output_rate_puts_each_chunk_in_the_bin_it_arrived_in() -> None:
    requests = pd.DataFrame({"chunk_times_s": [[0.1, 0.2, 1.5], [1.6]], "output_tokens_used": [6.0, 1.0]})
    rate = output_rate(requests, np.array([0.0, 1.0, 2.0]))
    assert rate == pytest.approx([4.0, 3.0])  # two chunks of 2 tokens; one of 2 and one of 1


def test_every_run_gets_a_timeline_with_its_cells_numbered(make_run: Callable[..., Path]) -> None:
    run = make_run(concurrencies=(1, 2), surfaces=("native",), rejected_at=2)
    view = build_views([analyse_run(load_run(run))])[0]
    spans = cell_spans(view)
    assert [s.number for s in spans] == [1, 2]
    assert spans[0].end_s <= spans[1].start_s + 1e-9
    section = _section(_html(run), "timeline")
    assert "Stacked time series over the whole run" in section and "503 rejections" in section


def test_hosts_without_nvml_get_the_servers_memory_figure_labelled_as_such(make_run: Callable[..., Path]) -> None:
    run = make_run(ps=True, gpu=False, surfaces=("native",), concurrencies=(1, 2))
    peaks = analyse_run(load_run(run)).ps_peaks
    assert (peaks["size_bytes"] == 3.4 * 2**30).all()
    memory = _section(_html(run), "memory")
    assert "No NVML on this host" in memory and "size (server-reported)" in memory
    assert "3.40 GiB" in memory and "not a measurement by bench" in memory
    assert "server-reported model memory" in _section(_html(run), "timeline")


def test_with_nvml_the_server_figure_is_not_offered_as_the_answer(make_run: Callable[..., Path]) -> None:
    run = make_run(ps=True, gpu=True, surfaces=("native",), concurrencies=(1,))
    assert "No NVML on this host" not in _html(run)
