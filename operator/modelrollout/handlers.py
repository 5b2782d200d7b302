"""kopf handlers: the imperative shell around the pure engine.

Watch events (a ModelDeployment changed, a revision's Deployment changed readiness) only put the
object's key on the :class:`~modelrollout.scheduler.Scheduler`. Its workers run the same idempotent
``reconcile``: read the object, observe its revisions, ask the engine, apply its actions in order,
write status conditionally on the resourceVersion that was read, and schedule the next look at the
moment the engine says its next decision falls due (``engine.next_due``). The object, its Services
and the list of its Deployments are read from watch caches (``modelrollout.watchcache``: the newest
state seen, the operator's own writes included; a conflict drops the entry); nothing else is kept
in memory between reconciles but that schedule, and state lives only in status, so a restarted or
newly elected operator (whose caches start empty and read from the API server) continues exactly
where the last one stopped.

Everything the handlers need (configuration, API client, scheduler, leader election, the notifier)
is built once at start by ``modelrollout.__main__`` and reaches them as one :class:`Runtime` in kopf's
memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelrollout import contract, engine, hook_calls, hooks, retraining, routers, workloads
from modelrollout.analysis import run_analysis
from modelrollout.api import types as t
from modelrollout.config import OperatorConfig
from modelrollout.kube import Kube, selected_revision
from modelrollout.leader import LeaderElector
from modelrollout.metrics.connection import CredentialsError, PrometheusConnection, from_spec
from modelrollout.metrics.provider import open_provider
from modelrollout.notify import Notifier
from modelrollout.revision import revision_hash
from modelrollout.scheduler import Key, Scheduler
from modelrollout.strategy import plan_for
from modelrollout.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    """The operator's long-lived parts, built once at start and shared by every handler."""

    config: OperatorConfig
    api_client: client.ApiClient
    kube: Kube
    telemetry: Telemetry
    elector: LeaderElector | None = None
    notifier: Notifier | None = None
    scheduler: Scheduler | None = None
    tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)


def runtime(memo: Any) -> Runtime:
    rt = memo.runtime
    assert isinstance(rt, Runtime), "start the operator with python -m modelrollout run"
    return rt


@kopf.on.startup()
async def start_scheduler(memo: kopf.Memo, **_: Any) -> None:
    """Start the workers (and the Lease loop) before kopf starts watching and sends events."""
    rt = runtime(memo)
    if rt.notifier is not None:
        rt.notifier.start()
    active = rt.elector.is_leader if rt.elector is not None else (lambda: True)
    wait = rt.telemetry.queue_wait
    rt.scheduler = scheduler = Scheduler(
        partial(reconcile_key, rt),
        rt.config.workers,
        active=active,
        observe_wait=lambda seconds, urgent: wait.labels("true" if urgent else "false").observe(seconds),
    )
    rt.tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
    if rt.elector is not None:
        leader = rt.telemetry.leader

        def started_leading() -> None:
            leader.set(1)
            # The old leader's last writes may still be on their way through this replica's watch:
            # the first decision of each object reads it fresh.
            rt.kube.modeldeployments.clear()
            rt.kube.deployments.clear()
            scheduler.enqueue_all()

        rt.elector.on_started_leading = started_leading
        rt.elector.on_stopped_leading = lambda: leader.set(0)
        rt.tasks.append(asyncio.create_task(rt.elector.run(), name="leader election"))


@kopf.on.cleanup()
async def stop_scheduler(memo: kopf.Memo, **_: Any) -> None:
    """Stop reconciling, then hand the Lease over so a standby takes over at once."""
    rt = runtime(memo)
    for task in rt.tasks:
        task.cancel()
    await asyncio.gather(*rt.tasks, return_exceptions=True)
    if rt.notifier is not None:
        await asyncio.to_thread(rt.notifier.stop)
    if rt.elector is not None:
        await asyncio.to_thread(rt.elector.release)


def _scheduler(memo: Any) -> Scheduler:
    scheduler = runtime(memo).scheduler
    assert scheduler is not None, "the startup handler creates the scheduler before any event"
    return scheduler


# What the last watch event of each object said that a decision depends on. An event that changes
# none of it (the status the operator itself just wrote; a Deployment's status churn while its pods
# start) queues nothing: the decision it would trigger is the one already made, and at a thousand
# objects these events are most of the watch traffic. Like controller-runtime's event predicates.
_last_seen: dict[tuple[str, str, str], object] = {}


