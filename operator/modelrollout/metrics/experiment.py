"""The A/B test's decision: which revision is better on the primary metric, or that neither is.

The candidate (B) and the stable revision (A) serve fixed shares of the traffic over the same
period; the primary metric is a proportion per revision (accuracy from feedback labels, or a pair
of PromQL counts such as conversions out of sessions), counted since the experiment began. The
decision uses the two-sample always-valid tests of :mod:`modelrollout.metrics.sequential` on the
difference ``d = p_B - p_A``, checked at every analysis interval for as long as the experiment runs:

* **CandidateWon** when the evidence shows ``d > 0`` (e-value >= 2/alpha: the two directions share
  alpha), **StableWon** when it shows ``d < 0``;
* **Tie** when it shows ``-tieMargin < d < tieMargin`` (both one-sided tests at 1/alpha: an
  intersection-union test, so the tie claim's error is alpha too);
* otherwise **Running**; the engine ends a running experiment at ``maxDuration`` as a timeout.

Whatever the number of looks, P(a wrong winner) <= alpha/2 per direction and P(a tie when
``|d| >= tieMargin``) <= alpha. The confidence interval reported with it is the set of differences
neither one-sided test rejects at alpha/2: an anytime-valid ``1 - alpha`` interval (a confidence
sequence), so it can be read at any check, not only at the end.
"""

from __future__ import annotations

import math

from modelrollout.api.types import ArmCounts, ExperimentOutcome, ExperimentResult, ModelDeploymentSpec
from modelrollout.metrics import templates
from modelrollout.metrics.provider import MetricsProvider
from modelrollout.metrics.sequential import Side, two_sample_log_e

_BISECTIONS = 30
"""Halvings of [-1, 1] per interval end: a precision of 2e-9, far below any reported digit."""


def evaluate(
    spec: ModelDeploymentSpec,
    candidate: str,
    stable: str,
    tables: dict[str, dict[str, str]],
    provider: MetricsProvider,
) -> ExperimentResult:
    """Count both revisions' successes and trials (``tables`` holds each one's substitutions over the
    experiment's period) and decide; a query that fails leaves the experiment Running with why."""
    ab = spec.strategy.abTest
    assert ab is not None
    metric = ab.metric
    arms: dict[str, ArmCounts] = {}
    for revision in (candidate, stable):
        counted = _count(metric.name, metric.successes, metric.trials, tables[revision], provider)
        if isinstance(counted, str):
            return _running(ab.significance, metric.name, candidate, stable, f"revision {revision}: {counted}")
        arms[revision] = ArmCounts(revision=revision, successes=counted[0], trials=counted[1],
                                   value=counted[0] / counted[1] if counted[1] else None)  # fmt: skip
    return decide(
        metric.name, arms[candidate], arms[stable], ab.significance, ab.tieMargin, ab.minSamples
    )  # fmt: skip


def _count(
    name: str, successes: str | None, trials: str | None, table: dict[str, str], provider: MetricsProvider
) -> tuple[int, int] | str:
    """(successes, trials) for one revision, or an error text."""
    if successes is None or trials is None:
        queries = templates.count_queries(name, table)
        successes, trials = queries.events, queries.samples
    else:
        successes, trials = templates.render(successes, table), templates.render(trials, table)
    n = provider.query(trials)
    if n.error:
        return n.error
    total = max(round(n.value or 0.0), 0)
    if total == 0:
        return 0, 0
    x = provider.query(successes)
    if x.error:
        return x.error
    return min(max(round(x.value or 0.0), 0), total), total


def decide(metric: str, b: ArmCounts, a: ArmCounts, alpha: float, margin: float, min_samples: int) -> ExperimentResult:
    """The outcome and interval for counts ``b`` (candidate) and ``a`` (stable); see the module docstring."""
    result = _running(alpha, metric, b.revision, a.revision, "")
    result = result.model_copy(update={"candidate": b, "stable": a})
    if not b.trials or not a.trials:
        return result.model_copy(update={"message": "no trials yet on both revisions"})
    effect = b.successes / b.trials - a.successes / a.trials
    lower, upper = interval(b, a, alpha)
    result = result.model_copy(update={"effect": effect, "lower": lower, "upper": upper})
    short = min(b.trials, a.trials)
    if short < min_samples:
        return result.model_copy(update={"message": f"{short} of minSamples={min_samples} trials on the smaller side"})
    two_sided = math.log(2.0 / alpha)
    if _log_e(b, a, 0.0, "above") >= two_sided:
        return result.model_copy(update={"outcome": ExperimentOutcome.CANDIDATE_WON,
                                         "message": f"{b.revision} is better: {_ci_text(result)}"})  # fmt: skip
    if _log_e(b, a, 0.0, "below") >= two_sided:
        return result.model_copy(update={"outcome": ExperimentOutcome.STABLE_WON,
                                         "message": f"{a.revision} is better: {_ci_text(result)}"})  # fmt: skip
    one_sided = math.log(1.0 / alpha)
    if _log_e(b, a, margin, "below") >= one_sided and _log_e(b, a, -margin, "above") >= one_sided:
        return result.model_copy(update={"outcome": ExperimentOutcome.TIE,
                                         "message": f"within +-{margin:g}: {_ci_text(result)}"})  # fmt: skip
    return result.model_copy(update={"message": f"undecided: {_ci_text(result)}"})


def interval(b: ArmCounts, a: ArmCounts, alpha: float) -> tuple[float, float]:
    """The anytime-valid ``1 - alpha`` interval of ``p_B - p_A``: differences no one-sided test rejects
    at alpha/2. Rejection is monotone in the margin, so each end is found by bisection."""
    bound = math.log(2.0 / alpha)

    def lowest_kept(side: Side) -> float:
        # "above m" is rejected (d shown above m) for every m below the lower end; "below m" for
        # every m above the upper end.
        lo, hi = -1.0, 1.0
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2.0
            rejected = _log_e(b, a, mid, side) >= bound
            if (side == "above") == rejected:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2.0

    return lowest_kept("above"), lowest_kept("below")


def _log_e(b: ArmCounts, a: ArmCounts, margin: float, side: Side) -> float:
    return two_sample_log_e(b.successes, b.trials, a.successes, a.trials, margin, side).log_e


def _ci_text(result: ExperimentResult) -> str:
    return (
        f"B - A = {result.effect:+.4f}, {100 * result.confidence:g} % interval "
        f"[{result.lower:+.4f}, {result.upper:+.4f}] (B {result.candidate.successes}/{result.candidate.trials}, "
        f"A {result.stable.successes}/{result.stable.trials})"
    )


def _running(alpha: float, metric: str, candidate: str, stable: str, message: str) -> ExperimentResult:
    return ExperimentResult(
        metric=metric,
        outcome=ExperimentOutcome.RUNNING,
        candidate=ArmCounts(revision=candidate, successes=0, trials=0),
        stable=ArmCounts(revision=stable, successes=0, trials=0),
        confidence=1.0 - alpha,
        message=message,
    )
