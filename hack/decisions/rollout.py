"""One simulated rollout: the operator's loop (check when due, decide, apply weights) in virtual time.

The loop is the shell's, minus Kubernetes: ``engine.analysis_due`` says when to check,
``metrics.gates.run_analysis`` runs the real gate code against :class:`~sim.SimPrometheus`, and
``engine.decide`` decides. Deployments are ready as soon as they are asked for (the benchmark is
about decisions, not pod start-up), and the route's weights take effect at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from modelrollout import engine
from modelrollout.api.types import ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.durations import parse_duration
from modelrollout.metrics.gates import run_analysis
from modelrollout.strategy import plan_for

from .sim import Behaviour, Fleet, SimPrometheus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STABLE, CANARY = "stable0001", "canary0002"
NAMESPACE, NAME = "bench", "fraud"


@dataclass(frozen=True)
class Outcome:
    """How one rollout ended, in simulated seconds from the canary's creation."""

    result: str  # "promoted" (bake passed), "rolled-back", "reverted-in-bake", "running" (horizon)
    reason: str
    seconds: float
    promoted_at: float | None
    canary_requests: int  # requests the canary served before the end


def _stable_status(spec: ModelDeploymentSpec) -> ModelDeploymentStatus:
    """A ModelDeployment whose first revision is stable, as the engine leaves it."""
    desired = engine.DesiredRevision(STABLE, spec.model, spec.serving)
    obs = engine.Observations(1, desired, {STABLE: _ready(spec.serving.replicas)})
    status = engine.decide(spec, ModelDeploymentStatus(), obs, T0 - timedelta(hours=1)).status
    status = engine.decide(spec, status, obs, T0 - timedelta(hours=1)).status
    assert status.phase == "Succeeded", status.message
    return status


def _ready(n: int) -> engine.DeploymentState:
    return engine.DeploymentState(replicas=n, updated=n, ready=n, available=n)


def _slos(spec: ModelDeploymentSpec) -> tuple[float, ...]:
    return tuple(sorted({m.slowerThanMs for m in spec.analysis.metrics if m.slowerThanMs is not None}))


def simulate(
    spec: ModelDeploymentSpec,
    rate: float,
    stable: Behaviour,
    canary: Behaviour,
    seed: int,
    *,
    scrape: float = 15.0,
    warmup: float = 600.0,
    horizon: float = 6 * 3600.0,
) -> Outcome:
    """Roll ``canary`` out over ``stable`` at ``rate`` requests/s; return how it ended.

    ``warmup`` seconds of stable-only traffic come first, as in a cluster where the stable served
    before the rollout started. The loop ticks at every analysis interval (the operator ticks
    every 5 s, but nothing changes between checks except step timers, which are multiples of it in
    every configuration benchmarked).
    """
    rng = np.random.default_rng(seed)
    fleet = Fleet(rng, NAMESPACE, scrape, _slos(spec))
    prometheus = SimPrometheus(fleet)
    behaviours = {STABLE: stable, CANARY: canary}
    status = _stable_status(spec)
    fleet.serve(warmup, rate, {STABLE: 1.0}, behaviours)
    desired = engine.DesiredRevision(CANARY, spec.model, spec.serving)
    deployments = {STABLE: _ready(spec.serving.replicas), CANARY: _ready(spec.serving.replicas)}
    interval = parse_duration(spec.analysis.interval)
    promoted_at: float | None = None
    t = 0.0
    while t <= horizon:
        now = T0 + timedelta(seconds=t)
        obs = engine.Observations(2, desired, deployments)
        target = engine.analysis_due(spec, status, now)
        if target is not None:
            result = run_analysis(spec, status, target, NAMESPACE, NAME, now, provider=prometheus)
            obs = dataclasses.replace(obs, analysis=result)
        status = engine.decide(spec, status, obs, now).status
        if status.phase == "Baking" and promoted_at is None:
            promoted_at = t
        if status.phase == "Succeeded":
            return Outcome("promoted", "Promoted", t, promoted_at if promoted_at is not None else t, _served(fleet))
        if status.phase == "RolledBack":
            ended = "reverted-in-bake" if promoted_at is not None else "rolled-back"
            return Outcome(ended, status.rollbackReason or "", t, promoted_at, _served(fleet))
        weights = _weights(status)
        t += interval
        fleet.serve(warmup + t, rate, weights, behaviours, _mirror(spec, status), _compared(status))
    return Outcome("running", "horizon", horizon, promoted_at, _served(fleet))


def _weights(status: ModelDeploymentStatus) -> dict[str, float]:
    stable = status.stableRevision or STABLE
    if status.canaryRevision and status.canaryWeight:
        return {stable: 100.0 - status.canaryWeight, status.canaryRevision: float(status.canaryWeight)}
    return {stable: 100.0}


def _mirror(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> tuple[str, float] | None:
    """(canary, percent) while the shadow step mirrors to it (the engine mirrors once it is ready,
    which it is at once here)."""
    plan = plan_for(spec)
    if status.canaryRevision and plan.is_shadow_step(status.currentStep):
        return status.canaryRevision, float(plan.shadow_percent)
    return None


def _compared(status: ModelDeploymentStatus) -> frozenset[str]:
    """Revisions whose pods score every request with the stable model too (started under shadow)."""
    return frozenset(h.revision for h in status.history if h.comparedWith is not None)


def _served(fleet: Fleet) -> int:
    return fleet.served.get(CANARY, 0)
