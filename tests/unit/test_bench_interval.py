"""``hack/bench/run.median_interval``: the interval the token-cost verdict of bench-server reports."""

from __future__ import annotations

import random

from hack.bench.run import median_interval


def test_the_order_statistics_are_the_textbook_ones() -> None:
    values = [float(v) for v in range(1, 21)]
    random.Random(1).shuffle(values)
    assert median_interval(values) == (6.0, 15.0), "n = 20: 6th and 15th values, 95.9 % coverage"
    assert median_interval([float(v) for v in range(1, 13)]) == (3.0, 10.0), "n = 12: 3rd and 10th, 96.1 %"
    assert median_interval([float(v) for v in range(1, 7)]) == (1.0, 6.0), "n = 6: the range, 96.9 %"


def test_coverage_reaches_95_percent_on_skewed_data() -> None:
    """Distribution-free: it covers the true median of a heavy-tailed law at least 95 % of the time."""
    rng = random.Random(7)
    true_median = 1.0  # of exp(N(0, 1))
    trials, covered = 4000, 0
    for _ in range(trials):
        sample = [rng.lognormvariate(0.0, 1.0) for _ in range(16)]
        low, high = median_interval(sample)
        covered += low <= true_median <= high
    assert covered / trials >= 0.945  # exact coverage for n = 16 is 97.9 %; the slack is sampling noise
