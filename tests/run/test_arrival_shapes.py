"""Arrival shapes: gamma burstiness (vllm bench serve --burstiness), ramp-up by request index or
over time (--ramp-up-strategy), and k6-style stages; seeded, so a cell's schedule repeats."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from bench.load.arrival_shapes import ArrivalShape, Stage


def _gaps(shape: ArrivalShape, count: int, seed: int = 7) -> np.ndarray:
    offsets = list(itertools.islice(shape.offsets_s(random.Random(seed)), count + 1))
    return np.diff(offsets)


def test_burstiness_keeps_the_mean_rate_and_sets_the_spread() -> None:
    bursty = _gaps(ArrivalShape(rate_rps=10.0, burstiness=0.25), 20_000)
    poisson = _gaps(ArrivalShape(rate_rps=10.0), 20_000)
    even = _gaps(ArrivalShape(rate_rps=10.0, burstiness=4.0), 20_000)
    for gaps in (bursty, poisson, even):
        assert gaps.mean() == pytest.approx(0.1, rel=0.05)
    # Coefficient of variation of gamma gaps is 1/sqrt(shape): 2, 1, 0.5.
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.08)
    assert poisson.std() / poisson.mean() == pytest.approx(1.0, rel=0.05)
    assert even.std() / even.mean() == pytest.approx(0.5, rel=0.05)


def test_burstiness_one_is_the_poisson_schedule_bench_always_drew() -> None:
    rng = random.Random(3)
    expected = [rng.expovariate(5.0) for _ in range(5)]
    assert list(_gaps(ArrivalShape(rate_rps=5.0, burstiness=1.0), 5, seed=3)) == pytest.approx(expected)


def test_linear_ramp_by_request_index_goes_from_start_to_end() -> None:
    shape = ArrivalShape(arrival="constant", ramp_strategy="linear", ramp_start_rps=1.0, ramp_end_rps=9.0, requests=5)
    assert [shape.rate_at(i, 0.0) for i in range(5)] == pytest.approx([1.0, 3.0, 5.0, 7.0, 9.0])
    # Constant arrivals: each gap is 1/rate of the request it leads to.
    assert list(_gaps(shape, 4)) == pytest.approx([1 / 3, 1 / 5, 1 / 7, 1 / 9])


def test_exponential_ramp_multiplies_the_rate_evenly() -> None:
    shape = ArrivalShape(ramp_strategy="exponential", ramp_start_rps=1.0, ramp_end_rps=16.0, requests=5)
    assert [shape.rate_at(i, 0.0) for i in range(5)] == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0])


def test_a_duration_bound_ramp_progresses_with_time_and_then_holds() -> None:
    shape = ArrivalShape(ramp_strategy="linear", ramp_start_rps=2.0, ramp_end_rps=4.0, duration_s=10.0)
    assert shape.rate_at(99, 5.0) == pytest.approx(3.0) and shape.rate_at(99, 30.0) == pytest.approx(4.0)


def test_stages_move_linearly_between_targets_and_hold_the_last() -> None:
    shape = ArrivalShape(rate_rps=2.0, stages=(Stage(10.0, 12.0), Stage(5.0, 12.0), Stage(10.0, 0.0)))
    assert shape.rate_at(0, 0.0) == pytest.approx(2.0)
    assert shape.rate_at(0, 5.0) == pytest.approx(7.0)
    assert shape.rate_at(0, 12.0) == pytest.approx(12.0)
    assert shape.rate_at(0, 20.0) == pytest.approx(6.0)
    assert shape.rate_at(0, 60.0) > 0  # a ramp down to 0 still moves on (a floor, not a division by zero)


def test_stages_offer_the_requests_their_area_says() -> None:
    # 0 -> 10 rps over 20 s, then 10 rps for 10 s: 100 + 100 requests expected.
    shape = ArrivalShape(arrival="constant", stages=(Stage(20.0, 10.0), Stage(10.0, 10.0)))
    offsets = list(itertools.takewhile(lambda t: t < 30.0, shape.offsets_s(random.Random(0))))
    assert len(offsets) == pytest.approx(200, abs=6)


def test_the_same_seed_gives_the_same_schedule() -> None:
    shape = ArrivalShape(rate_rps=3.0, burstiness=0.5)
    assert list(_gaps(shape, 50, seed=11)) == list(_gaps(shape, 50, seed=11))
