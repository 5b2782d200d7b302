"""The operator's own Prometheus metrics, served on ``/metrics``.

Why a module of its own: the rollout engine is pure and the kopf handlers are a thin shell, so the
shell needs a few plain calls to report what happened (a phase transition, the status it just
wrote, how long an analysis took) without knowing anything about prometheus-client. The gauges are
derived from ``status`` — the operator's only state — so a restarted operator reports the same
gauges as soon as it has seen each ModelDeployment once; the rollout counters count the phase
transitions the engine's decisions made (``engine.Transition``). Counters and histograms restart
at zero with the process, as Prometheus counters are expected to. One :class:`Telemetry` is built
at start and reaches the handlers in the operator's ``Runtime``.

Metric names (all prefixed ``modelrollout_``), grouped as the Grafana dashboard uses them:

* ``rollouts_started_total``, ``rollouts_succeeded_total``, ``rollouts_rolled_back_total{reason}``,
  ``rollouts_failed_total{reason}`` — counted on phase transitions;
* ``phase{phase}`` (1 for the current phase, 0 for the others, kube-state-metrics style),
  ``canary_weight``, ``canary_step`` — per ModelDeployment;
* ``analysis_duration_seconds`` (histogram), ``analysis_runs_total{verdict}``;
* ``gate_value{gate,role}`` (role is ``canary`` for the revision under analysis — the new stable while
  baking — and ``stable`` for the one it is compared with), ``gate_threshold{gate,bound}``,
  ``gate_verdict{gate,verdict}``;
* ``time_to_rollback_seconds{reason}`` (histogram): from the moment the failed revision was created
  to the rollback.

Per-object series carry ``namespace`` and ``name`` labels; :meth:`Telemetry.forget` drops them when a
ModelDeployment is deleted so dashboards do not show ghosts.
"""

from __future__ import annotations

import gc
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from importlib import metadata
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from modelrollout.api.types import PHASES
from modelrollout.durations import parse_timestamp

if TYPE_CHECKING:
    from modelrollout.engine import Transition

PREFIX = "modelrollout"
VERDICTS = ("Pass", "Fail", "Inconclusive")
THRESHOLD_BOUNDS = ("min", "max", "maxDropVsStable", "maxRiseVsStable", "maxPSI", "maxPSIVsStable")
# Phases in which a revision is on its way to becoming stable. A rollout starts when one is entered
# from anywhere else (a resumed pause is not a new start) and ends when one is left for Succeeded,
# RolledBack or Failed; a steady object that merely changes its phase label (e.g. Succeeded shown
# as RolledBack because the spec points at a failed revision again) counts nothing.
_IN_FLIGHT = frozenset({"Initializing", "Progressing", "Baking"})
_REASON_RE = re.compile(r"[^A-Za-z0-9_]")
_MAX_REASON = 64

API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ANALYSIS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From seconds (a pod crash-looping at step one) to an hour (a slow bake).
ROLLBACK_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0)


def _reason_label(reason: str | None) -> str:
    """Keep the ``reason`` label low-cardinality: a CamelCase word, never free text."""
    if not reason:
        return "Unknown"
    word = _REASON_RE.sub("", reason.split(":", 1)[0].split(" ", 1)[0])
    return word[:_MAX_REASON] or "Unknown"


