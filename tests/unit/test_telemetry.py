"""Operator metrics: transitions count the right things, gauges follow status, nothing goes stale."""

from __future__ import annotations

import socket
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from modelrollout import engine, telemetry
from modelrollout.api.types import AnalysisResult, MetricResult, ModelDeploymentSpec, ModelDeploymentStatus, Phase
from modelrollout.telemetry import Telemetry

NS, NAME = "ml", "fraud"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tm() -> Telemetry:
    return Telemetry(process_metrics=False)


def sample(tm: Telemetry, metric: str, **labels: str) -> float | None:
    return tm.registry.get_sample_value(metric, labels)


def test_transitions_count_each_rollout_once(tm: Telemetry) -> None:
    tm.record_transition(NS, NAME, None, "Initializing")  # first revision: a rollout of its own
    tm.record_transition(NS, NAME, "Initializing", "Succeeded")
    tm.record_transition(NS, NAME, "Succeeded", "Progressing")  # a canary
    tm.record_transition(NS, NAME, "Progressing", "Paused")
    tm.record_transition(NS, NAME, "Paused", "Progressing")  # resume, not a new rollout
    tm.record_transition(NS, NAME, "Progressing", "Progressing")  # no change
    tm.record_transition(NS, NAME, "Progressing", "Baking")
    tm.record_transition(NS, NAME, "Baking", "Succeeded")
    tm.record_transition(NS, NAME, "Succeeded", "Paused")
    tm.record_transition(NS, NAME, "Paused", "Succeeded")  # resumed while steady: nothing ended
    tm.record_transition(NS, NAME, "Succeeded", "RolledBack")  # spec points at a failed revision again
    tm.record_transition(NS, NAME, "RolledBack", "Succeeded")  # spec back to stable: no rollout
    assert sample(tm, "modelrollout_rollouts_started_total", namespace=NS, name=NAME) == 2
    assert sample(tm, "modelrollout_rollouts_succeeded_total", namespace=NS, name=NAME) == 2
    assert sample(tm, "modelrollout_rollouts_rolled_back_total", namespace=NS, name=NAME, reason="Unknown") is None


def test_abort_while_paused_counts_as_rollback(tm: Telemetry) -> None:
    tm.record_transition(NS, NAME, "Paused", "RolledBack", "Aborted")
    tm.record_transition(NS, NAME, "Initializing", "Failed", "ProgressDeadlineExceeded")
    assert sample(tm, "modelrollout_rollouts_rolled_back_total", namespace=NS, name=NAME, reason="Aborted") == 1
    failed = "modelrollout_rollouts_failed_total"
    assert sample(tm, failed, namespace=NS, name=NAME, reason="ProgressDeadlineExceeded") == 1


def test_rollback_counts_reason_and_time_to_rollback(tm: Telemetry) -> None:
    started = (T0 - timedelta(seconds=90)).isoformat().replace("+00:00", "Z")
    tm.record_transition(
        NS,
        NAME,
        "Progressing",
        "RolledBack",
        "GateFailed: error-rate 0.2 > 0.01",
        revision_started_at=started,
        now=T0,
    )
    assert sample(tm, "modelrollout_rollouts_rolled_back_total", namespace=NS, name=NAME, reason="GateFailed") == 1
    assert sample(tm, "modelrollout_time_to_rollback_seconds_sum", reason="GateFailed") == pytest.approx(90)
    assert sample(tm, "modelrollout_time_to_rollback_seconds_bucket", reason="GateFailed", le="60.0") == 0
    assert sample(tm, "modelrollout_time_to_rollback_seconds_bucket", reason="GateFailed", le="120.0") == 1


def test_rollback_without_start_time_is_counted_but_not_timed(tm: Telemetry) -> None:
    tm.record_transition(NS, NAME, "Baking", "RolledBack", None)
    assert sample(tm, "modelrollout_rollouts_rolled_back_total", namespace=NS, name=NAME, reason="Unknown") == 1
    assert sample(tm, "modelrollout_time_to_rollback_seconds_count", reason="Unknown") is None


