"""Always-valid tests on accumulated counts: the evidence behind every ratio gate's verdict.

Why sequential. A gate is checked every ``analysis.interval`` on counts that keep growing from the
start of the canary to the end of the bake. Testing those counts again and again with a fixed-level
test rolls back a healthy canary far more often than the level says (18 looks at 5 % fail about half
of all healthy rollouts). The tests here are *e-processes*: non-negative statistics ``E_t`` whose
expectation is at most 1 under the null hypothesis at every look, so by Ville's inequality

    P(E_t >= 1/alpha at ANY look t, however many) <= alpha.

Reject when ``E_t >= 1/alpha`` and the probability of ever rejecting a true null is at most alpha,
whatever the number and timing of looks, the traffic, or the moment the rollout stops.

Two tests, both computed as ``log E`` (a natural log, so 1/alpha = 0.01 is 4.6):

* **One sample** (``one_sample_log_e``): is a proportion above (or below) a fixed bound ``b``?
  Used for ``max``/``min``. ``E`` is the average, over a fixed grid of alternatives ``p_k`` beyond
  ``b`` (``b`` shifted on the logit scale by :data:`LOGIT_SHIFTS`), of the exact binomial likelihood
  ratio ``L(p_k) / L(b)``. Each ratio is a martingale when the truth is ``b`` and a supermartingale
  for any truth on the null side (the binomial family has monotone likelihood ratios), so ``E`` is
  an e-process for the whole composite null. Exact for every count: no normal approximation.
* **Two samples** (``two_sample_log_e``): is the canary's proportion minus the baseline's above (or
  below) a margin ``b``? Used for ``maxRiseVsStable``/``maxDropVsStable`` against stable counts
  collected over the same period. With enough counts (every expected cell >= :data:`SMALL_EXPECTED`)
  it is the mixture sequential probability ratio test (mSPRT, Robbins 1970; Johari et al. 2017)
  on the difference ``d = p_c - p_s``: the Gaussian likelihood ratio of ``d = b + theta_k`` against
  ``d = b``, averaged over the grid :data:`DIFFERENCE_SHIFTS`, with the variance of ``d`` taken at
  the null boundary (the Farrington-Manning constrained maximum-likelihood rates). With small
  counts the normal approximation is poor, so the exact *universal-inference* e-value (Wasserman,
  Ramdas & Balakrishnan 2020) is used instead: the Beta-binomial marginal likelihood of both
  samples (Jeffreys priors) over the maximum likelihood under the null. It is valid for every count
  and very conservative, so small samples only ever decide on overwhelming evidence.

Counts may be fractional (Prometheus ``increase()`` extrapolates); the formulas take real values.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

Side = Literal["above", "below"]
"""Which alternative the test looks for: the truth above the bound, or below it."""

LOGIT_SHIFTS: tuple[float, ...] = (0.05, 0.1, 0.17, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 4.5)
"""Alternatives of the one-sample test, as shifts of the bound on the logit scale.

A proportion of 1 % against a bound of 2 % is a logit shift of 0.70; 87 % against 90 % accuracy is
0.30; 20 % errors against 2 % is 2.5. The grid spans them with neighbours within a factor ~1.5, so
the true effect is always close to one of them; the price of averaging twelve is log(12) = 2.5 nats.
"""

DIFFERENCE_SHIFTS: tuple[float, ...] = (
    0.0025, 0.004, 0.006, 0.01, 0.015, 0.025, 0.04, 0.06, 0.1, 0.15, 0.25, 0.4,
)  # fmt: skip
"""Alternatives of the two-sample test, as differences beyond the margin (proportion units)."""

SMALL_EXPECTED = 5.0
"""Below this expected count in any cell (under the null), the two-sample test is the exact one."""

_JEFFREYS = 0.5


@dataclass(frozen=True)
class Evidence:
    """One test's outcome at one look: ``log_e`` against the rejection bound ``log(1/alpha)``."""

    log_e: float
    method: str
    best: float
    """The largest single log likelihood ratio of the mixture: what the grid point nearest the
    data has earned. Used to estimate how much more data a decision needs."""

    def rejects(self, alpha: float) -> bool:
        return self.log_e >= math.log(1.0 / alpha)


def _check(x: float, n: float, who: str) -> None:
    if n < 0 or x < 0 or x > n + 1e-9:
        raise ValueError(f"{who}: events must be within 0..trials, got {x} of {n}")


def _xlogy(x: float, y: float) -> float:
    """``x * log(y)`` with ``0 * log(0) = 0``."""
    if x == 0.0:
        return 0.0
    return x * math.log(y) if y > 0.0 else -math.inf


def _log_binomial(x: float, n: float, p: float) -> float:
    """Binomial log-likelihood without the coefficient (it cancels in every ratio here)."""
    return _xlogy(x, p) + _xlogy(n - x, 1.0 - p)