class Telemetry:
    """All operator metrics in one registry.

    The operator builds one at start (``Runtime.telemetry``) and serves it on ``/metrics``; tests
    build their own so that counters start at zero and nothing leaks between them.
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        obj = ["namespace", "name"]
        reg = self.registry
        self.info = Info(f"{PREFIX}_operator", "Operator build information.", registry=reg)
        self.info.info({"version": _version()})
        self.started = Counter(
            f"{PREFIX}_rollouts_started_total", "Rollouts of a new revision started.", obj, registry=reg
        )
        self.succeeded = Counter(
            f"{PREFIX}_rollouts_succeeded_total",
            "Rollouts that finished with the new revision stable (after bake).",
            obj,
            registry=reg,
        )
        self.rolled_back = Counter(
            f"{PREFIX}_rollouts_rolled_back_total",
            "Rollouts reverted to the last good revision, by reason.",
            [*obj, "reason"],
            registry=reg,
        )
        self.failed = Counter(
            f"{PREFIX}_rollouts_failed_total",
            "Rollouts that failed with no good revision to revert to, by reason.",
            [*obj, "reason"],
            registry=reg,
        )
        self.phase = Gauge(
            f"{PREFIX}_phase",
            "1 for the ModelDeployment's current phase, 0 for the others.",
            [*obj, "phase"],
            registry=reg,
        )
        self.canary_weight = Gauge(
            f"{PREFIX}_canary_weight", "Percent of traffic on the canary revision.", obj, registry=reg
        )
        self.canary_step = Gauge(
            f"{PREFIX}_canary_step",
            "Index of the current canary step (0-based); absent when none.",
            obj,
            registry=reg,
        )
        self.weight_approximate = Gauge(
            f"{PREFIX}_canary_weight_approximate",
            "1 when the weight is approximated by replica ratios (traffic provider none).",
            obj,
            registry=reg,
        )
        self.analysis_duration = Histogram(
            f"{PREFIX}_analysis_duration_seconds",
            "Wall time of one gate check (all Prometheus queries of one analysis).",
            obj,
            buckets=ANALYSIS_BUCKETS,
            registry=reg,
        )
        self.analysis_runs = Counter(
            f"{PREFIX}_analysis_runs_total",
            "Gate checks, by overall verdict.",
            [*obj, "verdict"],
            registry=reg,
        )
        self.gate_value = Gauge(
            f"{PREFIX}_gate_value",
            "Last value of a gate; role=canary is the revision under analysis, role=stable its baseline.",
            [*obj, "gate", "role"],
            registry=reg,
        )
        self.gate_threshold = Gauge(
            f"{PREFIX}_gate_threshold",
            "A gate's configured threshold, by bound (min, max, maxDropVsStable, maxRiseVsStable, maxPSI, "
            "maxPSIVsStable).",
            [*obj, "gate", "bound"],
            registry=reg,
        )
        self.gate_verdict = Gauge(
            f"{PREFIX}_gate_verdict",
            "1 for a gate's last verdict, 0 for the others.",
            [*obj, "gate", "verdict"],
            registry=reg,
        )
        self.drifted = Gauge(
            f"{PREFIX}_drifted",
            "1 while the stable revision's inputs or scores drift from its training reference (the Drifted "
            "condition), 0 otherwise; present with a drift gate.",
            obj,
            registry=reg,
        )
        self.drift_psi = Gauge(
            f"{PREFIX}_drift_psi",
            "A drift gate's last PSI per judged feature (_prediction_score: the score), against the training "
            "reference (or the stable, for 'feature vs stable').",
            [*obj, "gate", "feature"],
            registry=reg,
        )
        self.time_to_rollback = Histogram(
            f"{PREFIX}_time_to_rollback_seconds",
            "Seconds from the creation of a revision to its automatic rollback.",
            ["reason"],
            buckets=ROLLBACK_BUCKETS,
            registry=reg,
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests_total",
            "Requests the operator's API client sent to the Kubernetes API server (kopf's watches aside).",
            ["method", "resource", "code"],
            registry=reg,
        )
        self.api_request_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Latency of the operator's API requests as its client saw them (kopf's watches aside).",
            ["method", "resource"],
            buckets=API_BUCKETS,
            registry=reg,
        )
        self.reconciles = Counter(
            f"{PREFIX}_reconciles_total", "Reconciles run by the scheduler's workers.", ["result"], registry=reg
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Seconds one reconcile of one ModelDeployment took (Prometheus queries included).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
            registry=reg,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Seconds a ModelDeployment waited for a worker past the moment it was due (or, for a "
            "user's change, since its watch event): above zero only when the workers are all busy.",
            ["urgent"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=reg,
        )
        self.leader = Gauge(f"{PREFIX}_leader", "1 while this replica holds the leader Lease.", registry=reg)
        self.gc_pause = Histogram(
            f"{PREFIX}_gc_pause_seconds",
            "Seconds one collection of CPython's cyclic garbage collector stopped every thread of the "
            "operator, by generation (2: a full collection); see watch_gc_pauses.",
            ["generation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=reg,
        )
        self._lock = threading.Lock()
        # Label tuples this process has set per object, so that vanished gates and deleted objects
        # can be removed precisely (prometheus-client has no "remove by partial labels").
        self._series: dict[tuple[str, str], set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}

    # ----------------------------------------------------------------------------------- helpers

    def _set(self, metric: Gauge, labels: tuple[str, ...], value: float) -> None:
        metric.labels(*labels).set(value)
        self._series.setdefault((labels[0], labels[1]), set()).add((metric, labels))

    def _drop(self, key: tuple[str, str], keep: set[tuple[MetricWrapperBase, tuple[str, ...]]]) -> None:
        """Remove every gauge series of ``key`` that is not in ``keep``."""
        for metric, labels in self._series.get(key, set()) - keep:
            with suppress(KeyError):
                metric.remove(*labels)
        self._series[key] = set(keep)

    # ---------------------------------------------------------------------------------- events

    def record_transition(
        self,
        namespace: str,
        name: str,
        old_phase: str | None,
        new_phase: str | None,
        reason: str | None = None,
        *,
        revision_started_at: datetime | str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Count a phase change. Call it once per status write whose phase differs from the old one.

        Entering Initializing (a first revision) or Progressing (a canary) from outside a rollout
        starts one; leaving a rollout (or a pause within one) for Succeeded, RolledBack or Failed ends
        it. ``revision_started_at`` (status ``revisionStartedAt`` of the revision that was reverted)
        feeds the time-to-rollback histogram.
        """
        if old_phase == new_phase or new_phase is None:
            return
        in_rollout = old_phase in _IN_FLIGHT or old_phase == "Paused"
        if new_phase in ("Initializing", "Progressing") and not in_rollout:
            self.started.labels(namespace, name).inc()
        elif new_phase == "Succeeded" and old_phase in _IN_FLIGHT:
            self.succeeded.labels(namespace, name).inc()
        elif new_phase == "RolledBack" and in_rollout:
            label = _reason_label(reason)
            self.rolled_back.labels(namespace, name, label).inc()
            started = parse_timestamp(revision_started_at)
            if started is not None:
                elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
                if elapsed >= 0:
                    self.time_to_rollback.labels(label).observe(elapsed)
        elif new_phase == "Failed" and in_rollout:
            self.failed.labels(namespace, name, _reason_label(reason)).inc()

    def observe_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any] | None,
        spec: Mapping[str, Any] | None = None,
    ) -> None:
        """Set every per-object gauge from a status (and the spec's gate thresholds, when given).

        Idempotent and cheap: call it after each status write and on resume. Gauges for gates that
        are no longer in the status or spec are removed.
        """
        status = status or {}
        key = (namespace, name)
        keep: set[tuple[MetricWrapperBase, tuple[str, ...]]] = set()

        def put(metric: Gauge, labels: tuple[str, ...], value: float) -> None:
            self._set(metric, labels, value)
            keep.add((metric, labels))

        with self._lock:
            current = status.get("phase")
            if current is not None:
                for phase in PHASES:
                    put(self.phase, (namespace, name, phase), 1.0 if phase == current else 0.0)
            put(self.canary_weight, (namespace, name), float(status.get("canaryWeight") or 0))
            put(self.weight_approximate, (namespace, name), 1.0 if status.get("weightApproximate") else 0.0)
            step = status.get("currentStep")
            if step is not None:
                put(self.canary_step, (namespace, name), float(step))

            last = status.get("lastAnalysis") or {}
            for result in last.get("metrics") or []:
                gate = str(result.get("name", ""))
                if not gate:
                    continue
                for role, field in (("canary", "value"), ("stable", "stableValue")):
                    value = result.get(field)
                    if value is not None:
                        put(self.gate_value, (namespace, name, gate, role), float(value))
                for feature in result.get("features") or []:
                    if feature.get("name") is not None and feature.get("psi") is not None:
                        put(self.drift_psi, (namespace, name, gate, str(feature["name"])), float(feature["psi"]))
                verdict = result.get("verdict")
                if verdict in VERDICTS:
                    for v in VERDICTS:
                        put(self.gate_verdict, (namespace, name, gate, v), 1.0 if v == verdict else 0.0)

            drifted = next((c for c in status.get("conditions") or [] if c.get("type") == "Drifted"), None)
            if drifted is not None:
                put(self.drifted, (namespace, name), 1.0 if drifted.get("status") == "True" else 0.0)

            for metric in ((spec or {}).get("analysis") or {}).get("metrics") or []:
                gate = str(metric.get("name", ""))
                for bound in THRESHOLD_BOUNDS:
                    value = metric.get(bound)
                    if gate and value is not None:
                        put(self.gate_threshold, (namespace, name, gate, bound), float(value))

            if spec is None:
                # Without a spec we know nothing new about thresholds: keep the ones we had.
                keep |= {s for s in self._series.get(key, set()) if s[0] is self.gate_threshold}
            self._drop(key, keep)

    def observe_decision(
        self,
        namespace: str,
        name: str,
        transition: Transition | None,
        status: Mapping[str, Any],
        spec: Mapping[str, Any] | None = None,
        *,
        now: datetime | None = None,
    ) -> None:
        """The one call after a status write: count the engine's phase transition (as the decision
        made it, reason included), then set the gauges from the status written."""
        if transition is not None:
            self.record_transition(
                namespace,
                name,
                transition.old,
                transition.new,
                transition.reason,
                revision_started_at=transition.revision_started_at,
                now=now,
            )
        self.observe_status(namespace, name, status, spec)

    def observe_analysis(self, namespace: str, name: str, seconds: float, verdict: str | None = None) -> None:
        """Record one gate check's wall time and overall verdict (Pass, Fail or Inconclusive)."""
        self.analysis_duration.labels(namespace, name).observe(max(0.0, seconds))
        if verdict in VERDICTS:
            self.analysis_runs.labels(namespace, name, verdict).inc()

    @contextmanager
    def time_analysis(self, namespace: str, name: str) -> Iterator[dict[str, str]]:
        """``with time_analysis(ns, name) as out: ...; out["verdict"] = "Pass"`` — times the block.

        The duration is recorded even when the block raises (a Prometheus outage is exactly when
        analysis time matters); the verdict only when the block sets it.
        """
        out: dict[str, str] = {}
        t0 = perf_counter()
        try:
            yield out
        finally:
            self.observe_analysis(namespace, name, perf_counter() - t0, out.get("verdict"))

    def watch_gc_pauses(self) -> None:
        """Time every garbage collection into ``gc_pause`` (called once, by the operator's main:
        ``gc.callbacks`` is process-wide). At scale the full collections were where the operator's
        latency went (``make bench-operator``); this keeps that visible on a live cluster."""
        # Children made now: the callback runs inside whatever allocation set the collector off, and
        # labels() allocates under the metric's lock; an observe only adds floats under its values'.
        generations = [self.gc_pause.labels(str(g)) for g in range(3)]
        started = [0.0]

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0] = perf_counter()
            else:
                generations[info["generation"]].observe(perf_counter() - started[0])

        gc.callbacks.append(callback)

    def observe_request(self, method: str, resource: str, code: str, seconds: float) -> None:
        """One request of the operator's API client (``kube.count_requests`` calls this)."""
        self.api_requests.labels(method, resource, code).inc()
        self.api_request_duration.labels(method, resource).observe(max(0.0, seconds))

    def knows(self, namespace: str, name: str) -> bool:
        """Whether this process has set the object's gauges: a restarted operator sets them once
        from the status it finds, before any change."""
        with self._lock:
            return (namespace, name) in self._series

    def forget(self, namespace: str, name: str) -> None:
        """Drop the gauges of a deleted ModelDeployment (counters and histograms stay: they are totals)."""
        with self._lock:
            self._drop((namespace, name), set())
            self._series.pop((namespace, name), None)


def _version() -> str:
    """The installed distribution's version; "unknown" when running from a bare source tree."""
    try:
        return metadata.version("modelrollout")
    except metadata.PackageNotFoundError:
        return "unknown"


def start_metrics_server(telemetry: Telemetry, port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` from a daemon thread; returns the HTTP server (call ``shutdown()`` to stop).

    A daemon thread keeps it out of kopf's event loop, so a slow scrape never delays a handler.
    """
    server, _thread = start_http_server(port, addr=addr, registry=telemetry.registry)
    return server
