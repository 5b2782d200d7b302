"""The comparison: a fixed-threshold rule on each analysis window, as Flagger and Argo Rollouts run it.

Flagger checks each metric of the last ``interval`` against a threshold and rolls back after
``threshold`` failed checks (here 1, as our ``failureLimit``); Argo Rollouts' AnalysisRun does the
same with ``failureLimit``. There is no sample minimum and an empty window passes (Flagger treats
NaN as within range). The rule runs on the same schedule (steps, stepDuration, interval, bake) and
the same simulated traffic as ours; its thresholds are *tuned* so that a healthy canary is rolled
back as often as with our gates, and we report what that buys in power. Vectorised with numpy:
thousands of rollouts per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.durations import parse_duration

from .sim import Behaviour


@dataclass(frozen=True)
class Schedule:
    """Canary weight at each check, and the index of the first check after promotion."""

    weights: np.ndarray
    promoted_at: int
    interval: float


def schedule(spec: ModelDeploymentSpec) -> Schedule:
    interval = parse_duration(spec.analysis.interval)
    per_step = max(1, round(parse_duration(spec.strategy.canary.stepDuration) / interval))
    weights: list[float] = []
    for weight in spec.strategy.canary.steps:
        weights += [weight / 100.0] * per_step
    promoted = len(weights)
    weights += [1.0] * max(1, round(parse_duration(spec.bake.duration) / interval))
    return Schedule(np.array(weights), promoted, interval)


def _windows(rng: np.random.Generator, n: int, sched: Schedule, rate: float, b: Behaviour, slo: float | None):
    """Per rollout and check: the canary's window error rate, slow share and accuracy (NaN if empty)."""
    requests = rng.poisson(rate * sched.interval * sched.weights, size=(n, len(sched.weights)))
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = rng.binomial(requests, b.server_error) / requests
        slow = rng.binomial(requests, b.slow.get(slo, 0.0) if slo else 0.0) / requests
        labels = rng.binomial(requests, b.labelled)
        accuracy = rng.binomial(labels, b.accuracy) / labels
    return errors, slow, accuracy


def _first_trip(errors, slow, accuracy, thresholds: tuple[float, float, float]) -> np.ndarray:
    """Index of the first check where any gate breaches (NaN never breaches), or -1."""
    e, s, a = thresholds
    trip = np.nan_to_num(errors, nan=0.0) > e
    trip |= np.nan_to_num(slow, nan=0.0) > s
    trip |= np.nan_to_num(accuracy, nan=1.0) < a
    first = np.argmax(trip, axis=1)
    return np.where(trip.any(axis=1), first, -1)


@dataclass(frozen=True)
class FixedRuleResult:
    thresholds: tuple[float, float, float]
    false_rollback: float
    power: dict[str, tuple[float, float | None]]  # scenario -> (rolled back before promotion, median s)


def tune_and_measure(
    spec: ModelDeploymentSpec,
    rate: float,
    healthy: Behaviour,
    bad: dict[str, Behaviour],
    target: float,
    seed: int,
    n: int = 20000,
) -> FixedRuleResult:
    """Thresholds giving a healthy false-rollback rate of ``target`` (split evenly over the three
    gates), then each bad scenario's power before promotion and median time to detect."""
    sched = schedule(spec)
    slo = next((m.slowerThanMs for m in spec.analysis.metrics if m.slowerThanMs is not None), None)
    rng = np.random.default_rng(seed)
    errors, slow, accuracy = _windows(rng, n, sched, rate, healthy, slo)
    per_gate = 1.0 - target / 3.0
    thresholds = (
        float(np.quantile(np.nanmax(np.nan_to_num(errors, nan=0.0), axis=1), per_gate)),
        float(np.quantile(np.nanmax(np.nan_to_num(slow, nan=0.0), axis=1), per_gate)),
        float(np.quantile(np.nanmin(np.nan_to_num(accuracy, nan=1.0), axis=1), 1.0 - per_gate)),
    )
    false_rollback = float((_first_trip(errors, slow, accuracy, thresholds) >= 0).mean())
    power: dict[str, tuple[float, float | None]] = {}
    for name, behaviour in bad.items():
        first = _first_trip(*_windows(rng, n // 4, sched, rate, behaviour, slo), thresholds)
        caught = (first >= 0) & (first < sched.promoted_at)
        times = (first[caught] + 1) * sched.interval
        power[name] = (float(caught.mean()), float(np.median(times)) if times.size else None)
    return FixedRuleResult(thresholds, false_rollback, power)