def _changed(kind: str, namespace: str, name: str, seen: object) -> bool:
    key = (kind, namespace, name)
    if _last_seen.get(key) == seen:
        return False
    _last_seen[key] = seen
    return True


def _modeldeployment_inputs(body: Mapping[str, Any]) -> object:
    """The spec (by generation), the annotations the CLI sets, and deletion."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(annotations.get(a) for a in (t.ANNOTATION_PROMOTE, t.ANNOTATION_ABORT, t.ANNOTATION_RETRY)),
    )


def _deployment_inputs(body: Mapping[str, Any]) -> object:
    """What engine.DeploymentState reads from a revision's Deployment (see kube.list_revisions), and
    its generation: a hand edit of its spec is put back at once."""
    meta, spec, st = body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
    return (
        meta.get("generation"),
        spec.get("replicas"),
        st.get("updatedReplicas"),
        st.get("readyReplicas"),
        st.get("availableReplicas"),
        (st.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
    )


@kopf.on.event(t.GROUP, t.VERSION, t.PLURAL)
async def on_modeldeployment(
    event: kopf.RawEvent, namespace: str | None, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if namespace is None:  # never for a namespaced kind; kopf's handler type also covers cluster-scoped ones
        return
    rt = runtime(memo)
    if event.get("type") == "DELETED":
        _scheduler(memo).forget((namespace, name))
        _last_seen.pop(("mdep", namespace, name), None)
        rt.kube.forget(namespace, name, body.get("metadata", {}).get("uid"))
        rt.telemetry.forget(namespace, name)
        return
    rt.kube.modeldeployments.observed((namespace, name), dict(event["object"]))
    first = ("mdep", namespace, name) not in _last_seen
    if _changed("mdep", namespace, name, _modeldeployment_inputs(body)):
        # A user's change goes first; the first sight of every object (a start, a takeover) does not.
        _scheduler(memo).enqueue((namespace, name), urgent=not first)


@kopf.on.event("", "v1", "services", labels={"app.kubernetes.io/managed-by": "modelrollout"})
async def on_service(
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """The stable and canary Services as they are, for reconciles to read without a GET
    (``modelrollout.watchcache``); a change of what a Service routes (its selector or ports, a hand
    edit or a deletion) also reconciles its owner now, so the edit is put back at once instead of at
    the owner's next due time, which may be ``resyncSeconds`` away."""
    if namespace is None:
        return
    services = runtime(memo).kube.services
    if event.get("type") == "DELETED":
        services.gone((namespace, name))
    else:
        services.observed((namespace, name), dict(event["object"]))
    owner = labels.get(workloads.LABEL_DEPLOYMENT)
    if owner and _wakes_owner("svc", namespace, name, event, _service_inputs(body)):
        _scheduler(memo).enqueue((namespace, owner))


