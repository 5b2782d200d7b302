"""The continuous watch in virtual time: the operator's loop on a stable revision, drift gate only.

Like hack/decisions/rollout.py, minus Kubernetes: ``engine.analysis_due`` says when to check,
``metrics.gates.run_analysis`` runs the real drift gate against :class:`~.sim.SimPrometheus`, and
``engine.decide`` sets ``status.drift`` and the ``Drifted`` condition. The loop ticks at every
analysis interval (nothing else changes between checks; the watch window is a multiple of it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from modelrollout import engine
from modelrollout.api.types import GateReason, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.durations import parse_duration
from modelrollout.metrics import drift
from modelrollout.metrics.gates import alpha_per_test, run_analysis

from .sim import SimPrometheus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STABLE = "stable0001"
NAMESPACE, NAME = "bench", "fraud"


def spec_for(base: dict, *, max_psi: float = 0.2, window: str = "1h", interval: str = "30s") -> ModelDeploymentSpec:
    """``base`` (a ModelDeployment's spec) watched by one drift gate at default settings."""
    analysis = {
        **base.get("analysis", {}),
        "interval": interval,
        "metrics": [{"name": "drift", "maxPSI": max_psi}],
        "continuous": {"window": window},
    }
    return ModelDeploymentSpec.model_validate({**base, "analysis": analysis})


def stable_status(spec: ModelDeploymentSpec, now: datetime = T0) -> ModelDeploymentStatus:
    """A ModelDeployment whose only revision is stable and watched from ``now`` on."""
    desired = engine.DesiredRevision(STABLE, spec.model, spec.serving)
    n = spec.serving.replicas
    ready = engine.DeploymentState(replicas=n, updated=n, ready=n, available=n)
    obs = engine.Observations(1, desired, {STABLE: ready})
    status = engine.decide(spec, ModelDeploymentStatus(), obs, now).status
    status = engine.decide(spec, status, obs, now).status
    assert status.phase == "Succeeded" and status.watchSince == now, status.message
    return status


@dataclass
class Watch:
    """What happened over one simulated run."""

    seconds: float = 0.0
    checks: int = 0
    drifted_checks: int = 0  # the drift gate said Fail
    waiting_checks: int = 0  # InsufficientSamples: some feature still short of values
    passed_checks: int = 0
    episodes: int = 0  # the Drifted condition turned True
    first_drifted: float | None = None  # seconds from the start to the first Drifted=True
    first_message: str = ""  # the Drifted condition's message then
    first_features: tuple[str, ...] = ()
    psi_alone: int = 0  # checks where some feature with any value had PSI > maxPSI (no guard, no test)
    psi_alone_features: dict[str, int] = field(default_factory=dict)
    test_alone: int = 0  # checks where some judged feature had chi-square p < alpha (no PSI bound)
    test_alone_features: dict[str, int] = field(default_factory=dict)
    max_psi: dict[str, float] = field(default_factory=dict)  # largest PSI of a judged feature
    drifted_features: dict[str, int] = field(default_factory=dict)  # drifted checks naming each feature


def _condition(status: ModelDeploymentStatus, kind: str) -> tuple[bool, str]:
    for c in status.conditions:
        if c.type == kind:
            return c.status == "True", c.message or ""
    return False, ""


def run(
    spec: ModelDeploymentSpec,
    prometheus: SimPrometheus,
    seconds: float,
    *,
    stop_on_drift: bool = False,
) -> Watch:
    """Watch the stable for ``seconds`` (until the first Drifted=True with ``stop_on_drift``)."""
    status = stable_status(spec)
    interval = parse_duration(spec.analysis.interval)
    bound = spec.analysis.metrics[0].maxPSI
    assert bound is not None
    references = {c.name: drift.ReferenceBins(tuple(range(c.bins - 1)), c.fractions) for c in prometheus.binner.columns}
    expected = {name: ref.probabilities() for name, ref in references.items()}
    out = Watch()
    n = spec.serving.replicas
    deployments = {STABLE: engine.DeploymentState(replicas=n, updated=n, ready=n, available=n)}
    alpha = alpha_per_test(spec)
    desired = engine.DesiredRevision(STABLE, spec.model, spec.serving)
    was_drifted = False
    t = 0.0
    while t + interval <= seconds + 1e-9:
        t += interval
        prometheus.now = t
        now = T0 + timedelta(seconds=t)
        obs = engine.Observations(1, desired, deployments)
        target = engine.analysis_due(spec, status, now)
        if target is not None:
            result = run_analysis(spec, status, target, NAMESPACE, NAME, now, provider=prometheus)
            obs = dataclasses.replace(obs, analysis=result)
            _tally(out, result.metrics[0], prometheus.last_counts, expected, bound, alpha)
        status = engine.decide(spec, status, obs, now).status
        drifted, message = _condition(status, "Drifted")
        if drifted and not was_drifted:
            out.episodes += 1
            if out.first_drifted is None:
                out.first_drifted, out.first_message = t, message
                out.first_features = tuple(f.name for f in (status.drift.features if status.drift else []))
            if stop_on_drift:
                break
        was_drifted = drifted
    out.seconds = t
    return out


def _tally(
    out: Watch,
    gate: MetricResult,
    counts: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    bound: float,
    alpha: float,
) -> None:
    out.checks += 1
    if gate.verdict == "Fail":
        out.drifted_checks += 1
        for f in gate.features:
            if f.drifted:
                out.drifted_features[f.name] = out.drifted_features.get(f.name, 0) + 1
    elif gate.reason == GateReason.INSUFFICIENT_SAMPLES:
        out.waiting_checks += 1
    elif gate.verdict == "Pass":
        out.passed_checks += 1
    flagged_test = [f.name for f in gate.features if f.pValue < alpha]
    for f in gate.features:
        out.max_psi[f.name] = max(out.max_psi.get(f.name, 0.0), f.psi)
    flagged_psi = [name for name, c in counts.items() if c.sum() > 0 and drift.psi(expected[name], c) > bound]
    for flagged, total, per_feature in (
        (flagged_psi, "psi_alone", out.psi_alone_features),
        (flagged_test, "test_alone", out.test_alone_features),
    ):
        if flagged:
            setattr(out, total, getattr(out, total) + 1)
            for name in flagged:
                per_feature[name] = per_feature.get(name, 0) + 1
