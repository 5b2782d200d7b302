"""kopf handlers: the imperative shell around the pure engine.

Every trigger — a ModelDeployment event, a child Deployment event, or the periodic timer that moves
time-based steps — runs the same idempotent ``reconcile``: read the object fresh, observe its
revisions, ask the engine, apply its actions in order, then write status conditionally on the
resourceVersion that was read. Nothing is kept in memory between ticks except a per-object lock that
stops two triggers from deciding at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelrollout import contract, engine, routers, telemetry, workloads
from modelrollout.analysis import run_analysis
from modelrollout.api import types as t
from modelrollout.kube import Kube, load_config
from modelrollout.revision import revision_hash
from modelrollout.strategy import plan_for

log = logging.getLogger(__name__)

DEFAULT_IMAGE = os.environ.get("MODELROLLOUT_DEFAULT_IMAGE", "modelrollout/modelserver:0.1.0")
TICK_SECONDS = float(os.environ.get("MODELROLLOUT_TICK_SECONDS", "5"))
DEFAULT_PROMETHEUS = os.environ.get("MODELROLLOUT_PROMETHEUS_ADDRESS", "")

_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)
_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        load_config()
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Keep kopf's own bookkeeping in annotations: our status schema is structural and owns status."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=t.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=t.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.execution.max_workers = int(os.environ.get("MODELROLLOUT_WORKERS", "8"))
    settings.peering.standalone = os.environ.get("MODELROLLOUT_PEERING", "") == ""
    if not settings.peering.standalone:
        settings.peering.name = os.environ["MODELROLLOUT_PEERING"]


# The keys of the ModelDeployments kopf has shown us: which objects to tick, not rollout state.
# A per-object kopf timer would do the same, but kopf guards timers with a finalizer, and a finalizer
# would block `kubectl delete` (and Argo CD prunes) whenever the operator is down.
_known: set[tuple[str, str]] = set()
_known_lock = threading.Lock()
_background: set[asyncio.Task] = set()


@kopf.on.event(t.GROUP, t.VERSION, t.PLURAL)
def on_modeldeployment(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    if namespace is None:  # never for a namespaced kind; kopf's handler type also covers cluster-scoped ones
        return
    with _known_lock:
        if event.get("type") == "DELETED":
            _known.discard((namespace, name))
            telemetry.forget(namespace, name)
            return
        _known.add((namespace, name))
    reconcile(namespace, name)


@kopf.on.startup()
async def start_ticker(**_: Any) -> None:
    """Move time-based steps (step durations, analysis intervals, deadlines) every TICK_SECONDS."""
    _background.add(asyncio.get_running_loop().create_task(_tick_forever()))


async def _tick_forever() -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        with _known_lock:
            keys = sorted(_known)
        for namespace, name in keys:
            try:
                await asyncio.to_thread(reconcile, namespace, name)
            except Exception:  # one object's failure must not stop the others' clocks
                log.exception("reconcile of %s/%s failed; retrying next tick", namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": "modelrollout"})
def on_child(event: kopf.RawEvent, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    """A revision's pods changed readiness: decide now instead of at the next tick."""
    owner = labels.get(workloads.LABEL_DEPLOYMENT)
    if owner and namespace is not None and event.get("type") in ("MODIFIED", "DELETED"):
        reconcile(namespace, owner)


_observed: set[tuple[str, str]] = set()


def telemetry_seen(namespace: str, name: str) -> bool:
    """Gauges come from status; a restarted operator reports them once per object before any change."""
    key = (namespace, name)
    seen = key in _observed
    _observed.add(key)
    return seen


