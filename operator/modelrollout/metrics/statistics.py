"""Canary-vs-stable decisions: is the canary worse than its baseline by more than the allowed margin?

Why statistics: at a 5 % step a canary sees a few hundred requests. Comparing raw rates would roll
back a good model whenever chance gives it two more errors than stable (and Flagger/Argo Rollouts
do exactly that, or avoid it only by thresholds so loose they miss real regressions). For gates
whose value is a proportion of countable events — error rate (5xx / requests) and accuracy
(correct / feedback labels) — we ask instead whether the data are *evidence* of a regression.

The decision rule (one-sided, at level ``alpha`` = ``analysis.significance``)
----------------------------------------------------------------------------
Write every comparison as a *rise* of a "bad" proportion: for ``maxRiseVsStable`` the bad events are
the gate's own events (5xx answers, or correct labels for an odd rising-accuracy bound); for
``maxDropVsStable`` they are the complement (incorrect labels for accuracy). With ``x_c`` bad events
in ``n_c`` canary samples, ``x_s`` in ``n_s`` stable samples and margin ``δ`` (the configured
maxRise/maxDrop), test

    H0: p_c - p_s ≤ δ      against      H1: p_c - p_s > δ

and **fail the gate iff the p-value is below alpha**. Otherwise the gate passes: "no significant
evidence of a regression larger than δ" — which is why the ``minSamples`` guard (fewer samples on
either side is *inconclusive*, decided by the caller before this module is asked) matters: it is
what gives the test enough power to see a regression at all.

The test:

* ``δ = 0`` and small expected counts (any cell of the 2x2 table below 5 under the pooled rate):
  **Fisher's exact test**, one-sided (``scipy.stats.fisher_exact``, ``alternative="greater"``), where
  the normal approximation is poor (e.g. 0 vs 3 errors);
* otherwise the **Farrington-Manning score test** for a risk difference with margin ``δ``
  (Farrington & Manning 1990; Miettinen & Nurminen 1985 without the n/(n-1) factor): the z statistic
  ``(p̂_c - p̂_s - δ) / sqrt(p̃_c(1-p̃_c)/n_c + p̃_s(1-p̃_s)/n_s)`` with ``p̃`` the maximum-likelihood
  rates under the constraint ``p_c - p_s = δ`` (closed form, below), p-value ``norm.sf(z)``. For
  ``δ = 0`` it is exactly the classical pooled two-proportion z-test.

When the stable serves nothing — the canary's 100 % step, or the bake, where the previous stable
idles — there is no live second sample. The baseline is then a *number* (the stable's value recorded
by the last check that could measure it) and the test is the one-sample exact binomial test
(``scipy.stats.binomtest``) of ``H1: p_c > reference + δ``.

Gates that are not proportions (latency-p99, custom PromQL) have no count model; they compare plain
values: fail iff ``canary - stable > maxRiseVsStable`` (or ``stable - canary > maxDropVsStable``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

SMALL_EXPECTED_COUNT = 5.0
"""Below this expected count in any cell, the δ = 0 case uses Fisher's exact test instead of z."""


@dataclass(frozen=True)
class Comparison:
    """The outcome of one canary-vs-baseline comparison.

    ``regression`` is the decision (True = fail the gate); ``difference`` is the observed rise of
    the bad proportion (or of the plain value), canary minus baseline.
    """

    regression: bool
    difference: float
    margin: float
    method: str
    statistic: float | None = None
    p_value: float | None = None
    alpha: float | None = None

    def describe(self) -> str:
        """e.g. ``rise +0.031 > 0.01: Farrington-Manning z=3.21, p=0.00066 < alpha=0.05``."""
        op = ">" if self.difference > self.margin else "<="
        text = f"rise {self.difference:+.4g} {op} {self.margin:g}"
        if self.p_value is None:
            return text
        stat = "" if self.statistic is None else f" z={self.statistic:.3g},"
        verdict = "<" if self.regression else ">="
        return f"{text}: {self.method}{stat} p={self.p_value:.2g} {verdict} alpha={self.alpha:g}"


def _check_counts(x: int, n: int, side: str) -> None:
    if n <= 0:
        raise ValueError(f"{side} needs at least one sample, got n={n}")
    if not 0 <= x <= n:
        raise ValueError(f"{side} events must be within 0..{n}, got {x}")