def test_failed_is_counted_separately(tm: Telemetry) -> None:
    tm.record_transition(NS, NAME, "Progressing", "Failed", "ProgressDeadlineExceeded")
    assert (
        sample(
            tm,
            "modelrollout_rollouts_failed_total",
            namespace=NS,
            name=NAME,
            reason="ProgressDeadlineExceeded",
        )
        == 1
    )


def status(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "phase": "Progressing",
        "canaryWeight": 25,
        "currentStep": 2,
        "revisionStartedAt": "2026-01-01T11:58:00Z",
        "lastAnalysis": {
            "time": "2026-01-01T12:00:00Z",
            "verdict": "Pass",
            "metrics": [
                {
                    "name": "error-rate",
                    "value": 0.001,
                    "stableValue": 0.002,
                    "threshold": "max 0.01",
                    "verdict": "Pass",
                },
                {"name": "accuracy", "value": None, "threshold": "min 0.9", "verdict": "Inconclusive"},
            ],
        },
    }
    base.update(kw)
    return base


SPEC = {"analysis": {"metrics": [{"name": "error-rate", "max": 0.01}, {"name": "accuracy", "min": 0.9}]}}


def test_observe_status_sets_gauges(tm: Telemetry) -> None:
    tm.observe_status(NS, NAME, status(), SPEC)
    assert sample(tm, "modelrollout_phase", namespace=NS, name=NAME, phase="Progressing") == 1
    assert sample(tm, "modelrollout_phase", namespace=NS, name=NAME, phase="Baking") == 0
    assert sample(tm, "modelrollout_canary_weight", namespace=NS, name=NAME) == 25
    assert sample(tm, "modelrollout_canary_step", namespace=NS, name=NAME) == 2
    gv = "modelrollout_gate_value"
    assert sample(tm, gv, namespace=NS, name=NAME, gate="error-rate", role="canary") == 0.001
    assert sample(tm, gv, namespace=NS, name=NAME, gate="error-rate", role="stable") == 0.002
    assert sample(tm, gv, namespace=NS, name=NAME, gate="accuracy", role="canary") is None  # no data: no value
    verdict = "modelrollout_gate_verdict"
    assert sample(tm, verdict, namespace=NS, name=NAME, gate="accuracy", verdict="Inconclusive") == 1
    assert sample(tm, verdict, namespace=NS, name=NAME, gate="accuracy", verdict="Pass") == 0
    th = "modelrollout_gate_threshold"
    assert sample(tm, th, namespace=NS, name=NAME, gate="error-rate", bound="max") == 0.01
    assert sample(tm, th, namespace=NS, name=NAME, gate="accuracy", bound="min") == 0.9


def test_vanished_gates_and_steps_are_removed(tm: Telemetry) -> None:
    tm.observe_status(NS, NAME, status(), SPEC)
    done = {"phase": "Succeeded", "canaryWeight": 0, "currentStep": None, "lastAnalysis": None}
    tm.observe_status(NS, NAME, done)  # no spec given: thresholds are kept
    assert sample(tm, "modelrollout_canary_step", namespace=NS, name=NAME) is None
    assert sample(tm, "modelrollout_gate_value", namespace=NS, name=NAME, gate="error-rate", role="canary") is None
    assert sample(tm, "modelrollout_gate_threshold", namespace=NS, name=NAME, gate="error-rate", bound="max") == 0.01
    tm.observe_status(NS, NAME, done, {"analysis": {"metrics": [{"name": "accuracy", "min": 0.95}]}})
    assert sample(tm, "modelrollout_gate_threshold", namespace=NS, name=NAME, gate="error-rate", bound="max") is None
    assert sample(tm, "modelrollout_gate_threshold", namespace=NS, name=NAME, gate="accuracy", bound="min") == 0.95
    assert sample(tm, "modelrollout_phase", namespace=NS, name=NAME, phase="Succeeded") == 1