def _service_inputs(body: Mapping[str, Any]) -> object:
    """What decides where a Service sends traffic; label or annotation edits do not count."""
    spec = body.get("spec") or {}
    return (repr(spec.get("selector")), repr(spec.get("ports")))


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": "modelrollout"})
async def on_child(
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Every state of a revision's Deployment goes to the Deployment cache (reconciles list them from
    there); a change in its pods' readiness also decides now instead of at the object's next due time."""
    owner = labels.get(workloads.LABEL_DEPLOYMENT)
    if not owner or namespace is None:
        return
    cache = runtime(memo).kube.deployments
    if event.get("type") == "DELETED":
        cache.gone((namespace, owner), name)
    else:
        cache.observed((namespace, owner), dict(event["object"]))
    if _wakes_owner("deploy", namespace, name, event, _deployment_inputs(body)):
        _scheduler(memo).enqueue((namespace, owner))


def _wakes_owner(kind: str, namespace: str, name: str, event: kopf.RawEvent, inputs: object) -> bool:
    """Whether a watched child's event reconciles its owner now: its deletion, or a change of what
    the owner reads from it. A listing or a creation only records what it saw (the owner's own
    reconcile made it, or a start or takeover reconciles every object anyway)."""
    if event.get("type") == "DELETED":
        _last_seen.pop((kind, namespace, name), None)
        return True
    changed = _changed(kind, namespace, name, inputs)
    return event.get("type") == "MODIFIED" and changed


def reconcile_key(rt: Runtime, key: Key) -> float | None:
    """Reconcile one object; the seconds until it should be looked at again, None if it is gone."""
    namespace, name = key
    started, result = time.monotonic(), "error"
    try:
        obj = rt.kube.get_modeldeployment(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            result = "gone"
            return None
        now = datetime.now(UTC)
        due = _reconcile(rt, obj, now)
        result = "ok"
    finally:
        metrics = rt.telemetry
        metrics.reconciles.labels(result).inc()
        metrics.reconcile_duration.observe(time.monotonic() - started)
    seconds = rt.config.resync_seconds if due is None else (due - now).total_seconds()
    return min(max(seconds, 0.0), rt.config.resync_seconds)


def _reconcile(rt: Runtime, obj: dict[str, Any], now: datetime) -> datetime | None:
    """One decision for ``obj``; when to look again (None: only an event can change anything)."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = t.ModelDeploymentStatus.model_validate(obj.get("status") or {})
    try:
        spec = t.ModelDeploymentSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        _invalid_spec(rt, obj, status, exc, now)
        return None  # a fixed spec arrives as an event
    poll = now + timedelta(seconds=rt.config.poll_seconds)

    has_prometheus = spec.analysis.prometheus is not None or bool(rt.config.prometheus.address)
    image = spec.serving.image or rt.config.model_server_image
    serving = spec.serving.model_copy(update={"image": image})
    desired = engine.DesiredRevision(revision_hash(spec.model, spec.serving, image), spec.model, serving)
    live = rt.kube.list_revisions(namespace, name)
    if _waits_on_pods(status, desired.revision):
        live = _with_pod_problem(rt, namespace, name, desired.revision, live)
    obs = engine.Observations(
        generation=meta.get("generation", 0),
        desired=desired,
        deployments={rev: state for rev, (state, _) in live.items()},
        annotations=meta.get("annotations") or {},
        name=name,
        retraining_job=rt.kube.read_job(namespace, job) if (job := _retraining(status)) else None,
    )
    # The signature check waits for Prometheus to scrape the canary: no event says when, so poll.
    contract_due = has_prometheus and _contract_due(spec, status, desired, live)
    target = engine.analysis_due(spec, status, now)
    connection = _prometheus(rt, spec, namespace) if contract_due or target is not None else None
    if contract_due:
        assert connection is not None and status.stableRevision is not None
        signature = contract.observe(connection, namespace, status.stableRevision, desired.revision)
        obs = dataclasses.replace(obs, contract=signature)
    if target is not None:
        started = time.monotonic()
        with open_provider(connection) as provider:
            result = run_analysis(spec, status, target, namespace, name, now, provider=provider)
        rt.telemetry.observe_analysis(namespace, name, time.monotonic() - started, result.verdict)
        obs = dataclasses.replace(obs, analysis=result)

    calls = hooks.due(spec, status, now)
    if calls:
        weight = status.canaryWeight
        results = tuple(hook_calls.call(rt.notifier, c, namespace, name, spec, weight, now) for c in calls)
        obs = dataclasses.replace(obs, hooks=results)

    decision = engine.decide(spec, status, obs, now)
    new_status = decision.status.model_dump(mode="json")
    changed = new_status != status.model_dump(mode="json") or not obj.get("status")
    # Recorded after its actions, so a decision whose writes did not all happen is made again; only
    # a decision the engine marks record_first (a new canary: see engine.Decision) is recorded first.
    if decision.record_first:
        if not _record(rt, obj, decision, new_status, now):
            return poll
        _notify(rt, obj, spec, decision, now)
    try:
        _apply(rt, obj, spec, decision, live)
    except ApiException as exc:
        _apply_failed(rt, obj, status, exc, now, spec.traffic.provider, workloads.grpc_routed(spec))
        return poll
    _ensure_singletons(rt, obj, spec, decision.status.stableRevision)
    if not decision.record_first:
        if changed and not _record(rt, obj, decision, new_status, now):
            return poll  # someone wrote first: their change arrives as an event, this is the fallback
        _notify(rt, obj, spec, decision, now)
    if not changed and not rt.telemetry.knows(namespace, name):
        rt.telemetry.observe_status(namespace, name, new_status, obj.get("spec"))
    due = engine.next_due(spec, decision.status, now)
    # The signature check waits on a scrape, and a revision short of ready pods on pod status that
    # no watched object announces (a container restarting with its reason): both are polled.
    # ... and so is a retraining Job's end: the operator reads its Job only while it runs, and watches no Jobs.
    if (
        contract_due
        or _retraining(decision.status)
        or (_waits_on_pods(decision.status, desired.revision) and _short_of_pods(live, desired.revision))
    ):
        return poll if due is None else min(due, poll)
    return due


