"""The load engine against a fake client: concurrency bounds, arrival statistics, warmup, stops."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Callable

import pytest

from bench.clients.base import RequestSpec
from bench.load import clock as load_clock
from bench.load.control import AbortTracker, StopControl
from bench.load.cell import CellLoad, run_cell_load
from bench.load.clock import Clock, run_async, uninterrupted
from bench.load.schedules import arrival_offsets_s
from bench.records import RequestRecord


class FakeServer:
    """Answers each request after `service_s`, counting what is in flight."""

    def __init__(self, clock: Clock, service_s: float = 0.005, fail: bool = False) -> None:
        self.clock, self.service_s, self.fail = clock, service_s, fail
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent: list[RequestSpec] = []

    async def send(self, spec: RequestSpec) -> RequestRecord:
        self.sent.append(spec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        sent_s = self.clock.now_s()
        try:
            await asyncio.sleep(self.service_s)
        finally:
            self.in_flight -= 1
        return RequestRecord(
            cell_id=spec.cell_id, request_index=spec.request_index, surface=spec.surface,
            endpoint=spec.endpoint, model=spec.model, repeat=spec.repeat, phase=spec.phase,
            scheduled_s=spec.scheduled_s, sent_s=sent_s, end_s=self.clock.now_s(),
            error_class="server_error" if self.fail else None, status=500 if self.fail else 200,
        )


def make_spec(repeat: int, index: int, phase: str, scheduled_s: float) -> RequestSpec:
    return RequestSpec(cell_id="c", request_index=index, surface="native", endpoint="chat",
                       model="m", prompt="p", repeat=repeat, phase=phase,  # type: ignore[arg-type]
                       scheduled_s=scheduled_s)


def drive(load: CellLoad, server_factory=FakeServer, stop_after: int | None = None, **kwargs):  # noqa: ANN001, ANN201
    records: list[RequestRecord] = []

    async def main():  # noqa: ANN202
        clock = Clock()
        server = server_factory(clock, **kwargs)
        stop = StopControl()

        def sink(record: RequestRecord) -> None:
            records.append(record)
            if stop_after is not None and len(records) >= stop_after:
                stop.request_stop("test")

        outcome = await run_cell_load(load, make_spec, server.send, sink, clock, stop)
        return server, outcome

    server, outcome = asyncio.run(main())
    return server, outcome, records


def test_closed_loop_never_exceeds_n_in_flight_and_uses_all_n() -> None:
    server, outcome, records = drive(CellLoad(concurrency=4, requests=40), service_s=0.01)
    assert server.max_in_flight == 4
    assert len(records) == 40
    assert outcome.complete


def test_warmup_requests_come_first_and_are_marked() -> None:
    _, _, records = drive(CellLoad(concurrency=2, requests=6, warmup_requests=3))
    phases = [r.phase for r in records]
    assert phases.count("warmup") == 3 and phases.count("measure") == 6
    assert phases[:3] == ["warmup"] * 3
    # request_index is unique within (cell, repeat), warmup first.
    assert sorted(r.request_index for r in records) == list(range(9))


def test_repeats_run_the_schedule_again_with_their_index() -> None:
    _, _, records = drive(CellLoad(concurrency=1, requests=3, warmup_requests=1, repeats=2))
    assert [(r.repeat, r.phase) for r in records] == [
        (0, "warmup"), (0, "measure"), (0, "measure"), (0, "measure"),
        (1, "warmup"), (1, "measure"), (1, "measure"), (1, "measure"),
    ]


def test_closed_loop_duration_stops_dispatching_after_the_deadline() -> None:
    server, _, records = drive(CellLoad(concurrency=2, duration_s=0.3), service_s=0.02)
    assert records, "some requests were sent"
    last_scheduled = max(r.scheduled_s for r in records)
    first_scheduled = min(r.scheduled_s for r in records)
    assert last_scheduled - first_scheduled < 0.3


def test_poisson_arrivals_have_the_asked_rate_with_a_fixed_seed() -> None:
    # The schedule itself (no timing involved): 2000 exponential gaps at 50/s.
    offsets = arrival_offsets_s("poisson", 50.0, random.Random(3))
    times = [next(offsets) for _ in range(2001)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    mean_gap = sum(gaps) / len(gaps)
    assert mean_gap == pytest.approx(1 / 50, rel=0.07)  # ±3.5 standard errors of the mean
    # Exponential: the coefficient of variation is 1 (constant arrivals would give 0).
    variance = sum((g - mean_gap) ** 2 for g in gaps) / len(gaps)
    assert variance ** 0.5 / mean_gap == pytest.approx(1.0, rel=0.1)


def test_poisson_schedule_is_reproducible_and_count_limited() -> None:
    load = CellLoad(arrival="poisson", concurrency=None, rate_rps=200.0, requests=30, seed=5,
                    schedule_key="cell")
    _, _, first = drive(load)
    _, _, second = drive(load)
    assert len(first) == 30
    starts = [r.scheduled_s - first[0].scheduled_s for r in sorted(first, key=lambda r: r.request_index)]
    starts2 = [r.scheduled_s - second[0].scheduled_s for r in sorted(second, key=lambda r: r.request_index)]
    assert starts == pytest.approx(starts2, abs=0.05)


def test_open_loop_duration_counts_arrivals_within_it() -> None:
    load = CellLoad(arrival="constant", concurrency=None, rate_rps=100.0, duration_s=0.2)
    _, _, records = drive(load, service_s=0.001)
    assert len(records) == 20  # offsets 0, 0.01, ... 0.19


def test_open_loop_cap_bounds_in_flight_and_shows_up_as_dispatch_lag() -> None:
    load = CellLoad(arrival="constant", concurrency=2, rate_rps=200.0, requests=20)
    server, outcome, records = drive(load, service_s=0.05)
    assert server.max_in_flight == 2
    assert max(outcome.dispatch_lags_s) > 0.1  # requests waited for the cap


def test_stop_dispatch_keeps_completed_records_and_marks_partial() -> None:
    server, outcome, records = drive(CellLoad(concurrency=2, requests=100), stop_after=5)
    assert not outcome.complete
    assert 5 <= len(records) <= 7  # the two in flight at the stop finish too
    assert len(records) == len(server.sent)


def test_abort_tracker_trips_on_consecutive_failures_only_in_measure_phase() -> None:
    tracker = AbortTracker(consecutive_failures=3)
    failure = RequestRecord(cell_id="c", request_index=0, surface="native", endpoint="chat",
                            model="m", error_class="disconnected")
    warm_failure = RequestRecord(cell_id="c", request_index=0, surface="native", endpoint="chat",
                                 model="m", phase="warmup", error_class="disconnected")
    assert tracker.observe(warm_failure) is None
    assert tracker.observe(failure) is None
    assert tracker.observe(failure) is None
    assert "3 consecutive failures" in (tracker.observe(failure) or "")


def test_abort_tracker_error_rate_waits_for_enough_requests() -> None:
    tracker = AbortTracker(error_rate=0.5, min_requests=4)
    ok = RequestRecord(cell_id="c", request_index=0, surface="native", endpoint="chat", model="m")
    bad = RequestRecord(cell_id="c", request_index=0, surface="native", endpoint="chat", model="m",
                        error_class="server_error")
    assert [tracker.observe(r) for r in (bad, bad, ok)] == [None, None, None]
    assert tracker.observe(bad) is not None  # 3 of 4 failed > 50%


def test_a_signal_during_loop_construction_waits_until_the_loop_is_whole() -> None:
    """Ctrl-C landing inside an event loop's constructor left a half-built loop that printed a
    traceback at exit (CI: `bench perf` SIGTERM between levels). uninterrupted() holds it back."""
    steps: list[str] = []
    built: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        os.kill(os.getpid(), signal.SIGINT)  # delivered here at once, were it not held back
        steps.append("signalled")
        built.append(asyncio.new_event_loop())
        steps.append("built")
        return built[0]

    with pytest.raises(KeyboardInterrupt):
        uninterrupted(factory)()
    assert steps == ["signalled", "built"]
    assert built[0].is_closed()  # whole, and closed on the way out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back


def test_run_async_closes_a_coroutine_interrupted_before_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_started() -> None:
        raise AssertionError("must not run")

    def interrupted_factory() -> Callable[[], asyncio.AbstractEventLoop]:
        raise KeyboardInterrupt

    monkeypatch.setattr(load_clock, "_loop_factory", interrupted_factory)
    coroutine = never_started()
    with pytest.raises(KeyboardInterrupt):
        run_async(coroutine)
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning at exit


def test_each_arrival_picks_its_schedule_by_name() -> None:
    from bench.load.schedules import SCHEDULES, ClosedLoop, Conversations, OpenLoop, TraceReplay, measured_schedule
    from bench.workload.specs import CellRequests

    def make_spec(*_: object) -> RequestSpec:
        raise AssertionError("not sent")

    single = CellRequests(make_spec)
    assert isinstance(measured_schedule(CellLoad("closed", 3, requests=9), single), ClosedLoop)
    assert isinstance(measured_schedule(CellLoad("poisson", None, rate_rps=2.0, requests=9), single), OpenLoop)
    talking = CellRequests(make_spec, start_conversation=lambda *_: pytest.fail("not started"))
    assert isinstance(measured_schedule(CellLoad("closed", 2, requests=4), talking), Conversations)
    replay = CellRequests(make_spec, trace_steps=lambda repeat: [])
    assert isinstance(measured_schedule(CellLoad("trace", None), replay), TraceReplay)
    assert {"closed", "constant", "poisson", "trace", "conversation"} <= set(SCHEDULES)
    with pytest.raises(ValueError, match="no such schedule"):
        measured_schedule(CellLoad("ramp-to-the-moon", 1, requests=1), single)
