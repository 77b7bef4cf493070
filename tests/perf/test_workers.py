"""`bench perf --workers N`: streams split over processes, records merged on one time axis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.perf.emitter_proc import EmitterProcess, running_emitter
from bench.perf.workers import run_workers, split_streams


@pytest.fixture(scope="module")
def emitter() -> Iterator[EmitterProcess]:
    with running_emitter(tokens=8) as process:
        yield process


def test_streams_split_evenly_and_every_worker_gets_one() -> None:
    assert split_streams(10, 3) == [4, 3, 3]
    assert split_streams(8, 2) == [4, 4]
    assert split_streams(2, 4) == [1, 1]  # never a worker with nothing to do


def test_two_workers_merge_into_one_run_on_the_parents_clock(emitter: EmitterProcess) -> None:
    step, records, clock = run_workers(emitter.base_url, "native", 6, 2, duration_s=1.5,
                                       cpus=[None], tokens=8, transport="fast", cell_id="w")
    finished_s = clock.now_s()
    assert step.concurrency == 6 and step.errors == 0
    assert step.ok == len(records) > 0
    assert step.tokens == sum(len(record.chunk_times_s) for record in records) == 8 * step.ok
    by_worker = {worker: [r for r in records if r.worker == worker] for worker in (0, 1)}
    assert all(by_worker.values()), "each worker sent requests"
    for worker_records in by_worker.values():
        assert all(0 < r.sent_s < r.end_s <= finished_s for r in worker_records)  # type: ignore[operator]
    # One time axis: the workers' measured windows (both opened by the barrier) overlap.
    windows = [(min(r.sent_s for r in rs), max(r.end_s for r in rs))  # type: ignore[type-var]
               for rs in by_worker.values()]
    assert max(start for start, _ in windows) < min(end for _, end in windows)