def reconcile(namespace: str, name: str) -> None:
    with _locks[(namespace, name)]:
        obj = kube().get_modeldeployment(namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        _reconcile(obj, datetime.now(UTC))


def _reconcile(obj: dict[str, Any], now: datetime) -> None:
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status = t.ModelDeploymentStatus.model_validate(obj.get("status") or {})
    try:
        spec = t.ModelDeploymentSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        _invalid_spec(obj, status, exc, now)
        return

    if spec.analysis.prometheus is None and DEFAULT_PROMETHEUS:
        analysis = spec.analysis.model_copy(update={"prometheus": t.PrometheusSpec(address=DEFAULT_PROMETHEUS)})
        spec = spec.model_copy(update={"analysis": analysis})
    image = spec.serving.image or DEFAULT_IMAGE
    serving = spec.serving.model_copy(update={"image": image})
    desired = engine.DesiredRevision(revision_hash(spec.model, spec.serving, image), spec.model, serving)
    live = kube().list_revisions(namespace, name)
    obs = engine.Observations(
        generation=meta.get("generation", 0),
        desired=desired,
        deployments={rev: state for rev, (state, _) in live.items()},
        annotations=meta.get("annotations") or {},
    )
    if _contract_due(spec, status, desired, live):
        assert spec.analysis.prometheus is not None and status.stableRevision is not None
        prom = spec.analysis.prometheus
        signature = contract.observe(
            prom.address, prom.timeoutSeconds, namespace, status.stableRevision, desired.revision
        )
        obs = dataclasses.replace(obs, contract=signature)
    target = engine.analysis_due(spec, status, now)
    if target is not None:
        started = time.monotonic()
        result = run_analysis(spec, status, target, namespace, name, now)
        telemetry.observe_analysis(namespace, name, time.monotonic() - started, result.verdict)
        obs = dataclasses.replace(obs, analysis=result)

    decision = engine.decide(spec, status, obs, now)
    try:
        _apply(obj, spec, decision, live)
    except ApiException as exc:
        _apply_failed(obj, status, exc, now, spec.traffic.provider)
        return
    if status.observedGeneration != decision.status.observedGeneration and decision.status.stableRevision:
        # Only a spec change can switch providers: the new routes were written above, the old go now.
        routers.cleanup_other_providers(obj, spec)
    new_status = decision.status.model_dump(mode="json")
    old_status = status.model_dump(mode="json")
    if (new_status != old_status or not obj.get("status")) and kube().write_status(
        namespace, name, meta["resourceVersion"], new_status
    ):
        telemetry.observe_change(namespace, name, old_status, new_status, obj.get("spec"), now=now)
    elif not telemetry_seen(namespace, name):
        telemetry.observe_status(namespace, name, new_status, obj.get("spec"))


def _contract_due(
    spec: t.ModelDeploymentSpec, status: t.ModelDeploymentStatus, desired: engine.DesiredRevision, live: dict
) -> bool:
    """Whether this tick may put the desired revision at its first step, so its signature must be
    compared first: a canary (new, or still waiting for step 0) with a ready pod to have been scraped,
    and a Prometheus to ask. Once the canary takes traffic it is never checked again."""
    stable = status.stableRevision
    if spec.paused or spec.analysis.prometheus is None or stable is None or desired.revision == stable:
        return False
    if desired.revision in status.failedRevisions:
        return False
    if status.canaryRevision == desired.revision and status.currentStep is not None:
        return False
    state = live.get(desired.revision, (None, None))[0]
    return state is not None and state.ready > 0


def _apply(obj: dict[str, Any], spec: t.ModelDeploymentSpec, decision: engine.Decision, live: dict) -> None:
    """Carry out the engine's actions in the order given (order encodes safety, e.g. weights first)."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    snapshots = {h.revision: h for h in decision.status.history}
    router = routers.router_for(spec)
    # Only a canary without a traffic layer has <name> span revisions (the replica ratio is the weight);
    # every router, Istio included, routes to <name> (stable only) and <name>-canary, and so does a
    # blue-green rollout without one: its switch is <name> moving to the new revision.
    all_revisions = plan_for(spec).replica_weights
    if any(isinstance(a, engine.EnsureRevision) for a in decision.actions):
        kube().ensure_feedback_key(obj)  # before any pod that mounts it
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
                    snap.serving.image or DEFAULT_IMAGE,
                    replicas,
                    spec.progressDeadlineSeconds,
                    [m.slowerThanMs for m in spec.analysis.metrics if m.slowerThanMs is not None],
                )
                kube().apply_deployment(manifest, live[rev][1] if rev in live else None)
            case engine.DeleteRevision(revision=rev):
                kube().delete_deployment(namespace, workloads.deployment_name(name, rev))
            case engine.PointService(role=role, revision=rev):
                svc = workloads.stable_service_name(name) if role == "stable" else workloads.canary_service_name(name)
                if rev is None:
                    kube().delete_service(namespace, svc)
                else:
                    kube().apply_service(
                        workloads.build_service(obj, svc, rev, role, role == "stable" and all_revisions)
                    )
            case engine.SetRouting(routing=routing):
                if routing.stable_revision is not None:  # no route before the first revision is stable
                    router.ensure(obj, spec, routing)
            case engine.Emit(type=kind, reason=reason, message=message):
                kube().post_event(obj, kind, reason, message)


def _apply_failed(
    obj: dict[str, Any], status: t.ModelDeploymentStatus, exc: ApiException, now: datetime, provider: str
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
    gaps = routers.missing_apis(provider) if exc.status == 404 else []
    if gaps:
        reason, message = "TrafficAPIMissing", routers.explain(provider, gaps)[:1024]
    log.warning("%s/%s: %s", meta["namespace"], meta["name"], message)
    if any(c.type == "Degraded" and c.reason == reason and c.message == message for c in status.conditions):
        return
    engine.set_condition(status, "Degraded", True, reason, message, now, meta.get("generation", 0))
    kube().post_event(obj, "Warning", reason, message)
    kube().write_status(meta["namespace"], meta["name"], meta["resourceVersion"], status.model_dump(mode="json"))


def _refusal(exc: ApiException) -> str:
    """The API server's own words for a refused write (its Status message, else the raw body)."""
    detail = exc.body if isinstance(exc.body, str) else ""
    if exc.body is not None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            detail = json.loads(exc.body).get("message", detail)
    return f"applying children failed: {exc.status} {exc.reason}: {detail}"[:1024]


def _invalid_spec(obj: dict[str, Any], status: t.ModelDeploymentStatus, exc: ValidationError, now: datetime) -> None:
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
    kube().post_event(obj, "Warning", "InvalidSpec", problems)
    kube().write_status(meta["namespace"], meta["name"], meta["resourceVersion"], status.model_dump(mode="json"))
