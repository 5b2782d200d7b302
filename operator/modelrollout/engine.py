"""The rollout engine: a pure function ``decide(spec, status, observations, now) -> Decision``.

No I/O here. The shell (handlers.py) observes the cluster and Prometheus, calls ``decide``, applies
the returned actions in order and writes the returned status. Because every fact the engine needs is
either in ``status`` or re-observed each tick, a restarted operator continues exactly where the last
one stopped, and the same inputs always give the same decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from modelrollout import hooks
from modelrollout.api.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    AnalysisResult,
    ArmCounts,
    ComparedModel,
    Condition,
    DriftStatus,
    ExperimentOutcome,
    ExperimentResult,
    FeatureDrift,
    GateReason,
    HistoryEntry,
    HistoryPhase,
    HookResult,
    HookType,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelSpec,
    Phase,
    Reason,
    RetiringRevision,
    RetrainingOutcome,
    RetrainingStatus,
    ServingSpec,
    gate_reason,
)
from modelrollout.contract import Compatible, ContractResult, Incompatible, Unknown
from modelrollout.durations import parse_duration
from modelrollout.retraining import backoff, job_name
from modelrollout.revision import unsigned_uri
from modelrollout.routing import Routing
from modelrollout.strategy import RolloutPlan, Strategy, plan_for

ACTIVE_PHASES = {Phase.INITIALIZING, Phase.PROGRESSING, Phase.BAKING}


# ------------------------------------------------------------------------------------ observations


@dataclass(frozen=True)
class DeploymentState:
    """What the cluster says about one revision's Deployment."""

    replicas: int
    updated: int
    ready: int
    available: int
    up_to_date: bool = True  # the Deployment controller has observed the latest generation
    # Why its pods are not ready, as the kubelet reports it (a container that cannot start or keeps
    # exiting, with its message); the shell looks only while the desired revision is short of ready pods.
    problem: str | None = None


def _why(dep: DeploymentState | None) -> str:
    """``": <problem>"`` when the pods say why they are not ready, for the messages that wait on them."""
    return f": {dep.problem}" if dep is not None and dep.problem else ""


@dataclass(frozen=True)
class DesiredRevision:
    """The revision the spec asks for, hashed by the shell (it knows the default image)."""

    revision: str
    model: ModelSpec
    serving: ServingSpec


@dataclass(frozen=True)
class JobState:
    """The current retraining run's Job as the shell read it; ``phase`` None: the Job does not exist."""

    phase: RetrainingOutcome | None
    message: str = ""


@dataclass(frozen=True)
class Observations:
    generation: int
    desired: DesiredRevision
    deployments: Mapping[str, DeploymentState] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    analysis: AnalysisResult | None = None  # a check the shell ran this tick because analysis_due() said so
    # The canary's signature against stable's, observed only while it waits for its first step;
    # None: not checked this tick (no Prometheus, or the canary has no ready pod yet).
    contract: ContractResult | None = None
    name: str = ""  # the ModelDeployment's name (retraining Jobs are named after it)
    # The running retraining run's Job, read only while status.retraining says one runs; None: not read.
    retraining_job: JobState | None = None
    # Rollout hooks the shell called this tick because hooks.due() said so.
    hooks: tuple[HookResult, ...] = ()


# ----------------------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class EnsureRevision:
    """Apply the revision's Deployment with this many replicas (snapshot taken from status.history)."""

    revision: str
    replicas: int


@dataclass(frozen=True)
class DeleteRevision:
    revision: str


@dataclass(frozen=True)
class PointService:
    """Point the stable or canary Service at a revision.

    Both Services live as long as the ModelDeployment: between rollouts the canary Service selects
    the stable revision (no route names it then), so a rollout moves a selector instead of creating
    and deleting a Service, which allocates and frees a cluster IP and was the slowest request
    of a rollout at scale (`make bench-operator`)."""

    role: str  # "stable" | "canary"
    revision: str


@dataclass(frozen=True)
class SetRouting:
    """Route requests as ``routing`` says: the canary's weight, and which requests reach it whatever
    the weight (header and cookie routes, on only while the canary has ready pods)."""

    routing: Routing


@dataclass(frozen=True)
class PruneRoutes:
    """Delete the routes of every traffic provider but ``keep`` (a provider switch). Always after
    this decision's SetRouting, so traffic has a route at every moment."""

    keep: str


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the ModelDeployment."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class StartRetraining:
    """Create retraining Job ``job`` for the drifted stable ``revision`` (an existing Job of that name
    is this same run, started by a decision whose status was not written)."""

    job: str
    revision: str
    model_uri: str
    drift: DriftStatus


Action = EnsureRevision | DeleteRevision | PointService | SetRouting | PruneRoutes | Emit | StartRetraining


@dataclass(frozen=True)
class Transition:
    """The phase change a decision makes, as the engine made it: the operator's rollout counters
    and its time-to-rollback histogram record these instead of re-deriving them from two statuses."""

    old: Phase | None
    new: Phase
    reason: str | None = None  # why a rollout ended badly (RolledBack, Failed); None otherwise
    revision_started_at: datetime | None = None  # when the revision this transition concerns was created


@dataclass
class Decision:
    status: ModelDeploymentStatus
    actions: list[Action] = field(default_factory=list)
    transition: Transition | None = None  # None: the phase did not change
    record_first: bool = False
    """The shell may write this status before carrying out the actions: the decision starts a
    canary while no other canary was running, and every action it asks for (the canary's Deployment
    and Service, routes at weight 0) is asked for again by every later decision made from this status,
    so a crash or a refused write in between loses nothing, and no traffic moves. The user (and a
    GitOps tool waiting for observedGeneration) sees the new revision acknowledged one request
    sooner; at 1,000 objects that request waits on a busy API server (`make bench-operator`)."""


# ---------------------------------------------------------------------------------------- helpers


def analysis_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> str | None:
    """The revision whose gates should be checked now, or None; the shell then queries Prometheus."""
    target = _analysis_target(spec, status)
    if target is None:
        return None
    at = _analysis_due_at(spec, status)
    return target if at is None or now >= at else None


