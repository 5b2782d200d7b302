"""The sequential tests behind every ratio gate: validity under repeated looks, power, edge cases.

Size and power are checked by simulation with fixed seeds: hundreds of rollouts' worth of
cumulative counts, each looked at 20 times, as the gates do. The bounds allow the Monte Carlo error
(3 standard errors) and nothing more. ``make bench-decisions`` measures the same through the engine
with thousands of rollouts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from modelrollout.metrics import sequential as sq
from scipy import optimize

LOOKS = 20


def _cumulative(rng: np.random.Generator, sims: int, per_look: int, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (events, trials) at each look for ``sims`` independent streams."""
    trials = np.cumsum(rng.poisson(per_look, size=(sims, LOOKS)), axis=1)
    increments = np.diff(np.concatenate([np.zeros((sims, 1), dtype=int), trials], axis=1), axis=1)
    events = np.cumsum(rng.binomial(increments, p), axis=1)
    return events, trials


def _ever(reject) -> float:
    return float(np.mean([any(row) for row in reject]))


def _mc_bound(p: float, sims: int) -> float:
    return p + 3 * math.sqrt(p * (1 - p) / sims)


@pytest.mark.parametrize(("bound", "per_look"), [(0.02, 300), (0.10, 80), (0.5, 20)])
def test_one_sample_never_rejects_a_true_bound_more_than_alpha_over_many_looks(bound: float, per_look: int) -> None:
    alpha, sims = 0.2, 400  # a large alpha gives the size check many events at a small sample
    rng = np.random.default_rng(11)
    events, trials = _cumulative(rng, sims, per_look, bound)
    for side in ("above", "below"):
        reject = [
            [sq.one_sample_log_e(x, n, bound, side).rejects(alpha) for x, n in zip(ex, tr, strict=True)]
            for ex, tr in zip(events, trials, strict=True)
        ]
        assert _ever(reject) <= _mc_bound(alpha, sims), side


def test_one_sample_detects_three_percent_against_a_two_percent_bound() -> None:
    rng = np.random.default_rng(12)
    events, trials = _cumulative(rng, 200, 500, 0.03)  # 10,000 samples by the last look
    alpha = 0.05 / 7
    reject = [
        [sq.one_sample_log_e(x, n, 0.02, "above").rejects(alpha) for x, n in zip(ex, tr, strict=True)]
        for ex, tr in zip(events, trials, strict=True)
    ]
    assert _ever(reject) >= 0.97
    met = [[sq.one_sample_log_e(x, n, 0.02, "below").rejects(alpha) for x, n in zip(ex, tr, strict=True)]
           for ex, tr in zip(events, trials, strict=True)]  # fmt: skip
    assert _ever(met) <= _mc_bound(alpha, 200)  # a breaching canary is (almost) never shown within


@pytest.mark.parametrize(("p_s", "margin", "per_look"), [(0.01, 0.01, 400), (0.10, -0.02, 200), (0.01, 0.0, 40)])
def test_two_sample_size_at_the_margin_boundary(p_s: float, margin: float, per_look: int) -> None:
    """The canary exactly at the allowed margin: rejected at most alpha of the time, small counts included."""
    alpha, sims = 0.2, 400
    rng = np.random.default_rng(13)
    xc, nc = _cumulative(rng, sims, per_look, p_s + margin)
    xs, ns = _cumulative(rng, sims, per_look * 2, p_s)
    for side in ("above", "below"):
        reject = [
            [
                sq.two_sample_log_e(a, b, c, d, margin, side).rejects(alpha)
                for a, b, c, d in zip(r1, r2, r3, r4, strict=True)
            ]
            for r1, r2, r3, r4 in zip(xc, nc, xs, ns, strict=True)
        ]
        assert _ever(reject) <= _mc_bound(alpha, sims), side


