"""How sure a difference is: paired bootstrap intervals over images, and a Pareto front of distinguishable points.

Why: int8 and fp32 differ by 0.0001 Dice or less, while one image's Dice moves by more than that between two
runs of anything; a delta or a front drawn from the means alone shows noise as a result. Every job is scored on
the same images, so the per-image differences are paired: the interval is a percentile bootstrap of their mean
(2,000 resamples, seeded: the same figures give the same interval). Images of one car are correlated, so with few
cars the interval is, if anything, too narrow; the README says so beside the figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """Mean of per-image differences (a - b) with its paired bootstrap interval."""

    mean: float
    low: float
    high: float
    images: int

    @property
    def distinguishable(self) -> bool:
        """The interval excludes zero: the difference is more than the images' noise."""
        return self.low > 0 or self.high < 0

    def describe(self) -> str:
        """e.g. '-0.00021 [-0.00034, -0.00009]'."""
        return f"{self.mean:+.5f} [{self.low:+.5f}, {self.high:+.5f}]"


def paired_interval(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """The mean of per-image differences and its 95 % percentile-bootstrap interval."""
    values = np.asarray(differences, np.float64)
    if values.size == 0:
        raise ValueError("no paired images to compare")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def distinguishable_front(throughput: list[float], per_image: list[dict[str, float]]) -> list[int]:
    """Indices of the points no other point dominates, where `j` dominates `i` if it is at least as fast and its
    Dice is not distinguishably lower on the images both scored, and it is faster or distinguishably better.

    So two points whose Dice differ by noise are one trade-off less: the faster one stands for both.
    """

    def difference(j: int, i: int) -> Interval | None:
        common = sorted(per_image[j].keys() & per_image[i].keys())
        if not common:
            return None
        return paired_interval(np.array([per_image[j][k] - per_image[i][k] for k in common]))

    front = []
    for i in range(len(throughput)):
        dominated = False
        for j in range(len(throughput)):
            if j == i or throughput[j] < throughput[i]:
                continue
            delta = difference(j, i)
            if delta is None:
                continue
            not_worse = not (delta.distinguishable and delta.mean < 0)
            better = throughput[j] > throughput[i] or (delta.distinguishable and delta.mean > 0)
            if not_worse and better:
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front