def constrained_rates(x_c: int, n_c: int, x_s: int, n_s: int, margin: float) -> tuple[float, float]:
    """Maximum-likelihood ``(p_c, p_s)`` under ``p_c - p_s = margin`` (Farrington-Manning closed form).

    The likelihood of two binomials restricted to the line ``p_c = p_s + δ`` has its maximum at the
    root in [0, 1] of a cubic; the trigonometric solution below is the published one, and
    ``tests/unit/test_gates.py`` checks it against a numerical maximisation.
    """
    p1, p2, d = x_c / n_c, x_s / n_s, margin
    theta = n_s / n_c
    a = 1.0 + theta
    b = -(1.0 + theta + p1 + theta * p2 + d * (theta + 2.0))
    c = d * d + d * (2.0 * p1 + theta + 1.0) + p1 + theta * p2
    e = -p1 * d * (1.0 + d)
    v = b**3 / (3.0 * a) ** 3 - b * c / (6.0 * a * a) + e / (2.0 * a)
    u_sq = max(b * b / (3.0 * a) ** 2 - c / (3.0 * a), 0.0)
    u = math.copysign(math.sqrt(u_sq), v)
    w = math.pi / 2.0 if u == 0.0 else (math.pi + math.acos(max(-1.0, min(1.0, v / u**3)))) / 3.0
    pc = 2.0 * u * math.cos(w) - b / (3.0 * a)
    pc = min(max(pc, d, 0.0), 1.0, 1.0 + d)
    return pc, pc - d


def farrington_manning(x_c: int, n_c: int, x_s: int, n_s: int, margin: float) -> tuple[float, float]:
    """One-sided score test of ``H1: p_c - p_s > margin``; returns ``(z, p_value)``."""
    observed = x_c / n_c - x_s / n_s - margin
    pc, ps = constrained_rates(x_c, n_c, x_s, n_s, margin)
    variance = pc * (1.0 - pc) / n_c + ps * (1.0 - ps) / n_s
    if variance <= 0.0:
        # Degenerate (every rate at 0 or 1 under H0): the data sit exactly on the boundary or beyond.
        z = math.inf if observed > 1e-12 else (-math.inf if observed < -1e-12 else 0.0)
    else:
        z = observed / math.sqrt(variance)
    return z, float(stats.norm.sf(z))


def proportion_rise(
    x_canary: int, n_canary: int, x_stable: int, n_stable: int, margin: float, alpha: float
) -> Comparison:
    """Is the canary's bad-event proportion higher than stable's by more than ``margin``?

    ``x_*`` are bad events out of ``n_*`` samples; see the module docstring for the rule. Both
    ``n`` must be positive: the minimum-sample guard is the caller's.
    """
    _check_counts(x_canary, n_canary, "canary")
    _check_counts(x_stable, n_stable, "stable")
    if margin < 0:
        raise ValueError("margin must be >= 0")
    difference = x_canary / n_canary - x_stable / n_stable
    if margin == 0:
        pooled = (x_canary + x_stable) / (n_canary + n_stable)
        expected = min(n * q for n in (n_canary, n_stable) for q in (pooled, 1.0 - pooled))
        if expected < SMALL_EXPECTED_COUNT:
            table = [[x_canary, n_canary - x_canary], [x_stable, n_stable - x_stable]]
            p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
            return Comparison(p_value < alpha, difference, margin, "Fisher exact", None, p_value, alpha)
    z, p_value = farrington_manning(x_canary, n_canary, x_stable, n_stable, margin)
    return Comparison(p_value < alpha, difference, margin, "Farrington-Manning", z, p_value, alpha)


def proportion_rise_vs_reference(x: int, n: int, reference: float, margin: float, alpha: float) -> Comparison:
    """Is the bad-event proportion ``x/n`` higher than a fixed ``reference + margin``?

    Exact one-sided binomial test; used when the baseline is a recorded number (100 % step, bake).
    A bound at or above 1 cannot be exceeded, so it never fails.
    """
    _check_counts(x, n, "revision")
    bound = reference + margin
    difference = x / n - reference
    if bound >= 1.0:
        return Comparison(False, difference, margin, "binomial exact", None, 1.0, alpha)
    p_value = float(stats.binomtest(x, n, max(bound, 0.0), alternative="greater").pvalue)
    return Comparison(p_value < alpha, difference, margin, "binomial exact", None, p_value, alpha)


def value_rise(canary: float, baseline: float, margin: float) -> Comparison:
    """Plain comparison for gates without a count model: regression iff ``canary - baseline > margin``."""
    difference = canary - baseline
    return Comparison(difference > margin, difference, margin, "plain difference")