def _analysis_target(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> str | None:
    """The revision under analysis in this status (canary in a step, stable while baking or watched)."""
    if spec.paused:
        return None
    if status.phase == Phase.PROGRESSING and status.canaryRevision and status.currentStep is not None:
        # A canary without ready pods serves nothing to judge: its checks (and its step's clock)
        # wait until it is back, which a watch event announces.
        return status.canaryRevision if status.canaryUnavailableSince is None else None
    if status.phase == Phase.BAKING and status.stableRevision:
        return status.stableRevision
    if watching(spec, status):
        return status.stableRevision
    return None


def _analysis_due_at(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> datetime | None:
    """When the next check is due; None: at once. The first check of an evidence period waits one
    interval: at its very start there is nothing to count yet, and a check then would only push the
    first real one an interval later."""
    last = status.lastCheckAt or _evidence_start(status)
    return None if last is None else last + timedelta(seconds=parse_duration(spec.analysis.interval))


# A check already due is due now; the shell looks again this soon after the decision just made.
# (Deadlines need no such margin: the engine treats one as passed from its very moment, ``elapsed >=
# limit``, so the moment itself is when the decision changes.)
_AFTER = timedelta(milliseconds=1)


def next_due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` at which ``decide`` could decide differently with nothing
    else changed: a check falling due, a step's or a bake's time running out, a deadline passing, a
    watch window rolling over. None when only a new observation (a watch event) can change anything.

    The shell schedules the object's next reconcile here instead of polling every object on one
    clock; ``tests/unit/test_engine_next_due.py`` checks that no decision changes before it.
    """
    if spec.paused:
        return None
    plan = plan_for(spec)
    candidates: list[datetime] = []
    if _analysis_target(spec, status) is not None:  # a check already due is due now
        candidates.append(max(now + _AFTER, _analysis_due_at(spec, status) or now))
    deadline = timedelta(seconds=spec.progressDeadlineSeconds)
    if status.stableRevision is None:
        if status.phase != Phase.FAILED and status.revisionStartedAt is not None:
            candidates.append(status.revisionStartedAt + deadline)
    elif status.phase == Phase.PROGRESSING and status.canaryRevision is not None:
        if status.currentStep is None:
            if status.revisionStartedAt is not None:
                candidates.append(status.revisionStartedAt + deadline)
        else:
            if status.canaryUnavailableSince is not None:
                candidates.append(status.canaryUnavailableSince + deadline)
            if status.stepStartedAt is not None:
                step_time = parse_duration(plan.step_duration_at(status.currentStep))
                candidates.append(status.stepStartedAt + timedelta(seconds=step_time))
                if plan.proportional and status.canaryWeight < plan.steps[status.currentStep]:
                    candidates.append(status.stepStartedAt + deadline)  # the scale-up's deadline
                max_step = timedelta(seconds=parse_duration(plan.max_step_duration_at(status.currentStep)))
                candidates.append(status.stepStartedAt + max_step)
    elif status.phase == Phase.BAKING and status.bakeStartedAt is not None:
        candidates.append(status.bakeStartedAt + timedelta(seconds=plan.hold_seconds))
    candidates.extend(r.scaleDownAt for r in status.retiring)
    if _retraining_waits(spec, status) and status.retraining and status.retraining.nextRunAfter:
        candidates.append(status.retraining.nextRunAfter)
    call = hooks.next_call(spec, status, now)
    if call is not None:
        candidates.append(max(call, now + _AFTER))
    cont = spec.analysis.continuous
    if cont is not None and watching(spec, status) and status.watchSince is not None:
        candidates.append(status.watchSince + timedelta(seconds=parse_duration(cont.window)))
    # A deadline at or before ``now`` was acted on by the decision just made.
    return min((c for c in candidates if c > now), default=None)


def _evidence_start(status: ModelDeploymentStatus) -> datetime | None:
    if status.phase == Phase.BAKING:
        return status.bakeStartedAt
    if status.phase == Phase.PROGRESSING:
        return status.evidenceSince
    return status.watchSince


def watching(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """The continuous watch runs on the stable revision while nothing else is being rolled out."""
    return (
        spec.analysis.continuous is not None
        and bool(spec.analysis.metrics)
        and status.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK)
        and status.stableRevision is not None
        and status.canaryRevision is None
    )


def set_condition(
    status: ModelDeploymentStatus,
    type_: str,
    value: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> None:
    """metav1.Condition semantics: lastTransitionTime moves only when the status value changes."""
    text: Literal["True", "False"] = "True" if value else "False"
    for cond in status.conditions:
        if cond.type == type_:
            if cond.status != text:
                cond.lastTransitionTime = now
            cond.status, cond.reason, cond.message, cond.observedGeneration = (
                text,
                reason,
                message,
                generation,
            )
            return
    status.conditions.append(
        Condition(
            type=type_,
            status=text,
            reason=reason,
            message=message,
            lastTransitionTime=now,
            observedGeneration=generation,
        )
    )


def _is_available(dep: DeploymentState | None, want: int) -> bool:
    if dep is None or not dep.up_to_date:
        return False
    return dep.available >= want and dep.updated >= want


def _claim(uri: str) -> str | None:
    """The PersistentVolumeClaim of a ``pvc://<claim>/<path>`` URI (None for other schemes)."""
    return uri.removeprefix("pvc://").partition("/")[0] if uri.startswith("pvc://") else None


def _history(status: ModelDeploymentStatus, revision: str) -> HistoryEntry | None:
    for entry in status.history:
        if entry.revision == revision:
            return entry
    return None


class _Run:
    """One evaluation: holds the working copy and the actions, so each step reads as a sentence."""

    def __init__(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, obs: Observations, now: datetime):
        self.spec, self.obs, self.now = spec, obs, now
        self.plan: RolloutPlan = plan_for(spec)
        # A working copy; re-validating a dump is ~5x faster than model_copy(deep=True) and the same.
        self.status = ModelDeploymentStatus.model_validate(status.model_dump())
        self.actions: list[Action] = []
        self.old_phase = status.phase
        self.waiting: str | None = None  # why the current step is held for evidence (condition reason)
        self.started_canary = False

    # -- small verbs
    def emit(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(Emit(type_, reason, message))

    def finish_history(self, revision: str, phase: HistoryPhase, reason: str) -> None:
        entry = _history(self.status, revision)
        if entry is not None and (entry.phase, entry.reason) != (phase, reason):
            entry.phase, entry.reason, entry.finishedAt = phase, reason, self.now

    def start_history(self, desired: DesiredRevision, compared_with: ComparedModel | None = None) -> None:
        entry = _history(self.status, desired.revision)
        if entry is not None:
            self.status.history.remove(entry)
        self.status.history.append(
            HistoryEntry(
                revision=desired.revision,
                modelURI=unsigned_uri(desired.model.uri),
                phase=HistoryPhase.PROGRESSING,
                startedAt=self.now,
                model=desired.model,
                serving=desired.serving,
                comparedWith=compared_with,
            )
        )

    def comparison_for(self, desired: DesiredRevision) -> ComparedModel | None:
        """Under a shadow strategy, the stable model the candidate's pods load beside their own; None
        without shadow, or (with a Warning) when the candidate's pods could not read it: the stable
        model on another PersistentVolumeClaim, or behind other storage credentials."""
        stable = self.status.stableRevision
        entry = None if stable is None else _history(self.status, stable)
        if not self.plan.shadow_percent or entry is None or stable is None:
            return None
        theirs, ours = entry.model, desired.model
        if theirs.storage != ours.storage or _claim(theirs.uri) not in (None, _claim(ours.uri)):
            where = unsigned_uri(theirs.uri)
            self.emit("Warning", "ShadowComparisonUnavailable",
                      f"the pods of {desired.revision} cannot read stable {stable}'s model ({where}: another "
                      "PersistentVolumeClaim or other model.storage credentials): its agreement and "
                      "score-difference gates are blind")  # fmt: skip
            return None
        return ComparedModel(revision=stable, uri=theirs.uri, sha256=theirs.sha256)

    @property
    def replicas(self) -> int:
        """Full size: serving.replicas, or with serving.autoscaling whatever the stable revision has
        (its HorizontalPodAutoscaler's count, even outside the bounds: keeping them is the
        autoscaler's job). Asking the stable for the size it has leaves that count alone: the shell
        writes nothing then. minReplicas before there is a stable revision, and for one at 0 (which
        an HPA takes as "autoscaling off" and would never scale up)."""
        auto = self.spec.serving.autoscaling
        if auto is None:
            return self.spec.serving.replicas
        stable = self.status.stableRevision
        dep = self.obs.deployments.get(stable) if stable is not None else None
        return dep.replicas if dep is not None and dep.replicas > 0 else auto.minReplicas

    @property
    def no_mesh(self) -> bool:
        """The weight is a replica ratio: a canary without a traffic layer (blue-green is never one)."""
        return self.plan.replica_weights

    def canary_replicas(self, weight: int) -> int:
        """With a mesh (or blue-green) the canary runs full size, or its weight's share of it when
        canary.scaling is Proportional; without one its share of pods *is* the weight."""
        if not (self.no_mesh or self.plan.proportional):
            return self.replicas
        return max(1, math.ceil(self.replicas * weight / 100)) if self.replicas else 0

    def carried_weight(self, weight: int) -> int:
        """The share of traffic the canary can take now: ``weight`` once it has the pods for it
        (always, unless canary.scaling is Proportional); else the share its available pods carry,
        ``floor(100 x available / full size)``: a canary scaling up takes its step's weight in
        part, one that lost pods (or whose stable grew) gives back what they no longer carry."""
        st = self.status
        if not self.plan.proportional or st.canaryRevision is None:
            return weight
        dep = self.obs.deployments.get(st.canaryRevision)
        available = dep.available if dep is not None and dep.up_to_date else 0
        if available >= self.canary_replicas(weight) or not self.replicas:
            return weight
        return min(weight, 100 * available // self.replicas)

    @property
    def warm_replicas(self) -> int:
        """Replicas of the previous stable while baking. Without a mesh every running pod takes
        traffic, so the previous revision cannot be kept warm: it is scaled down and a revert
        scales it back up (slower, documented)."""
        return 0 if self.no_mesh else self.replicas

    def stable_replicas(self, canary_weight: int) -> int:
        if not self.no_mesh or canary_weight == 0:
            return self.replicas
        return max(1, self.replicas - math.floor(self.replicas * canary_weight / 100)) if self.replicas else 0

    def ensure(self, revision: str, replicas: int) -> None:
        """Ask for a revision's Deployment at ``replicas``, unless the latest such request in this
        decision already says exactly that (a step entered in the tick its canary became ready)."""
        latest = next(
            (a for a in reversed(self.actions) if isinstance(a, EnsureRevision) and a.revision == revision), None
        )
        if latest != EnsureRevision(revision, replicas):
            self.actions.append(EnsureRevision(revision, replicas))

    def retire(self, revision: str, served: bool = True) -> None:
        """Take a revision out of service. With a traffic layer, one that ``served`` traffic keeps its
        pods until the strategy's scaleDownDelay has passed (:func:`_retire_due` scales it down then):
        proxies learn new weights seconds after they are written, and until then they still send
        that revision its old share. Without a traffic layer (the Service's endpoints are the
        weights, and each pod's drainSeconds covers the lag) or with a 0s delay, it goes at once."""
        st = self.status
        st.retiring = [r for r in st.retiring if r.revision != revision]
        delay = parse_duration(self.plan.retire_delay)
        if not served or delay <= 0 or self.spec.traffic.none is not None:
            self.ensure(revision, 0)
            return
        st.retiring.append(RetiringRevision(revision=revision, scaleDownAt=self.now + timedelta(seconds=delay)))

    def set_weight(self, weight: int, canary_routes: bool = False) -> None:
        """Route ``weight`` % to the canary; with ``canary_routes`` (only where the canary has ready
        pods) also every request matching spec.traffic.canaryRoutes, whatever the weight, and in the
        shadow step mirror ``shadow.percent`` % of inference requests to it."""
        self.status.canaryWeight = weight
        self.status.weightApproximate = self.no_mesh
        canary = self.status.canaryRevision
        ready = canary_routes and canary is not None
        routes = tuple(self.spec.traffic.canaryRoutes) if ready else ()
        mirror = self.plan.shadow_percent if ready and self.plan.is_shadow_step(self.status.currentStep) else 0
        routed = canary if weight or routes or mirror else None
        self.actions.append(SetRouting(Routing(weight, routes, self.status.stableRevision, routed, mirror)))

    def elapsed(self, since: datetime | None) -> float:
        return (self.now - since).total_seconds() if since else 0.0


# ------------------------------------------------------------------------------------------ decide


def decide(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, obs: Observations, now: datetime) -> Decision:
    """Advance the rollout by at most one transition and say what the shell must do."""
    run = _Run(spec, status, obs, now)
    st = run.status
    st.observedGeneration = obs.generation
    hooks.record(st, obs.hooks)
    _handle_retry(run)

    if spec.paused:
        _paused(run)
    elif st.stableRevision is None:
        _first_revision(run)
    else:
        _steady_or_rollout(run)

    if not spec.paused:
        _retire_due(run)
        _retrain(run)
    _prune(run)
    _prune_routes(run)
    _conditions(run)
    transition = _transition(run, status)
    if transition is not None:
        run.emit("Normal", f"Phase{st.phase}", st.message or f"phase {run.old_phase} -> {st.phase}")
    # Not when it also ends another canary (traffic moves), nor with a one-off action that no later
    # decision asks for again (a pruned revision's Deployment, the old provider's routes).
    record_first = (
        run.started_canary
        and status.canaryRevision is None
        and st.canaryRevision is not None
        and not any(isinstance(a, DeleteRevision | PruneRoutes) for a in run.actions)
    )
    return Decision(st, run.actions, transition, record_first)


def _transition(run: _Run, before: ModelDeploymentStatus) -> Transition | None:
    """The phase change this decision makes. A rollout that ended badly says why (a rollback's own
    reason first: a failing continuous watch may be set too) and when the revision it ended started
    (as the decision found it: a decision that starts a new revision restamps it)."""
    st = run.status
    if st.phase is None or st.phase == run.old_phase:
        return None
    reason = None
    if st.phase == Phase.ROLLED_BACK:
        reason = st.rollbackReason or _degraded_reason(st)
    elif st.phase == Phase.FAILED:
        reason = _degraded_reason(st)
    return Transition(run.old_phase, st.phase, reason, before.revisionStartedAt or st.revisionStartedAt)


def _handle_retry(run: _Run) -> None:
    value = run.obs.annotations.get(ANNOTATION_RETRY)
    st = run.status
    if value and value != st.lastHandledRetry:
        st.lastHandledRetry = value
        if run.obs.desired.revision in st.failedRevisions:
            st.failedRevisions.remove(run.obs.desired.revision)
            run.emit("Normal", "RetryRequested", f"revision {run.obs.desired.revision} will be retried")


def _paused(run: _Run) -> None:
    st = run.status
    if st.phase != Phase.PAUSED:
        st.message = "paused by spec.paused; weights and replicas are held"
    st.phase = Phase.PAUSED


def _first_revision(run: _Run) -> None:
    """Nothing to compare with: the first revision becomes stable as soon as it is available."""
    st, desired = run.status, run.obs.desired
    rev = desired.revision
    if _history(st, rev) is None or st.phase not in (Phase.INITIALIZING, Phase.FAILED):
        for entry in st.history:
            if entry.revision != rev and entry.phase == HistoryPhase.PROGRESSING:
                run.finish_history(entry.revision, HistoryPhase.SUPERSEDED, f"spec changed to revision {rev}")
        run.start_history(desired)
        st.revisionStartedAt = run.now
        st.phase, st.message = Phase.INITIALIZING, f"waiting for revision {rev} to become available"
        run.emit("Normal", "RevisionCreated", f"revision {rev} serving {unsigned_uri(desired.model.uri)}")
    run.ensure(rev, run.replicas)
    dep = run.obs.deployments.get(rev)
    deadline = f"not available within progressDeadlineSeconds={run.spec.progressDeadlineSeconds}"
    if st.phase == Phase.INITIALIZING:
        st.message = f"waiting for revision {rev} to become available{_why(dep)}"
    elif st.phase == Phase.FAILED:  # the pods' reason may show only after the deadline (a slow load)
        st.message = f"revision {rev} {deadline}{_why(dep)}"
    if _is_available(dep, run.replicas):
        st.stableRevision, st.canaryRevision, st.canaryWeight = rev, None, 0
        st.phase, st.message = Phase.SUCCEEDED, f"revision {rev} is stable"
        run.finish_history(rev, HistoryPhase.SUCCEEDED, Reason.FIRST_REVISION)
        run.actions.append(PointService("stable", rev))
        run.actions.append(PointService("canary", rev))
        run.set_weight(0)
        return
    if run.elapsed(st.revisionStartedAt) >= run.spec.progressDeadlineSeconds and st.phase != Phase.FAILED:
        st.phase = Phase.FAILED
        st.message = f"revision {rev} {deadline}{_why(dep)}"
        run.finish_history(rev, HistoryPhase.FAILED, Reason.PROGRESS_DEADLINE_EXCEEDED)
        run.emit("Warning", Reason.PROGRESS_DEADLINE_EXCEEDED, st.message)


def _steady_or_rollout(run: _Run) -> None:
    st, desired = run.status, run.obs.desired
    stable = st.stableRevision
    assert stable is not None
    if st.phase == Phase.PAUSED:  # resumed: phase follows from what status still holds
        st.phase = Phase.PROGRESSING if st.canaryRevision else Phase.BAKING if st.bakeStartedAt else Phase.SUCCEEDED
        st.message = "resumed"

    if st.canaryRevision and desired.revision not in (st.canaryRevision, stable):
        _supersede(run)
    if desired.revision == stable:
        if st.canaryRevision:  # spec went back to the stable model mid-rollout
            _abandon_canary(run, HistoryPhase.SUPERSEDED, "spec changed back to the stable revision")
        _steady(run)
        return
    if desired.revision in st.failedRevisions:
        st.phase = Phase.ROLLED_BACK
        _steady(run)
        return
    if st.canaryRevision is None:
        _start_canary(run)
    _canary(run)


def _steady(run: _Run) -> None:
    """Stable serves everything; during bake the gates keep watching it."""
    st = run.status
    stable = st.stableRevision
    assert stable is not None
    run.ensure(stable, run.replicas)
    run.actions.append(PointService("stable", stable))
    run.set_weight(0)
    run.actions.append(PointService("canary", stable))
    if st.phase == Phase.BAKING and not _bake(run):
        return  # still baking, or reverted; a finished bake starts the watch in this decision
    if st.phase != Phase.ROLLED_BACK or run.obs.desired.revision == stable:
        st.phase, st.message = Phase.SUCCEEDED, f"revision {stable} is stable"
    _watch(run)


def _watch(run: _Run) -> None:
    """The continuous watch: the stable's absolute thresholds, on evidence windows of
    ``continuous.window``. A failure sets Degraded (and reverts if asked); a later Pass clears it."""
    st, spec = run.status, run.spec
    cont = spec.analysis.continuous
    if not watching(spec, st) or cont is None:
        st.watchSince, st.watchFailure = None, None
        return
    result = run.obs.analysis
    if result is not None and result.revision == st.stableRevision:
        drift_names = {m.name for m in spec.analysis.metrics if m.is_drift}
        gates = [m for m in result.metrics if m.name not in drift_names]
        _drift(run, [m for m in result.metrics if m.name in drift_names])
        # Drift says the data moved, not that this revision is worse than the one before it: it sets
        # Drifted (and may start retraining), never fails the watch or reverts.
        verdicts = {m.verdict for m in gates}
        verdict = "Fail" if "Fail" in verdicts else "Inconclusive" if "Inconclusive" in verdicts else "Pass"
        result = result.model_copy(update={"verdict": verdict})
        st.lastAnalysis, st.lastCheckAt = result, result.time
        if result.verdict == "Fail":
            st.failedChecks += 1
            if st.failedChecks >= spec.analysis.failureLimit and st.watchFailure is None:
                failing = next(m.name for m in gates if m.verdict == "Fail")
                st.watchFailure = gate_reason("WatchFailed", failing)
                run.emit("Warning", st.watchFailure, _summary(result))
        elif result.verdict == "Pass":
            st.failedChecks = 0
            if st.watchFailure is not None:
                run.emit("Normal", "WatchRecovered", f"revision {st.stableRevision} meets its thresholds again")
                st.watchFailure = None
    if st.watchSince is None or run.elapsed(st.watchSince) >= parse_duration(cont.window):
        st.watchSince, st.failedChecks = run.now, 0  # a fresh evidence window
    if st.watchFailure is not None:
        st.message = f"revision {st.stableRevision} is stable but its watch failed: {st.watchFailure}"
        if cont.revert:
            _revert_watch(run)


def _drift(run: _Run, results: list[MetricResult]) -> None:
    """The watch's drift gates: ``failureLimit`` drifted checks in a row set Drifted (an Event names
    the features); a check that judged the drifted features again and found no drift clears it,
    even if other features still wait for values (at low traffic a many-binned score may never
    gather enough in a window, and would otherwise keep a recovered feature's alarm up); a check
    still waiting for the drifted features' values (a fresh window), or blind, changes nothing."""
    st = run.status
    if not results or st.stableRevision is None:
        return
    if st.drift is None or st.drift.revision != st.stableRevision:
        st.drift = DriftStatus(revision=st.stableRevision)
    drift = st.drift
    drift.lastCheckAt = run.now
    verdicts = {m.verdict for m in results}
    if "Fail" in verdicts:
        drift.checks += 1
        drift.since = drift.since or run.now
        drift.features = [f for m in results for f in m.features if f.drifted]
        if drift.checks >= run.spec.analysis.failureLimit and not drift.drifted:
            drift.drifted = True
            run.emit("Warning", "Drifted", f"revision {st.stableRevision}: {drift_text(drift.features)}")
    elif verdicts == {"Pass"} or (drift.drifted and "Inconclusive" in verdicts and _judged_again(drift, results)):
        if drift.drifted:
            run.emit("Normal", "DriftCleared", f"revision {st.stableRevision}: no feature drifts any more")
        drift.drifted, drift.checks, drift.since, drift.features = False, 0, None, []


def _judged_again(drift: DriftStatus, results: list[MetricResult]) -> bool:
    """Every feature the Drifted condition names was judged by this (not failed) check."""
    judged = {f.name for m in results for f in m.features}
    return bool(drift.features) and all(f.name in judged for f in drift.features)


def drift_text(features: list[FeatureDrift]) -> str:
    """``amount PSI 0.41, hour PSI 0.27 drifted``: the Drifted condition's and Event's message."""
    shown = ", ".join(f"{f.name} PSI {f.psi:.2f}" for f in features[:8])
    more = f" and {len(features) - 8} more" if len(features) > 8 else ""
    return f"{shown}{more} drifted from the training reference"


def _retraining_waits(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """A drifted stable waits for its next retraining run (cooldown or backoff)."""
    drift, runs = status.drift, status.retraining
    return (
        spec.retraining is not None
        and drift is not None
        and drift.drifted
        and drift.revision == status.stableRevision
        and (runs is None or runs.outcome != RetrainingOutcome.RUNNING)
    )


def _retrain(run: _Run) -> None:
    """spec.retraining: while the stable is Drifted, one run at a time, after the cooldown (a success)
    or the backoff (a failure); a running run ends when the shell sees its Job finished or gone."""
    st, spec = run.status, run.spec.retraining
    if spec is None and st.retraining is None:
        return
    runs = st.retraining or RetrainingStatus()
    if runs.outcome == RetrainingOutcome.RUNNING:
        _retraining_ended(run, runs)  # also after spec.retraining was removed: the run still ends
    elif _retraining_waits(run.spec, st) and (runs.nextRunAfter is None or run.now >= runs.nextRunAfter):
        assert st.drift is not None and st.stableRevision is not None
        entry = _history(st, st.stableRevision)
        runs.runs += 1
        runs.job, runs.outcome = job_name(run.obs.name, runs.runs), RetrainingOutcome.RUNNING
        runs.startedAt, runs.finishedAt = run.now, None
        runs.message = f"started on drift of revision {st.stableRevision}"
        run.actions.append(
            StartRetraining(runs.job, st.stableRevision, entry.modelURI if entry else "", st.drift.model_copy())
        )
        run.emit("Normal", "RetrainingStarted", f"Job {runs.job}: {drift_text(st.drift.features)}")
    if runs.runs:
        st.retraining = runs


def _retraining_ended(run: _Run, runs: RetrainingStatus) -> None:
    job, spec = run.obs.retraining_job, run.spec.retraining
    if job is None or job.phase == RetrainingOutcome.RUNNING or runs.job is None:
        return
    runs.finishedAt = run.now
    if job.phase == RetrainingOutcome.SUCCEEDED:
        runs.outcome, runs.failures = RetrainingOutcome.SUCCEEDED, 0
        runs.message = job.message or f"Job {runs.job} succeeded"
        runs.nextRunAfter = run.now + timedelta(seconds=parse_duration(spec.cooldown)) if spec else None
        run.emit("Normal", "RetrainingSucceeded", runs.message)
        return
    runs.outcome, runs.failures = RetrainingOutcome.FAILED, runs.failures + 1
    runs.message = job.message or f"Job {runs.job} was deleted before it finished"
    runs.nextRunAfter = run.now + backoff(spec, runs.failures, runs.job) if spec else None
    after = f"; next run after {runs.nextRunAfter.isoformat()}" if runs.nextRunAfter else ""
    run.emit("Warning", "RetrainingFailed", runs.message + after)


def _revert_watch(run: _Run) -> None:
    """Switch back to the revision the failing stable replaced, once it is up again (it was scaled
    down after the bake): the failing revision keeps serving until then."""
    st = run.status
    bad = st.stableRevision
    assert bad is not None and st.watchFailure is not None
    previous = next(
        (
            h.revision
            for h in reversed(st.history)
            if h.phase == HistoryPhase.SUPERSEDED
            and h.reason == f"replaced by {bad}"
            and h.revision not in st.failedRevisions
        ),
        None,
    )
    if previous is None:
        st.message += "; no previous revision to revert to"
        return
    st.previousStableRevision = previous
    run.ensure(previous, run.replicas)
    if not _is_available(run.obs.deployments.get(previous), run.replicas):
        st.message += f"; reverting to {previous} once it is available"
        return
    run.actions.append(PointService("stable", previous))
    st.stableRevision, st.previousStableRevision = previous, None
    run.set_weight(0)
    run.retire(bad)
    reason, st.watchFailure, st.watchSince = st.watchFailure, None, None
    run.finish_history(previous, HistoryPhase.SUCCEEDED, Reason.REVERTED)
    _mark_failed(run, bad, reason, f"reverted to {previous} after the continuous watch failed")


def _start_canary(run: _Run) -> None:
    st, desired = run.status, run.obs.desired
    st.canaryRevision, st.currentStep, st.canaryWeight = desired.revision, None, 0
    st.failedChecks = st.inconclusiveChecks = 0
    st.lastCheckAt, st.stepStartedAt, st.lastAnalysis, st.evidenceSince = None, None, None, None
    st.watchSince, st.watchFailure = None, None
    st.hooks, st.awaitingConfirmation = [], False
    st.revisionStartedAt = run.now
    run.started_canary = True
    st.phase, st.message = Phase.PROGRESSING, f"starting canary {desired.revision}"
    run.start_history(desired, run.comparison_for(desired))
    run.emit(
        "Normal", "RevisionCreated", f"canary revision {desired.revision} serving {unsigned_uri(desired.model.uri)}"
    )


def _canary(run: _Run) -> None:
    st, spec = run.status, run.spec
    canary, stable = st.canaryRevision, st.stableRevision
    assert canary is not None and stable is not None
    steps = run.plan.steps
    run.ensure(stable, run.stable_replicas(st.canaryWeight))
    run.actions.append(PointService("stable", stable))

    abort = run.obs.annotations.get(ANNOTATION_ABORT)
    if abort and abort != st.lastHandledAbort:
        st.lastHandledAbort = abort
        _rollback(run, Reason.ABORTED, "rollout aborted by the abort annotation")
        return

    if st.currentStep is None:  # waiting for the canary to be Ready before it gets any share
        want = run.canary_replicas(run.plan.pod_share(0))
        run.ensure(canary, want)
        run.actions.append(PointService("canary", canary))
        # Testers' header/cookie routes reach it as soon as one pod is ready.
        run.set_weight(0, canary_routes=_has_ready_pod(run, canary))
        if _contract_refused(run, canary, stable) or _hook_failed(run, HookType.PRE_ROLLOUT, None):
            return
        dep = run.obs.deployments.get(canary)
        if _is_available(dep, want):
            if not _contract_holds(run, canary, stable) and not _hooks_hold(run, HookType.PRE_ROLLOUT):
                _enter_step(run, 0)
        elif run.elapsed(st.revisionStartedAt) >= spec.progressDeadlineSeconds:
            _rollback(
                run,
                Reason.PROGRESS_DEADLINE_EXCEEDED,
                f"canary {canary} not available after {spec.progressDeadlineSeconds}s{_why(dep)}",
            )
        elif dep is not None and dep.problem:
            st.message = f"waiting for canary {canary} to become available{_why(dep)}"
        return

    weight = steps[st.currentStep]
    run.ensure(canary, run.canary_replicas(run.plan.pod_share(st.currentStep)))
    run.actions.append(PointService("canary", canary))
    if not _canary_serving(run, canary):
        return
    if not _record_analysis(run) or _hook_failed(run, HookType.STEP, st.currentStep):
        return
    # After a failed check the weight may hold but never rise, until a check in this step passes.
    last = st.lastAnalysis
    failed_last = (
        last is not None
        and last.verdict == "Fail"
        and st.lastCheckAt is not None
        and st.lastCheckAt >= (st.stepStartedAt or st.lastCheckAt)
    )
    carried = run.carried_weight(weight)
    if run.plan.proportional and not failed_last and (st.canaryWeight < carried == weight or carried < st.canaryWeight):
        # The step's time counts at its weight: from when the pods carry it, and again after pods
        # were lost (which also restarts the scale-up deadline).
        st.stepStartedAt = run.now
    if carried < weight and _scale_up_overdue(run, weight):
        return
    run.set_weight(min(carried, st.canaryWeight) if failed_last else carried, canary_routes=True)
    promote = run.obs.annotations.get(ANNOTATION_PROMOTE)
    if promote and promote != st.lastHandledPromote:
        st.lastHandledPromote = promote
        run.emit("Normal", "PromotedManually", f"canary {canary} promoted by the promote annotation")
        _promote(run)
        return
    if run.plan.strategy == Strategy.AB_TEST:
        _experiment(run)
        return
    if _step_complete(run):
        if st.currentStep + 1 < len(steps):
            _enter_step(run, st.currentStep + 1)
        elif run.plan.auto_promote:
            if _confirmed(run):
                _promote(run)
        else:
            st.message = f"preview of {canary} passed; waiting for `kubectl modelrollout promote` to switch"
    else:
        _wait_for_evidence(run)


def _experiment(run: _Run) -> None:
    """The A/B test's step: keep the split until the primary metric's sequential test ends it
    (metrics/experiment.py), no earlier than minDuration and no later than maxDuration."""
    st, ab = run.status, run.spec.strategy.abTest
    assert ab is not None and st.canaryRevision is not None and st.stableRevision is not None
    last = st.lastAnalysis
    found = last.experiment if last is not None and last.revision == st.canaryRevision else None
    if found is not None:
        st.experiment = found.model_copy(update={"since": st.stepStartedAt})
    elapsed = run.elapsed(st.stepStartedAt)
    shown = found.message if found is not None else "no check yet"
    split = f"A/B test {st.canaryRevision} (B, {st.canaryWeight}%) vs {st.stableRevision} (A) on {ab.metric.name}"
    if elapsed < parse_duration(ab.minDuration):
        st.message = f"{split}: {_minutes(elapsed)} of minDuration {ab.minDuration}; {shown}"
        return
    outcome = found.outcome if found is not None else ExperimentOutcome.RUNNING
    if outcome == ExperimentOutcome.CANDIDATE_WON and not _confirmed(run):
        return
    if outcome == ExperimentOutcome.RUNNING:
        if elapsed < parse_duration(ab.maxDuration):
            st.message = f"{split}: {shown}"
            return
        outcome = ExperimentOutcome.TIMEOUT
    if st.experiment is None:  # a timeout without a single check
        st.experiment = ExperimentResult(
            metric=ab.metric.name, outcome=outcome, confidence=1.0 - ab.significance, since=st.stepStartedAt,
            candidate=ArmCounts(revision=st.canaryRevision, successes=0, trials=0),
            stable=ArmCounts(revision=st.stableRevision, successes=0, trials=0),
        )  # fmt: skip
    st.experiment = st.experiment.model_copy(update={"outcome": outcome, "decidedAt": run.now})
    summary = f"{ab.metric.name}: {shown}" if outcome != ExperimentOutcome.TIMEOUT else (
        f"undecided after maxDuration {ab.maxDuration}: {shown}")  # fmt: skip
    run.emit("Normal", "ExperimentEnded", f"{outcome} ({st.canaryRevision} vs {st.stableRevision}) {summary}")
    if outcome == ExperimentOutcome.CANDIDATE_WON:
        _promote(run)
        return
    reason = {
        ExperimentOutcome.STABLE_WON: Reason.EXPERIMENT_LOST,
        ExperimentOutcome.TIE: Reason.EXPERIMENT_TIE,
        ExperimentOutcome.TIMEOUT: Reason.EXPERIMENT_TIMEOUT,
    }[outcome]
    _rollback(run, reason, f"A/B test kept {st.stableRevision}: {summary}")


def _hook_failed(run: _Run, kind: HookType, step: int | None) -> bool:
    """A PreRollout or Step hook that failed failureLimit calls in a row rolls the candidate back (True)."""
    st = run.status
    assert st.canaryRevision is not None
    failed = hooks.exhausted(run.spec, st, kind, st.canaryRevision, step)
    if failed is None:
        return False
    run.emit("Warning", "HookFailed", f"{kind} hook {failed.name} failed {failed.failures} times: {failed.message}")
    _rollback(run, gate_reason("HookFailed", failed.name),
              f"{kind} hook {failed.name} failed {failed.failures} calls in a row: {failed.message}")  # fmt: skip
    return True


def _hooks_hold(run: _Run, kind: HookType, step: int | None = None) -> bool:
    """Hooks of ``kind`` that have not passed yet hold the rollout where it is (True), saying which."""
    st = run.status
    assert st.canaryRevision is not None
    pending = hooks.waiting(run.spec, st, kind, st.canaryRevision, step)
    if pending:
        st.message = f"canary {st.canaryRevision} waits for {kind} hooks: {hooks.describe(run.spec, st, pending)}"
    return bool(pending)


def _confirmed(run: _Run) -> bool:
    """The candidate is through; its ConfirmPromotion hooks must pass before the promotion (an
    approval: waiting for one never rolls back)."""
    st = run.status
    if not any(HookType(h.type) == HookType.CONFIRM_PROMOTION for h in run.spec.hooks):
        return True
    st.awaitingConfirmation = True
    if _hooks_hold(run, HookType.CONFIRM_PROMOTION, st.currentStep):
        return False
    st.awaitingConfirmation = False
    run.emit("Normal", "PromotionConfirmed", f"the ConfirmPromotion hooks passed for {st.canaryRevision}")
    return True


def _contract_refused(run: _Run, canary: str, stable: str) -> bool:
    """A canary whose signature would break stable's callers never takes traffic: roll it back now
    (True), unless the strategy's ``allowSignatureChange`` says the change is intended."""
    result = run.obs.contract
    if not isinstance(result, Incompatible) or run.plan.allow_signature_change:
        return False
    _rollback(run, Reason.CONTRACT_MISMATCH, f"canary {canary} is incompatible with stable {stable}: {result.summary}")
    return True


def _contract_holds(run: _Run, canary: str, stable: str) -> bool:
    """The canary is ready: hold step 0 while its signature cannot be compared yet (True), up to
    progressDeadlineSeconds; otherwise say once what the check found that is worth knowing."""
    st, spec, result = run.status, run.spec, run.obs.contract
    if isinstance(result, Unknown) and not run.plan.allow_signature_change:
        st.message = f"canary {canary} is ready; holding until its signature can be compared: {result.reason}"
        if run.elapsed(st.revisionStartedAt) >= spec.progressDeadlineSeconds:
            _rollback(
                run,
                Reason.CONTRACT_UNVERIFIED,
                f"signature of canary {canary} not compared with stable {stable} "
                f"within progressDeadlineSeconds={spec.progressDeadlineSeconds}: {result.reason}",
            )
        return True
    if isinstance(result, Incompatible):  # allowed, or _contract_refused would have rolled it back
        run.emit("Normal", "SignatureChangeAllowed", f"canary {canary} differs from stable {stable} "
                 f"(strategy.{run.plan.strategy}.allowSignatureChange): {result.summary}")  # fmt: skip
    elif isinstance(result, Compatible) and result.note:
        run.emit("Normal", "SignatureNotCompared", f"canary {canary}: {result.note}")
    return False


def _has_ready_pod(run: _Run, revision: str) -> bool:
    dep = run.obs.deployments.get(revision)
    return dep is not None and dep.available > 0


def _canary_serving(run: _Run, canary: str) -> bool:
    """A canary that lost every ready pod gets no traffic (its header/cookie routes included); it has
    progressDeadlineSeconds to recover."""
    st = run.status
    if _has_ready_pod(run, canary):
        if st.canaryUnavailableSince is not None:
            st.canaryUnavailableSince, st.stepStartedAt = None, run.now  # the step's time counts with traffic
            run.emit("Normal", "CanaryAvailable", f"canary {canary} is ready again; traffic restored")
        return True
    run.set_weight(0)
    if st.canaryUnavailableSince is None:
        st.canaryUnavailableSince = run.now
        run.emit("Warning", "CanaryUnavailable", f"canary {canary} has no ready pods; its traffic is held at 0%")
    elif run.elapsed(st.canaryUnavailableSince) >= run.spec.progressDeadlineSeconds:
        _rollback(
            run,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"canary {canary} had no ready pods for {run.spec.progressDeadlineSeconds}s"
            + _why(run.obs.deployments.get(canary)),
        )
    return False


def _scale_up_overdue(run: _Run, weight: int) -> bool:
    """A Proportional canary that has not had the pods for its step's weight for progressDeadlineSeconds
    (a quota, no room in the cluster) is rolled back, as one that never became ready is; True then."""
    st = run.status
    if run.elapsed(st.stepStartedAt) < run.spec.progressDeadlineSeconds:
        return False
    want = run.canary_replicas(weight)
    _rollback(
        run,
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        f"canary {st.canaryRevision} did not get {want} available pods for its {weight}% step "
        f"within progressDeadlineSeconds={run.spec.progressDeadlineSeconds}",
    )
    return True


def _enter_step(run: _Run, index: int) -> None:
    st = run.status
    weight = run.plan.steps[index]
    st.currentStep, st.stepStartedAt = index, run.now
    if index == 0:  # the canary's first traffic: every ratio gate counts from here through the bake
        st.evidenceSince = run.now
    st.failedChecks = st.inconclusiveChecks = 0
    st.phase = Phase.PROGRESSING
    shadow = run.plan.is_shadow_step(index)
    if shadow:
        st.message = (f"shadow of {st.canaryRevision}: {run.plan.shadow_percent}% of live inference requests "
                      f"mirrored to it, its answers reach no client")  # fmt: skip
    elif run.plan.strategy == Strategy.CANARY:
        st.message = f"canary {st.canaryRevision} at {weight}%"
    elif run.plan.strategy == Strategy.AB_TEST:
        st.message = f"A/B test {st.canaryRevision} (B, {weight}%) vs {st.stableRevision} (A)"
        st.experiment = None
    else:
        st.message = f"preview of {st.canaryRevision}; live traffic stays on {st.stableRevision}"
    assert st.canaryRevision is not None
    run.ensure(st.canaryRevision, run.canary_replicas(run.plan.pod_share(index)))
    # Entered only with the canary available at the previous step's size; a Proportional canary
    # takes the new weight once it has the pods for it (a later tick, on its Deployment's event).
    run.set_weight(run.carried_weight(weight), canary_routes=True)
    if st.canaryWeight < weight:
        st.message += f" once it has {run.canary_replicas(weight)} available pods (now at {st.canaryWeight}%)"
    if shadow:
        run.emit("Normal", "ShadowStarted", f"{run.plan.shadow_percent}% of live inference requests mirrored to "
                 f"{st.canaryRevision}, compared with {st.stableRevision} on the same requests")  # fmt: skip
    elif run.plan.strategy == Strategy.CANARY:
        run.emit("Normal", "StepStarted", f"step {index + 1}/{len(run.plan.steps)}: canary weight {weight}%")
    elif run.plan.strategy == Strategy.AB_TEST:
        run.emit("Normal", "ExperimentStarted", f"{weight}% of requests to {st.canaryRevision} (B), the rest to "
                 f"{st.stableRevision} (A)")  # fmt: skip
    else:
        run.emit("Normal", "PreviewStarted", f"{st.canaryRevision} at full size behind the preview Service")


def _record_analysis(run: _Run) -> bool:
    """Fold this tick's gate check into the counters; False when the rollout was rolled back.

    Waiting for samples or evidence holds the step and counts for nothing: the evidence keeps
    growing and the sequential tests stay valid however long it takes (``maxStepDuration`` bounds
    it). Only a blind check (Prometheus unreachable, a plain gate without data) counts toward
    ``inconclusiveLimit``, so a rollout that cannot see can never promote and cannot wait forever.
    """
    st, result, analysis = run.status, run.obs.analysis, run.spec.analysis
    target = st.stableRevision if st.phase == Phase.BAKING else st.canaryRevision
    if result is None or result.revision != target:  # a check of a revision no longer under analysis
        return True
    st.lastAnalysis, st.lastCheckAt = result, result.time
    if result.verdict == "Pass":
        st.inconclusiveChecks = 0
        return True
    if result.verdict == "Inconclusive":
        blind = [m for m in result.metrics if _is_blind(m.reason)]
        if not blind:
            st.inconclusiveChecks = 0
            return True
        st.inconclusiveChecks += 1
        run.emit("Warning", "AnalysisBlind", _summary(result))
        if st.inconclusiveChecks < analysis.inconclusiveLimit:
            return True
        st.inconclusiveChecks = 0
        reason: str
        reason, message = (
            Reason.INCONCLUSIVE_LIMIT_REACHED,
            f"{analysis.inconclusiveLimit} blind checks in a row ({', '.join(m.name for m in blind)})",
        )
    else:
        reason, message = Reason.ANALYSIS_FAILED, _summary(result)
        run.emit("Warning", Reason.ANALYSIS_FAILED, message)
    st.failedChecks += 1
    if st.failedChecks < analysis.failureLimit:
        return True
    failing = [m.name for m in result.metrics if m.verdict == "Fail"]
    if failing and reason == Reason.ANALYSIS_FAILED:
        reason = gate_reason("GateFailed", failing[0])
    if st.phase == Phase.BAKING:
        _revert_bake(run, reason, message)
    else:
        _rollback(run, reason, message)
    return False


def _is_blind(reason: GateReason | None) -> bool:
    """A gate that could not look. Results written before reasons existed count as blind."""
    return reason is None or GateReason(reason).blind


def _summary(result: AnalysisResult) -> str:
    parts = []
    for m in result.metrics:
        value = "no data" if m.value is None else f"{m.value:.4g}"
        stable = "" if m.stableValue is None else f", stable {m.stableValue:.4g}"
        parts.append(f"{m.name}={value}{stable} ({m.threshold}) {m.reason or m.verdict}")
    return f"revision {result.revision}: " + "; ".join(parts) if parts else f"revision {result.revision}: no gates"


def proof_step(steps: list[int]) -> int:
    """The step whose completion needs every gate *shown* within its thresholds: the last one
    below 100 % (the stable still serves there, so comparisons can still gain evidence), or the
    only step. Earlier steps need no failure and enough samples; later ones no failure."""
    partial = [i for i, weight in enumerate(steps) if weight < 100]
    return partial[-1] if partial else len(steps) - 1


def _is_proof(plan: RolloutPlan, step: int) -> bool:
    """Whether ``step`` needs every gate shown within its thresholds: the proof step, and the shadow
    step (the candidate must have shown it is fit before any client is answered by it)."""
    return step == proof_step(list(plan.steps)) or plan.is_shadow_step(step)


def _ready_to_advance(result: AnalysisResult, proof: bool) -> bool:
    if proof:
        return result.verdict == "Pass"
    return result.verdict != "Fail" and all(
        m.reason in (GateReason.PASSED, GateReason.UNDECIDED, GateReason.NOT_APPLICABLE)
        or (m.reason is None and m.verdict == "Pass")
        for m in result.metrics
    )


def _step_complete(run: _Run) -> bool:
    """A step is done after stepDuration, once the last check in it allows it (no gates: time alone)."""
    st, spec = run.status, run.spec
    assert st.currentStep is not None
    if run.elapsed(st.stepStartedAt) < parse_duration(run.plan.step_duration_at(st.currentStep)):
        return False
    if st.canaryWeight < run.plan.steps[st.currentStep]:  # a Proportional canary still scaling up
        return False
    if hooks.waiting(spec, st, HookType.STEP, st.canaryRevision or "", st.currentStep):
        return False
    if not spec.analysis.metrics:
        return True
    checked_in_step = st.lastCheckAt is not None and st.stepStartedAt is not None and st.lastCheckAt >= st.stepStartedAt
    if not checked_in_step or st.lastAnalysis is None:
        return False
    assert st.currentStep is not None
    return _ready_to_advance(st.lastAnalysis, _is_proof(run.plan, st.currentStep))


def _wait_for_evidence(run: _Run) -> None:
    """The step's time is up but its gates have not decided: say why, and end it at maxStepDuration."""
    st, plan = run.status, run.plan
    elapsed = run.elapsed(st.stepStartedAt)
    last = st.lastAnalysis
    assert st.currentStep is not None
    longest = plan.max_step_duration_at(st.currentStep)
    short_of_time = elapsed < parse_duration(plan.step_duration_at(st.currentStep))
    if short_of_time or last is None or last.revision != st.canaryRevision:
        return
    proof = _is_proof(plan, st.currentStep)
    pending = [
        m
        for m in last.metrics
        if m.reason not in (GateReason.PASSED, GateReason.NOT_APPLICABLE)
        and (proof or m.reason != GateReason.UNDECIDED)
        and m.verdict != "Fail"
    ]
    if not pending:
        return
    short = any(m.reason == GateReason.INSUFFICIENT_SAMPLES for m in pending)
    run.waiting = Reason.INSUFFICIENT_TRAFFIC if short else Reason.WAITING_FOR_EVIDENCE
    detail = "; ".join(f"{m.name} {m.reason or m.verdict}: {_wait_note(m.message)}" for m in pending)
    weight = plan.steps[st.currentStep]
    if plan.is_shadow_step(st.currentStep):
        where, limit = "shadow", "shadow.maxDuration"
    elif plan.strategy == Strategy.CANARY:
        where, limit = f"step {st.currentStep + 1}/{len(plan.steps)} at {weight}%", "maxStepDuration"
    else:
        where, limit = "preview", "maxPreviewDuration"
    st.message = f"{where} waiting for evidence ({_minutes(elapsed)} of {limit} {longest}): {detail}"
    if elapsed < parse_duration(longest):
        return
    reason = Reason.INSUFFICIENT_TRAFFIC if short else Reason.UNDECIDED
    what = "too few samples" if short else "thresholds neither met nor breached"
    _rollback(run, reason, f"{where} not decided within {longest} ({what}): {detail}")


def _wait_note(message: str) -> str:
    """The part of a gate's message that says what it waits for (its last test or sample note)."""
    parts = [p for p in message.split("; ") if "undecided" in p or "waiting" in p or "no samples" in p]
    return (parts[-1] if parts else message)[:240]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f}m" if seconds >= 120 else f"{seconds:.0f}s"


def _promote(run: _Run) -> None:
    st = run.status
    st.awaitingConfirmation = False
    canary, old = st.canaryRevision, st.stableRevision
    assert canary is not None and old is not None
    # The stable Service moves first, then the route drops the canary share: no request lands nowhere.
    run.ensure(canary, run.replicas)
    run.actions.append(PointService("stable", canary))
    st.stableRevision, st.previousStableRevision, st.canaryRevision, st.currentStep = canary, old, None, None
    st.canaryUnavailableSince = None
    run.set_weight(0)  # the canary Service keeps selecting `canary`, the stable revision from now on
    st.failedChecks = st.inconclusiveChecks = 0
    st.lastCheckAt = None
    run.finish_history(old, HistoryPhase.SUPERSEDED, f"replaced by {canary}")
    if run.plan.holds_after_promotion(bool(run.spec.analysis.metrics)):
        st.phase, st.bakeStartedAt = Phase.BAKING, run.now
        st.message = f"revision {canary} promoted; baking for {run.plan.hold} with {old} warm"
        run.ensure(old, run.warm_replicas)
    else:
        _finish_promotion(run, retire_old=True)
    run.emit("Normal", Reason.PROMOTED, f"revision {canary} is now stable (was {old})")


def _finish_promotion(run: _Run, retire_old: bool = False) -> None:
    """The previous stable goes: after a bake at once (it has had no traffic since the promotion),
    right after the promotion itself (``retire_old``) once proxies have the new weights."""
    st = run.status
    stable, old = st.stableRevision, st.previousStableRevision
    assert stable is not None
    if old and retire_old:
        run.retire(old)
    elif old:
        run.ensure(old, 0)
    st.previousStableRevision, st.bakeStartedAt = None, None
    st.phase, st.message = Phase.SUCCEEDED, f"revision {stable} is stable"
    run.finish_history(stable, HistoryPhase.SUCCEEDED, Reason.PROMOTED)


def _bake(run: _Run) -> bool:
    """Watch the new stable with the previous one warm; True when the bake ended in a promotion."""
    st = run.status
    if st.previousStableRevision:
        run.ensure(st.previousStableRevision, run.warm_replicas)
    if not _record_analysis(run):
        return False
    if run.elapsed(st.bakeStartedAt) < run.plan.hold_seconds:
        return False
    _finish_promotion(run)
    return True


def _revert_bake(run: _Run, reason: str, message: str) -> None:
    """The new stable degraded while baking: the previous one is still warm, so switch back at once."""
    st = run.status
    bad, good = st.stableRevision, st.previousStableRevision
    assert bad is not None
    if good is None:
        _finish_promotion(run)
        return
    run.ensure(good, run.replicas)
    run.actions.append(PointService("stable", good))
    run.actions.append(PointService("canary", good))
    st.stableRevision, st.previousStableRevision, st.bakeStartedAt = good, None, None
    run.set_weight(0)
    run.retire(bad)
    _mark_failed(run, bad, reason, message)


def _rollback(run: _Run, reason: str, message: str) -> None:
    """Weights to 100 % stable first; the canary is scaled to zero once proxies have them."""
    st = run.status
    canary = st.canaryRevision
    assert canary is not None
    run.set_weight(0)
    if st.stableRevision is not None:
        run.actions.append(PointService("canary", st.stableRevision))
    run.retire(canary, served=st.currentStep is not None)
    if st.stableRevision is not None:
        run.ensure(st.stableRevision, run.replicas)
    st.canaryRevision, st.currentStep, st.canaryUnavailableSince = None, None, None
    st.awaitingConfirmation = False
    _mark_failed(run, canary, reason, message)


def _mark_failed(run: _Run, revision: str, reason: str, message: str) -> None:
    st = run.status
    st.phase, st.message = Phase.ROLLED_BACK, f"{reason}: {message}"
    st.rollbackReason = reason
    if revision not in st.failedRevisions:
        st.failedRevisions.append(revision)
    run.finish_history(revision, HistoryPhase.ROLLED_BACK, reason)
    run.emit(
        "Warning",
        Reason.ROLLED_BACK,
        f"revision {revision} rolled back to {st.stableRevision}: {reason}: {message}",
    )


def _supersede(run: _Run) -> None:
    _abandon_canary(run, HistoryPhase.SUPERSEDED, f"spec changed to revision {run.obs.desired.revision}")


def _abandon_canary(run: _Run, phase: HistoryPhase, reason: str) -> None:
    st = run.status
    old = st.canaryRevision
    assert old is not None
    run.set_weight(0)
    if st.stableRevision is not None:
        run.actions.append(PointService("canary", st.stableRevision))
    run.retire(old, served=st.currentStep is not None)
    st.canaryRevision, st.currentStep, st.canaryUnavailableSince = None, None, None
    st.awaitingConfirmation = False
    run.finish_history(old, phase, reason)
    run.emit("Normal", phase, f"canary {old}: {reason}")


def _retire_due(run: _Run) -> None:
    """Scale down each retiring revision whose scaleDownDelay has passed; one back in service (a
    retried or re-applied revision, a revert target) is no longer retiring."""
    st = run.status
    live = {st.stableRevision, st.canaryRevision, st.previousStableRevision}
    keep = []
    for entry in st.retiring:
        if entry.revision in live:
            continue
        if run.now >= entry.scaleDownAt:
            run.ensure(entry.revision, 0)
            continue
        keep.append(entry)
    st.retiring = keep


def _prune(run: _Run) -> None:
    """Keep revisionHistoryLimit finished revisions; delete the Deployments of older ones."""
    st = run.status
    live = {st.stableRevision, st.canaryRevision, st.previousStableRevision, run.obs.desired.revision}
    live |= {r.revision for r in st.retiring}
    finished = [h for h in st.history if h.revision not in live]
    excess = len(finished) - run.spec.revisionHistoryLimit
    for entry in finished[: max(0, excess)]:
        st.history.remove(entry)
        run.actions.append(DeleteRevision(entry.revision))
    for entry in finished[max(0, excess) :]:
        if entry.revision in run.obs.deployments and run.obs.deployments[entry.revision].replicas:
            run.ensure(entry.revision, 0)


def _prune_routes(run: _Run) -> None:
    """Once the current provider's routes are written, the other providers' go, once: a status older
    than this field (None) prunes once too. Only a spec change can switch providers, and asking on
    every spec change cost five reads of route kinds per change."""
    st, provider = run.status, run.spec.traffic.provider
    writes_routes = any(isinstance(a, SetRouting) and a.routing.stable_revision for a in run.actions)
    if st.routesProvider != provider and st.stableRevision is not None and writes_routes:
        run.actions.append(PruneRoutes(provider))
        st.routesProvider = provider


def _conditions(run: _Run) -> None:
    st, now, gen = run.status, run.now, run.obs.generation
    stable_ok = st.stableRevision is not None and _is_available(
        run.obs.deployments.get(st.stableRevision), min(1, run.replicas)
    )
    set_condition(
        st,
        "Ready",
        stable_ok,
        Reason.STABLE_AVAILABLE if stable_ok else Reason.STABLE_UNAVAILABLE,
        f"stable revision {st.stableRevision} is serving" if stable_ok else "no available stable revision",
        now,
        gen,
    )
    active = st.phase in ACTIVE_PHASES
    progress_reason = run.waiting if active and run.waiting else st.phase or "Unknown"
    set_condition(st, "Progressing", active, progress_reason, st.message, now, gen)
    degraded = st.phase in (Phase.ROLLED_BACK, Phase.FAILED) or st.watchFailure is not None
    set_condition(st, "Degraded", degraded, _degraded_reason(st), st.message if degraded else "", now, gen)
    gated = any(m.is_drift for m in run.spec.analysis.metrics)
    if not gated:
        st.drift = None  # a removed drift gate takes its verdict (and any retraining it would start) along
    if gated or any(c.type == "Drifted" for c in st.conditions):
        drift = st.drift if st.drift is not None and st.drift.revision == st.stableRevision else None
        drifted = drift is not None and drift.drifted
        message = f"revision {st.stableRevision}: {drift_text(drift.features)}" if drift and drifted else ""
        set_condition(st, "Drifted", drifted, Reason.DRIFT_DETECTED if drifted else Reason.NO_DRIFT, message, now, gen)


def _degraded_reason(st: ModelDeploymentStatus) -> str:
    """Why the object is degraded (the Degraded condition's reason and a bad transition's)."""
    if st.phase == Phase.FAILED:
        return Reason.PROGRESS_DEADLINE_EXCEEDED
    if st.watchFailure is not None:
        return st.watchFailure
    if st.phase == Phase.ROLLED_BACK:
        return st.rollbackReason or Reason.ROLLED_BACK
    return Reason.AS_EXPECTED