def _retraining(status: t.ModelDeploymentStatus) -> str | None:
    """The retraining Job that runs now, if any."""
    runs = status.retraining
    return runs.job if runs is not None and runs.outcome == t.RetrainingOutcome.RUNNING else None


def _record(
    rt: Runtime, obj: dict[str, Any], decision: engine.Decision, new_status: dict[str, Any], now: datetime
) -> bool:
    """Write the decision's status, conditional on the resourceVersion read; False on a conflict."""
    meta = obj["metadata"]
    if not rt.kube.write_status(meta["namespace"], meta["name"], meta["resourceVersion"], new_status):
        return False
    rt.telemetry.observe_decision(
        meta["namespace"], meta["name"], decision.transition, new_status, obj.get("spec"), now=now
    )
    return True


def _notify(
    rt: Runtime, obj: dict[str, Any], spec: t.ModelDeploymentSpec, decision: engine.Decision, now: datetime
) -> None:
    """Offer the decision's Events to the object's notification targets, once its status is written:
    a decision re-made after a conflict or a refused write (whose Kubernetes Events were posted again)
    notifies once, and one whose status never lands notifies nothing. Only queues (``notify``)."""
    if rt.notifier is None or not spec.notifications:
        return
    meta = obj["metadata"]
    for action in decision.actions:
        if isinstance(action, engine.Emit):
            notify = rt.notifier.notify
            notify(meta["namespace"], meta["name"], spec.notifications, action.type, action.reason, action.message,
                   decision.status, now)  # fmt: skip


def _waits_on_pods(status: t.ModelDeploymentStatus, revision: str) -> bool:
    """Whether the rollout waits for ``revision``'s pods to become available: the first revision, or
    a canary before its first step. Only then are its pods read and the object polled for them; a
    stable revision short of a pod (a scale-up, an unschedulable replica) costs nothing."""
    if status.phase in (t.Phase.INITIALIZING, t.Phase.FAILED):
        return True
    return status.canaryRevision == revision and status.currentStep is None


def _short_of_pods(live: dict, revision: str) -> bool:
    state = live.get(revision, (None, None))[0]
    return state is not None and state.replicas > 0 and state.ready < state.replicas


def _with_pod_problem(rt: Runtime, namespace: str, name: str, revision: str, live: dict) -> dict:
    """``live`` with the desired revision's pod problem filled in while it is short of ready pods
    (the engine puts it in the messages that wait on those pods); a failed look is no problem."""
    if not _short_of_pods(live, revision):
        return live
    state, dep = live[revision]
    try:
        problem = rt.kube.pod_problem(namespace, name, revision)
    except ApiException as exc:
        log.warning("could not read the pods of %s/%s revision %s: %s", namespace, name, revision, exc.reason)
        return live
    return {**live, revision: (dataclasses.replace(state, problem=problem), dep)} if problem else live


def _prometheus(
    rt: Runtime, spec: t.ModelDeploymentSpec, namespace: str
) -> PrometheusConnection | CredentialsError | None:
    """The Prometheus this object's checks query, credentials read now (see metrics.connection):
    its own ``spec.analysis.prometheus`` with Secrets from its namespace, else the operator's default,
    else None. A credential that cannot be read is returned, not raised: the gates report it."""
    try:
        if spec.analysis.prometheus is not None:
            return from_spec(spec.analysis.prometheus, namespace, partial(_read_secret, rt))
        if rt.config.prometheus.address:
            return rt.config.prometheus.connection()
    except CredentialsError as exc:
        return exc
    return None


def _read_secret(rt: Runtime, namespace: str, name: str) -> Mapping[str, bytes]:
    """A Secret's data for :func:`from_spec`; every failure a :class:`CredentialsError` saying what to do."""
    try:
        data = rt.kube.read_secret(namespace, name)
    except ApiException as exc:
        if exc.status == 403:
            raise CredentialsError(
                f"the operator may not read Secret {namespace}/{name}: grant it get on secrets "
                "(the chart's rbac.readSecrets)"
            ) from None
        raise CredentialsError(f"reading Secret {namespace}/{name} failed: HTTP {exc.status} {exc.reason}") from None
    if data is None:
        raise CredentialsError(f"Secret {namespace}/{name} not found (named in spec.analysis.prometheus)")
    return data