def test_forget_drops_gauges_but_keeps_totals(tm: Telemetry) -> None:
    tm.observe_decision(NS, NAME, engine.Transition(Phase.SUCCEEDED, Phase.PROGRESSING), status(), SPEC)
    tm.observe_status("other", NAME, status())
    tm.forget(NS, NAME)
    assert sample(tm, "modelrollout_canary_weight", namespace=NS, name=NAME) is None
    assert sample(tm, "modelrollout_phase", namespace=NS, name=NAME, phase="Progressing") is None
    assert sample(tm, "modelrollout_canary_weight", namespace="other", name=NAME) == 25
    assert sample(tm, "modelrollout_rollouts_started_total", namespace=NS, name=NAME) == 1


def test_counters_follow_the_engines_decisions(tm: Telemetry) -> None:
    """Each decision's transition, as the real engine made it, feeds the counters: a first revision,
    a canary rolled back by its error-rate gate 40 s after it was created, then the same status
    written again (a requeue) counts nothing more."""
    spec = ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud", "uri": "https://m/a.onnx"},
        "traffic": {"none": {}},
        "strategy": {"canary": {"steps": [10, 100], "stepDuration": "10s"}},
        "analysis": {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]},
    })  # fmt: skip
    up = engine.DeploymentState(replicas=1, updated=1, ready=1, available=1)
    fail = AnalysisResult(time=T0, revision="r2", verdict="Fail",
                          metrics=[MetricResult(name="error-rate", verdict="Fail", value=0.5)])  # fmt: skip
    st, seen = ModelDeploymentStatus(), []
    ticks = [("r1", {}, T0 - timedelta(minutes=5), None), ("r1", {"r1": up}, T0 - timedelta(minutes=4), None),
             ("r2", {"r1": up}, T0 - timedelta(seconds=40), None),
             ("r2", {"r1": up, "r2": up}, T0 - timedelta(seconds=39), None), ("r2", {"r1": up, "r2": up}, T0, fail),
             ("r2", {"r1": up}, T0 + timedelta(seconds=5), None)]  # fmt: skip
    for rev, deps, now, analysis in ticks:
        obs = engine.Observations(1, engine.DesiredRevision(rev, spec.model, spec.serving), deps, {}, analysis)
        decision = engine.decide(spec, st, obs, now)
        st = decision.status
        seen.append(decision.transition and (decision.transition.old, decision.transition.new))
        tm.observe_decision(NS, NAME, decision.transition, st.model_dump(mode="json"), now=now)
    assert seen == [(None, "Initializing"), ("Initializing", "Succeeded"), ("Succeeded", "Progressing"), None,
                    ("Progressing", "RolledBack"), None]  # fmt: skip
    assert sample(tm, "modelrollout_rollouts_started_total", namespace=NS, name=NAME) == 2
    assert sample(tm, "modelrollout_rollouts_succeeded_total", namespace=NS, name=NAME) == 1
    rolled_back = "modelrollout_rollouts_rolled_back_total"
    assert sample(tm, rolled_back, namespace=NS, name=NAME, reason="GateFailedErrorRate") == 1
    assert sample(tm, "modelrollout_time_to_rollback_seconds_sum", reason="GateFailedErrorRate") == pytest.approx(40)
    assert sample(tm, "modelrollout_phase", namespace=NS, name=NAME, phase="RolledBack") == 1


def test_time_analysis_records_even_on_error(tm: Telemetry) -> None:
    with tm.time_analysis(NS, NAME) as out:
        out["verdict"] = "Pass"
    with pytest.raises(RuntimeError), tm.time_analysis(NS, NAME):
        raise RuntimeError("prometheus down")
    assert sample(tm, "modelrollout_analysis_duration_seconds_count", namespace=NS, name=NAME) == 2
    assert sample(tm, "modelrollout_analysis_runs_total", namespace=NS, name=NAME, verdict="Pass") == 1