def test_two_sample_detects_a_rise_beyond_the_margin_and_shows_equal_revisions_within_it() -> None:
    rng = np.random.default_rng(14)
    alpha = 0.05 / 7
    bad_c, bad_nc = _cumulative(rng, 150, 500, 0.03)  # 10,000 a side by the last look
    same_c, same_nc = _cumulative(rng, 150, 500, 0.01)
    stable, stable_n = _cumulative(rng, 150, 500, 0.01)
    caught = [
        [sq.two_sample_log_e(a, b, c, d, 0.01, "above").rejects(alpha) for a, b, c, d in zip(*rows, strict=True)]
        for rows in zip(bad_c, bad_nc, stable, stable_n, strict=True)
    ]
    shown_within = [
        [sq.two_sample_log_e(a, b, c, d, 0.01, "below").rejects(alpha) for a, b, c, d in zip(*rows, strict=True)]
        for rows in zip(same_c, same_nc, stable, stable_n, strict=True)
    ]
    assert _ever(caught) >= 0.9
    assert _ever(shown_within) >= 0.9


def test_small_counts_use_the_exact_test_and_decide_only_on_overwhelming_evidence() -> None:
    quiet = sq.two_sample_log_e(3, 100, 0, 100, 0.0, "above")
    assert quiet.method.startswith("exact")
    assert not quiet.rejects(0.05)  # 3 errors against none is chance
    gross = sq.two_sample_log_e(20, 100, 4, 400, 0.0, "above")
    assert gross.method.startswith("exact")
    assert gross.rejects(0.01)  # 20 % errors against 1 %
    big = sq.two_sample_log_e(300, 10000, 100, 10000, 0.0, "above")
    assert big.method.startswith("mixture")
    assert big.rejects(0.01)


@pytest.mark.parametrize(
    ("x_c", "n_c", "x_s", "n_s", "margin"),
    [
        (30, 200, 10, 200, 0.05),
        (5, 100, 2, 300, 0.01),
        (0, 100, 0, 100, 0.02),
        (50, 100, 60, 100, -0.1),
        (7, 90, 7, 90, 0),
    ],
)
def test_constrained_rates_match_numerical_maximum_likelihood(
    x_c: int, n_c: int, x_s: int, n_s: int, margin: float
) -> None:
    def nll(p_s: float) -> float:
        p_c, eps = p_s + margin, 1e-12
        return -(
            x_c * math.log(max(p_c, eps))
            + (n_c - x_c) * math.log(max(1 - p_c, eps))
            + x_s * math.log(max(p_s, eps))
            + (n_s - x_s) * math.log(max(1 - p_s, eps))
        )

    lo, hi = max(0.0, -margin), min(1.0, 1.0 - margin)
    best = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    p_c, p_s = sq.constrained_rates(x_c, n_c, x_s, n_s, margin)
    assert p_c - p_s == pytest.approx(margin, abs=1e-12)
    assert nll(p_s) <= best.fun + 1e-6


def test_bounds_at_zero_and_one() -> None:
    assert sq.one_sample_log_e(1, 500, 0.0, "above").rejects(1e-9)  # one error proves "more than none"
    assert not sq.one_sample_log_e(0, 500, 0.0, "above").rejects(0.5)
    assert not sq.one_sample_log_e(0, 500, 0.0, "below").rejects(0.5)  # below 0 is impossible
    assert sq.one_sample_log_e(499, 500, 1.0, "below").rejects(1e-9)
    assert not sq.one_sample_log_e(500, 500, 1.0, "above").rejects(0.5)


def test_no_samples_is_no_evidence_and_bad_counts_are_refused() -> None:
    assert sq.one_sample_log_e(0, 0, 0.02, "above").log_e == 0.0
    assert sq.two_sample_log_e(0, 0, 5, 100, 0.01, "above").log_e == 0.0
    for x, n in ((-1, 10), (11, 10)):
        with pytest.raises(ValueError):
            sq.one_sample_log_e(x, n, 0.02, "above")
        with pytest.raises(ValueError):
            sq.two_sample_log_e(x, n, 1, 10, 0.0, "above")


def test_required_growth_estimates_the_samples_still_needed() -> None:
    alpha = 0.05 / 7
    early = sq.one_sample_log_e(10, 1000, 0.02, "below")  # 1 % against a 2 % max, not yet shown
    growth = sq.required_growth(early, alpha, len(sq.LOGIT_SHIFTS))
    assert growth is not None and growth > 1
    later = sq.one_sample_log_e(round(10 * growth), round(1000 * growth), 0.02, "below")
    assert later.rejects(alpha)
    assert sq.required_growth(sq.one_sample_log_e(30, 1000, 0.02, "below"), alpha, 12) is None