def _log_mean_exp(values: list[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    if top == math.inf:
        return math.inf
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _expit(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def one_sample_log_e(events: float, trials: float, bound: float, side: Side) -> Evidence:
    """Evidence that the proportion ``events/trials`` is ``side`` of ``bound`` (module docstring)."""
    _check(events, trials, "sample")
    x, n = min(events, trials), trials
    if n == 0:
        return Evidence(0.0, "binomial mixture SPRT", 0.0)
    if bound <= 0.0 or bound >= 1.0:
        # A bound at the edge: "above 0" is proven by one event and "below 1" by one non-event;
        # "below 0" and "above 1" can never be.
        proven = (side == "above" and x > 0) if bound <= 0.0 else (side == "below" and x < n)
        return Evidence(math.inf if proven else -math.inf, "binomial (bound at 0 or 1)", math.inf if proven else 0.0)
    ratios = [x * up + (n - x) * down for up, down in _alternatives(bound, side)]
    return Evidence(_log_mean_exp(ratios), "binomial mixture SPRT", max(ratios))


@functools.lru_cache(maxsize=256)
def _alternatives(bound: float, side: Side) -> tuple[tuple[float, float], ...]:
    """Per alternative p_k: (log(p_k / bound), log((1 - p_k) / (1 - bound))), the two terms of the
    binomial log likelihood ratio; a gate's bounds are few, so they are computed once."""
    sign = 1.0 if side == "above" else -1.0
    centre = _logit(bound)
    out = []
    for shift in LOGIT_SHIFTS:
        p = _expit(centre + sign * shift)
        out.append((math.log(p / bound), math.log((1.0 - p) / (1.0 - bound))))
    return tuple(out)


def constrained_rates(x_c: float, n_c: float, x_s: float, n_s: float, margin: float) -> tuple[float, float]:
    """Maximum-likelihood ``(p_c, p_s)`` under ``p_c - p_s = margin`` (Farrington & Manning 1990).

    The restricted likelihood of two binomials has its maximum at the root in [0, 1] of a cubic; the
    trigonometric solution is the published one (``tests/unit/test_sequential.py`` checks it against
    a numerical maximisation, for positive and negative margins).
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


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _log_marginal(x: float, n: float) -> float:
    """Beta-binomial marginal likelihood (Jeffreys prior), without the binomial coefficient."""
    return _log_beta(_JEFFREYS + x, _JEFFREYS + n - x) - _log_beta(_JEFFREYS, _JEFFREYS)


def two_sample_log_e(
    x_c: float, n_c: float, x_s: float, n_s: float, margin: float, side: Side
) -> Evidence:  # fmt: skip
    """Evidence that ``p_c - p_s`` is ``side`` of ``margin`` (module docstring).

    ``margin`` may be negative (a drop written as a difference): "canary accuracy more than 0.02
    below stable" is ``side="below", margin=-0.02``.
    """
    _check(x_c, n_c, "canary")
    _check(x_s, n_s, "baseline")
    if n_c == 0 or n_s == 0:
        return Evidence(0.0, "no samples", 0.0)
    x_c, x_s = min(x_c, n_c), min(x_s, n_s)
    observed = x_c / n_c - x_s / n_s - margin
    pc, ps = constrained_rates(x_c, n_c, x_s, n_s, margin)
    expected = min(n_c * pc, n_c * (1.0 - pc), n_s * ps, n_s * (1.0 - ps))
    if expected < SMALL_EXPECTED:
        return _universal(x_c, n_c, x_s, n_s, observed, pc, ps, side)
    variance = pc * (1.0 - pc) / n_c + ps * (1.0 - ps) / n_s
    toward = observed if side == "above" else -observed
    ratios = [(theta * toward - theta * theta / 2.0) / variance for theta in DIFFERENCE_SHIFTS]
    return Evidence(_log_mean_exp(ratios), "mixture SPRT on the difference", max(ratios))


def _universal(
    x_c: float, n_c: float, x_s: float, n_s: float, observed: float, pc: float, ps: float, side: Side
) -> Evidence:
    """Exact e-value for small counts: marginal likelihood over the null's maximum likelihood."""
    on_alternative = observed > 0 if side == "above" else observed < 0
    if on_alternative:  # the null's maximum is on the boundary: the constrained rates
        null = _log_binomial(x_c, n_c, pc) + _log_binomial(x_s, n_s, ps)
    else:  # the unrestricted maximum is inside the null
        null = _log_binomial(x_c, n_c, x_c / n_c) + _log_binomial(x_s, n_s, x_s / n_s)
    log_e = _log_marginal(x_c, n_c) + _log_marginal(x_s, n_s) - null
    log_e = log_e if on_alternative else min(log_e, 0.0)
    return Evidence(log_e, "exact (universal inference)", log_e)


def required_growth(evidence: Evidence, alpha: float, alternatives: int) -> float | None:
    """About how many times the current samples the test needs to decide, if the estimate holds.

    Each log likelihood ratio of a fixed effect grows linearly with the samples, so the factor is
    (bound + log of the grid size) over the best current ratio; None when the data point the other
    way (more of the same data never decides). For the "waiting for evidence" message only.
    """
    bound = math.log(1.0 / alpha)
    if evidence.log_e >= bound:
        return 1.0
    if evidence.best <= 0.0 or not math.isfinite(evidence.best):
        return None
    return (bound + math.log(alternatives)) / evidence.best