def _contract_due(
    spec: t.ModelDeploymentSpec, status: t.ModelDeploymentStatus, desired: engine.DesiredRevision, live: dict
) -> bool:
    """Whether this tick may put the desired revision at its first step, so its signature must be
    compared first: a canary (new, or still waiting for step 0) with a ready pod to have been scraped
    (the caller checks there is a Prometheus to ask). Once the canary takes traffic it is never
    checked again."""
    stable = status.stableRevision
    if spec.paused or stable is None or desired.revision == stable:
        return False
    if desired.revision in status.failedRevisions:
        return False
    if status.canaryRevision == desired.revision and status.currentStep is not None:
        return False
    state = live.get(desired.revision, (None, None))[0]
    return state is not None and state.ready > 0


def _apply(
    rt: Runtime, obj: dict[str, Any], spec: t.ModelDeploymentSpec, decision: engine.Decision, live: dict
) -> None:
    """Carry out the engine's actions in the order given (order encodes safety, e.g. weights first)."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    snapshots = {h.revision: h for h in decision.status.history}
    router = routers.router_for(spec, rt.api_client)
    # Only a canary without a traffic layer has <name> span revisions (the replica ratio is the weight);
    # every router, Istio included, routes to <name> (stable only) and <name>-canary, and so does a
    # blue-green rollout without one: its switch is <name> moving to the new revision.
    all_revisions = plan_for(spec).replica_weights
    if any(_starts_pods(a, live) for a in decision.actions):
        rt.kube.ensure_feedback_key(obj)  # before any pod that mounts it
    for action in decision.actions:
        match action:
            case engine.EnsureRevision(revision=rev, replicas=replicas):
                snap = snapshots.get(rev)
                if snap is None:
                    log.warning("no snapshot for revision %s; cannot render its Deployment", rev)
                    continue
                manifest = workloads.build_deployment(
                    obj,
                    rev,
                    snap.model,
                    snap.serving,
                    snap.serving.image or rt.config.model_server_image,
                    replicas,
                    spec.progressDeadlineSeconds,
                    [m.slowerThanMs for m in spec.analysis.metrics if m.slowerThanMs is not None],
                    snap.comparedWith,
                )
                rt.kube.apply_deployment(manifest, live[rev][1] if rev in live else None)
            case engine.DeleteRevision(revision=rev):
                rt.kube.delete_deployment(namespace, name, workloads.deployment_name(name, rev))
            case engine.PointService(role=role, revision=rev):
                svc = workloads.stable_service_name(name) if role == "stable" else workloads.canary_service_name(name)
                current = rt.kube.read_service(namespace, svc)
                if _may_point(current, rev, live):
                    manifest = workloads.build_service(
                        obj, svc, rev, role, role == "stable" and all_revisions, workloads.grpc_routed(spec)
                    )
                    rt.kube.apply_service(manifest, current)
                else:  # every new canary waits here for its first pod (its Service selected the stable)
                    log.log(logging.INFO if role == "stable" else logging.DEBUG,
                            "%s/%s: not pointed at %s yet: it has no available pod and %s has",
                            namespace, svc, rev, selected_revision(current))  # fmt: skip
            case engine.SetRouting(routing=routing):
                if routing.stable_revision is not None:  # no route before the first revision is stable
                    router.ensure(obj, spec, routing)
            case engine.PruneRoutes():
                routers.cleanup_other_providers(obj, spec, rt.api_client)
            case engine.StartRetraining(job=job, revision=rev, model_uri=uri, drift=drift):
                assert spec.retraining is not None
                report = retraining.report(namespace, name, rev, uri, drift, datetime.now(UTC))
                manifest = retraining.build_job(obj, spec.retraining, job, rev, uri, json.dumps(report))
                try:
                    rt.kube.create_job(manifest)
                except ApiException as exc:  # a run, not the rollout: the next read finds no Job, a failed run
                    log.warning("%s/%s: retraining Job %s refused: %s", namespace, name, job, _refusal(exc))
                    rt.kube.post_event(obj, "Warning", "RetrainingRefused", f"Job {job}: {_refusal(exc)}")
            case engine.Emit(type=kind, reason=reason, message=message):
                rt.kube.post_event(obj, kind, reason, message)


def _may_point(current: dict[str, Any] | None, revision: str, live: dict) -> bool:
    """Never move a Service (``current``, as read) from a revision with available pods to one without:
    its traffic would fail until the pods come. The engine never asks for that on its own; a decision
    re-made from a status older than the cluster does (the operator killed after writing children,
    before writing status: the chaos suite found it). Held, the Service keeps serving and the next
    decision, once the pods are there or the status has caught up, points it."""
    if revision in live and live[revision][0].available > 0:
        return True
    serving = selected_revision(current)
    return serving is None or serving == revision or serving not in live or live[serving][0].available == 0


def _starts_pods(action: engine.Action, live: dict) -> bool:
    """A new revision's Deployment, or one scaled up from zero: pods that mount the key are coming.
    (Asking on every reconcile cost one refused create per reconcile.)"""
    if not isinstance(action, engine.EnsureRevision) or action.replicas == 0:
        return False
    return action.revision not in live or live[action.revision][0].replicas == 0


def _apply_failed(
    rt: Runtime,
    obj: dict[str, Any],
    status: t.ModelDeploymentStatus,
    exc: ApiException,
    now: datetime,
    provider: str,
    grpc: bool = False,
) -> None:
    """The cluster refused a write (e.g. a route CRD that is not installed, or RBAC). The decision is
    not recorded, since its actions did not all happen; the old status gets a Degraded condition and an
    Event once per distinct error, and the next tick tries again."""
    meta = obj["metadata"]
    if exc.status == 403 and "NamespaceTerminating" in str(exc.body):
        # The namespace is being deleted and the ModelDeployment with it: nothing to report to anyone.
        log.debug("%s/%s: namespace is terminating; children not written", meta["namespace"], meta["name"])
        return
    reason, message = "ApplyFailed", _refusal(exc)
    # A 404 on a write is a resource the API server does not know: say which, and what to do.
    gaps = routers.missing_apis(provider, grpc=grpc) if exc.status == 404 else []
    if gaps:
        reason, message = "TrafficAPIMissing", routers.explain(provider, gaps)[:1024]
    log.warning("%s/%s: %s", meta["namespace"], meta["name"], message)
    if any(c.type == "Degraded" and c.reason == reason and c.message == message for c in status.conditions):
        return
    engine.set_condition(status, "Degraded", True, reason, message, now, meta.get("generation", 0))
    rt.kube.post_event(obj, "Warning", reason, message)
    rt.kube.write_status(meta["namespace"], meta["name"], meta["resourceVersion"], status.model_dump(mode="json"))


def _ensure_singletons(rt: Runtime, obj: dict[str, Any], spec: t.ModelDeploymentSpec, stable: str | None) -> None:
    """The PodDisruptionBudget and the HorizontalPodAutoscaler: one each per ModelDeployment, written
    after the decision's actions (the autoscaler follows the stable revision, which a promotion just
    moved). Neither holds a rollout back: a refused write (e.g. a chart whose RBAC predates it) is a
    Warning Event and a log line, tried again at the next change or after operator.resyncSeconds."""
    writes = (
        ("PodDisruptionBudget", lambda: rt.kube.ensure_disruption_budget(obj, spec.disruptionBudget)),
        ("HorizontalPodAutoscaler", lambda: rt.kube.ensure_autoscaler(obj, spec.serving.autoscaling, stable)),
    )
    for kind, write in writes:
        try:
            write()
        except ApiException as exc:
            message = f"{kind} not written: {_refusal(exc)}"
            meta = obj["metadata"]
            log.warning("%s/%s: %s", meta["namespace"], meta["name"], message)
            rt.kube.post_event(obj, "Warning", f"{kind}Failed", message)


def _refusal(exc: ApiException) -> str:
    """The API server's own words for a refused write (its Status message, else the raw body)."""
    detail = exc.body if isinstance(exc.body, str) else ""
    if exc.body is not None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            detail = json.loads(exc.body).get("message", detail)
    return f"applying children failed: {exc.status} {exc.reason}: {detail}"[:1024]


def _invalid_spec(
    rt: Runtime, obj: dict[str, Any], status: t.ModelDeploymentStatus, exc: ValidationError, now: datetime
) -> None:
    """Anything the CRD schema could not reject becomes a condition and an Event, never a crash loop."""
    meta = obj["metadata"]
    problems = "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    generation = meta.get("generation", 0)
    if status.observedGeneration == generation and any(
        c.type == "Degraded" and c.reason == "InvalidSpec" and c.message == problems for c in status.conditions
    ):
        return
    status.observedGeneration = generation
    engine.set_condition(status, "Degraded", True, "InvalidSpec", problems, now, generation)
    rt.kube.post_event(obj, "Warning", "InvalidSpec", problems)
    rt.kube.write_status(meta["namespace"], meta["name"], meta["resourceVersion"], status.model_dump(mode="json"))
