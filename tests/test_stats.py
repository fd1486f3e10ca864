"""Intervals on differences and a front of distinguishable points: noise is never shown as a result."""

from __future__ import annotations

import numpy as np
import pytest

from unet_pipeline.metrics import distinguishable_front, paired_interval


def test_no_difference_is_not_distinguishable():
    interval = paired_interval(np.zeros(50))
    assert (interval.mean, interval.low, interval.high) == (0.0, 0.0, 0.0) and not interval.distinguishable


def test_a_consistent_drop_is_distinguishable_and_the_interval_covers_the_mean():
    rng = np.random.default_rng(1)
    drop = -0.001 + rng.normal(0, 0.0005, 96)
    interval = paired_interval(drop)
    assert interval.distinguishable and interval.low < interval.mean < interval.high < 0
    assert interval.describe().startswith(f"{drop.mean():+.5f} [")
    assert paired_interval(drop) == interval  # seeded: the same figures give the same interval


def test_noise_around_zero_is_not_distinguishable():
    rng = np.random.default_rng(2)
    assert not paired_interval(rng.normal(0, 0.001, 96)).distinguishable


def test_the_front_keeps_only_distinguishable_trade_offs():
    rng = np.random.default_rng(3)
    base = {f"img{i}": 0.99 + d for i, d in enumerate(rng.normal(0, 0.003, 40))}
    noise = {k: v + rng.normal(0, 1e-5) for k, v in base.items()}  # int8 within noise of fp32
    better = {k: v + 0.002 for k, v in base.items()}  # slower, but distinguishably better
    throughput = [10.0, 20.0, 5.0]  # fp32, int8, a bigger model
    assert distinguishable_front(throughput, [base, noise, better]) == [1, 2]
    assert distinguishable_front([10.0, 20.0], [base, {k: v - 0.01 for k, v in base.items()}]) == [0, 1]


def test_an_empty_comparison_is_refused():
    with pytest.raises(ValueError, match="no paired images"):
        paired_interval(np.array([]))