def test_metrics_server_serves_the_registry() -> None:
    tm = Telemetry()
    tm.observe_status(NS, NAME, status(), SPEC)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = telemetry.start_metrics_server(tm, port, addr="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'modelrollout_canary_weight{name="fraud",namespace="ml"} 25.0' in body
    assert "process_cpu_seconds_total" in body or "python_info" in body


def test_api_requests_are_counted_by_resource_and_timed() -> None:
    from modelrollout.kube import resource_of

    assert resource_of("https://h:6443/apis/apps/v1/namespaces/ml/deployments?labelSelector=a%3Db") == "deployments"
    status = "https://h/apis/modelrollout.io/v1alpha1/namespaces/ml/modeldeployments/fraud/status"
    assert resource_of(status) == "modeldeployments/status"
    assert resource_of("https://h/api/v1/namespaces/ml/events") == "events"
    assert resource_of("https://h/api/v1/namespaces/ml") == "namespaces"
    assert resource_of("https://h/apis/coordination.k8s.io/v1/namespaces/ml/leases/op") == "leases"
    tm = Telemetry(process_metrics=False)
    tm.observe_request("PATCH", "modeldeployments/status", "200", 0.02)
    labels = {"method": "PATCH", "resource": "modeldeployments/status"}
    assert sample(tm, "modelrollout_api_requests_total", **labels, code="200") == 1
    assert sample(tm, "modelrollout_api_request_duration_seconds_sum", **labels) == pytest.approx(0.02)


def test_count_requests_records_every_answer_and_failure() -> None:
    from types import SimpleNamespace

    from kubernetes.client.exceptions import ApiException
    from modelrollout.kube import count_requests

    class Rest:
        def request(self, method: str, url: str, *args: object, **kwargs: object) -> object:
            if url.endswith("/missing"):
                raise ApiException(status=404)
            if url.endswith("/down"):
                raise ConnectionError("refused")
            return SimpleNamespace(status=200)

    api = SimpleNamespace(rest_client=Rest())
    seen: list[tuple[str, str, str]] = []
    count_requests(api, lambda method, resource, code, seconds: seen.append((method, resource, code)))  # type: ignore[arg-type]
    base = "https://h/api/v1/namespaces/ml/services"
    api.rest_client.request("GET", f"{base}/fraud")
    with pytest.raises(ApiException):
        api.rest_client.request("GET", f"{base}/missing")
    with pytest.raises(ConnectionError):
        api.rest_client.request("GET", f"{base}/down")
    assert seen == [("GET", "services", "200"), ("GET", "services", "404"), ("GET", "services", "error")]


def test_drift_gauges_follow_the_condition_and_the_judged_features(tm: Telemetry) -> None:
    drift_result = {"name": "drift", "value": 0.41, "verdict": "Fail", "features": [
        {"name": "amount", "psi": 0.41, "pValue": 1e-30, "samples": 5000, "drifted": True},
        {"name": "_prediction_score", "psi": 0.02, "pValue": 0.3, "samples": 5000, "drifted": False}]}  # fmt: skip
    drifted = {
        "type": "Drifted",
        "status": "True",
        "reason": "DriftDetected",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    st = status(phase="Succeeded", conditions=[drifted], lastAnalysis={"revision": "r1", "metrics": [drift_result]})
    tm.observe_status(NS, NAME, st)
    assert sample(tm, "modelrollout_drifted", namespace=NS, name=NAME) == 1
    psi = "modelrollout_drift_psi"
    assert sample(tm, psi, namespace=NS, name=NAME, gate="drift", feature="amount") == 0.41
    assert sample(tm, psi, namespace=NS, name=NAME, gate="drift", feature="_prediction_score") == 0.02
    tm.observe_status(
        NS, NAME, status(phase="Succeeded", conditions=[{**drifted, "status": "False"}], lastAnalysis=None)
    )
    assert sample(tm, "modelrollout_drifted", namespace=NS, name=NAME) == 0
    assert sample(tm, psi, namespace=NS, name=NAME, gate="drift", feature="amount") is None


def test_garbage_collections_are_timed_by_generation() -> None:
    import gc

    from prometheus_client import CollectorRegistry

    metrics = Telemetry(CollectorRegistry(), process_metrics=False)
    metrics.watch_gc_pauses()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        gc.callbacks.pop()
    count = metrics.registry.get_sample_value
    assert count("modelrollout_gc_pause_seconds_count", {"generation": "2"}) >= 1
    assert count("modelrollout_gc_pause_seconds_count", {"generation": "0"}) >= 1
    assert 0 < count("modelrollout_gc_pause_seconds_sum", {"generation": "2"}) < 5
