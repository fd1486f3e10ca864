"""The benchmark's call limits: a floor of calls and seconds, a cap, and figures that say which one stopped them."""

from __future__ import annotations

import time

import numpy as np
import pytest
from omegaconf import OmegaConf

from unet_pipeline.core import CallLimits
from unet_pipeline.deploy.stages import benchmark
from unet_pipeline.engines import Session


class _Sleeper(Session):
    """A session whose every call takes `seconds`; async requests run one after another (a 1-core CPU)."""

    supports_async = True

    def __init__(self, seconds: float) -> None:
        self.seconds, self.calls = seconds, 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        self.calls += 1
        return batch

    def run_async(self, batch, requests, limits, on_call=None):
        count, start = 0, time.perf_counter()
        while limits.more(count, time.perf_counter() - start):
            self.infer(batch)
            count += 1
            if on_call is not None:
                on_call()
        return count, time.perf_counter() - start

    def describe(self):
        return {}


def _cfg(**overrides):
    base = dict(warmup_iterations=3, warmup_seconds=0.0, warmup_max_seconds=0.05, iterations=10, min_seconds=0.0)
    return OmegaConf.create({**base, "max_seconds": 0.25, "async_requests": 2, **overrides})


def test_stops_at_both_minimums_when_calls_are_fast():
    limits = CallLimits(calls=10, min_seconds=3.0, max_seconds=30.0)
    assert limits.more(9, 5.0) and limits.more(10, 2.9)
    assert not limits.more(10, 3.0) and not limits.capped(10, 3.0)


def test_never_starts_a_call_that_would_end_past_the_cap():
    limits = CallLimits(calls=10, min_seconds=3.0, max_seconds=30.0)
    assert limits.more(0, 0.0)  # at least one call, however slow
    assert limits.more(1, 13.0)  # a second 13 s call ends at 26 s
    assert not limits.more(2, 26.0) and limits.capped(2, 26.0)  # a third would end at 39 s
    assert limits.expected_calls(1, 13.0) == 2  # the progress bar's total, for its ETA
    assert limits.expected_calls(1, 0.01) == 300  # fast calls: min_seconds decides


def test_requests_in_flight_count_against_the_cap():
    limits = CallLimits(calls=10, min_seconds=3.0, max_seconds=30.0)
    assert limits.more(1, 6.8, in_flight=1)  # the running one and a new one end by ~20 s
    assert limits.more(2, 13.6, in_flight=1)  # ... by ~27 s
    assert not limits.more(3, 20.4, in_flight=1)  # ... by ~34 s: past the cap


def test_no_warm_up_when_both_minimums_are_zero():
    assert not CallLimits(calls=0, min_seconds=0.0, max_seconds=5.0).more(0, 0.0)


def test_slow_calls_are_capped_and_the_figures_say_so():
    session = _Sleeper(0.1)
    figures = benchmark.time_sync(session, np.zeros((1, 3, 4, 4), np.float32), _cfg(), progress=False)
    assert figures.warmup["iterations"] == 1  # a 0.1 s call: one warm-up call within 0.05 s
    assert figures.iterations == 2 and figures.capped is True  # a third would end at 0.3 s > 0.25 s
    assert figures.budget == {"min_calls": 10, "min_seconds": 0.0, "max_seconds": 0.25}
    notes = benchmark.benchmark_notes([figures], None, _cfg())
    assert notes == ["engine figures capped at benchmark.max_seconds=0.25: rest on 2 call(s) (asked >= 10 and >= 0 s)"]


def test_fast_calls_meet_their_minimums_uncapped():
    figures = benchmark.time_sync(_Sleeper(0.001), np.zeros((1, 3, 4, 4), np.float32), _cfg(), progress=False)
    assert figures.iterations == 10 and figures.capped is False
    assert benchmark.benchmark_notes([figures], None, _cfg()) == []


def test_async_is_skipped_with_a_reason_when_two_rounds_cannot_fit_the_cap():
    session = _Sleeper(0.001)
    skipped = benchmark.time_async(session, np.zeros((1,), np.float32), _cfg(), call_ms=100.0, progress=False)
    assert session.calls == 0 and "throughput_ips" not in skipped.to_dict()
    assert skipped.skipped.startswith("async not timed: 2 requests x 2 rounds of 0.1 s calls exceed")
    assert benchmark.benchmark_notes([], skipped, _cfg()) == [skipped.skipped]
    timed = benchmark.time_async(session, np.zeros((1,), np.float32), _cfg(), call_ms=1.0, progress=False)
    assert timed.iterations >= 10 and timed.capped is False and timed.throughput_ips > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("benchmark.max_seconds=0", "benchmark.max_seconds=0.0 must be a positive number of seconds"),
        ("benchmark.warmup_max_seconds=-1", "benchmark.warmup_max_seconds=-1.0 must be 0 or more seconds"),
    ],
)
def test_budget_settings_out_of_range_are_refused(override, message):
    from unet_pipeline import preflight

    assert preflight.check([override], "pipeline").startswith(message)
