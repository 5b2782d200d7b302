"""Gates end to end: a real Prometheus scraping real model servers, judged by ``run_analysis``.

One module-scoped fleet: Prometheus (1 s scrapes, file_sd targets labelled ``namespace``/``pod``)
and one model-server process per revision — the stable ``r1`` (baseline model) and canaries serving
the same model, a better one, a less accurate one, one that answers 500 on a quarter of the rows,
a slow one, and one that gets no traffic. A bounded labelled traffic run with ground-truth feedback
gives every busy revision a few hundred requests; then each scenario asks ``run_analysis`` for a
verdict exactly as the operator would (same spec, status with the evidence period starting before
the traffic), with no mocks in between: the counts come from ``increase()`` over that period.

Prometheus outages use a Prometheus of their own: stopped (connection refused) and paused with
SIGSTOP (the socket accepts, nothing answers: a timeout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from modelrollout.analysis import run_analysis
from modelrollout.api.types import (
    AnalysisResult,
    MetricResult,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from modelrollout.metrics.connection import CredentialsError, PrometheusConnection, from_spec
from modelrollout.metrics.provider import open_provider
from modelrollout.metrics.templates import min_window_seconds

from hack.loopback import ModelServer, Prometheus, TrafficResult, TrafficSender
from hack.loopback.authproxy import BearerProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NAMESPACE = "gates-e2e"
NAME = "fraud"
STABLE = "r1"
FAST = {"r1": "baseline", "r2-same": "baseline", "r2-better": "better", "r2-worse": "worse", "r2-broken": "broken"}
SLOW = {"r2-slow": "slow"}
QUIET = {"r2-quiet": "baseline"}
REQUESTS_PER_FAST_REVISION = 500
SLOW_REQUESTS = 80
INTERVAL = "2m"  # the custom gates' window: covers the whole traffic run with room to spare

# Thresholds a few hundred samples can decide either way (gates.md: "How long it takes").
GATES: list[dict[str, Any]] = [
    {"name": "error-rate", "max": 0.1, "maxRiseVsStable": 0.05, "minSamples": 100},
    {"name": "latency-p99", "max": 100, "maxRiseVsStable": 50, "minSamples": 50},
    {"name": "accuracy", "min": 0.7, "maxDropVsStable": 0.15, "minSamples": 100},
]


@dataclass
class Fleet:
    prometheus: Prometheus
    servers: dict[str, ModelServer]
    fast: TrafficResult
    slow: TrafficResult
    fast_ended: float  # time.time() when the fast revisions' last request was answered


def make_spec(
    address: str, metrics: list[dict[str, Any]] | None = None, timeout: int = 5, **credentials: Any
) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": NAME, "uri": "file:///models/fraud.onnx"},
            "traffic": {"none": {}},
            "analysis": {
                "interval": INTERVAL,
                "prometheus": {"address": address, "timeoutSeconds": timeout, **credentials},
                "significance": 0.05,
                "metrics": GATES if metrics is None else metrics,
            },
        }
    )


SINCE = datetime.now(UTC) - timedelta(minutes=1)  # before the fleet starts: covers all of its traffic


class SecretStore(dict[str, dict[str, bytes]]):
    """Secrets of the namespace, by name, as the operator's Secret reader answers them."""

    def read(self, namespace: str, name: str) -> dict[str, bytes]:
        if name not in self:
            raise CredentialsError(f"Secret {namespace}/{name} not found")
        return self[name]


SECRETS = SecretStore()
TOKEN = "tok-" + "7" * 40
BEARER = {"authorization": {"credentials": {"name": "prom-token", "key": "token"}}}


def canary_status(canary: str, since: datetime = SINCE) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(
        phase="Progressing", stableRevision=STABLE, canaryRevision=canary, currentStep=1, evidenceSince=since
    )


def analyse(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, revision: str) -> AnalysisResult:
    started = time.monotonic()
    assert spec.analysis.prometheus is not None
    connection: PrometheusConnection | CredentialsError
    try:  # as the operator resolves it (handlers._prometheus)
        connection = from_spec(spec.analysis.prometheus, NAMESPACE, SECRETS.read)
    except CredentialsError as exc:
        connection = exc
    with open_provider(connection) as provider:
        result = run_analysis(spec, status, revision, NAMESPACE, NAME, datetime.now(UTC), provider=provider)
    print(f"\n{revision}: {result.verdict} in {time.monotonic() - started:.3f}s")
    for m in result.metrics:
        print(f"  {m.name}: {m.reason} value={m.value} stable={m.stableValue} n={m.samples} | {m.message}")
    return result


def gate(result: AnalysisResult, name: str) -> MetricResult:
    return next(m for m in result.metrics if m.name == name)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("gates")
    revisions = {**FAST, **SLOW, **QUIET}
    servers = {rev: ModelServer(model, revision=rev, workdir=workdir) for rev, model in revisions.items()}
    prometheus = Prometheus(workdir / "prometheus", scrape_interval=1.0)
    # Targets are known before anything runs (ports are picked up front), so the first discovery has them.
    prometheus.set_targets(server.target(NAMESPACE, f"{NAME}-{rev}-0") for rev, server in servers.items())
    with contextlib.ExitStack() as stack:
        for server in servers.values():  # launch all first: imports overlap on two cores
            stack.callback(server.stop)
            server.launch()
        stack.callback(prometheus.stop)
        prometheus.start()
        for server in servers.values():
            server.wait_ready(timeout=90)
        prometheus.wait_targets_up(timeout=30)

        fast = TrafficSender({rev: servers[rev].url for rev in FAST}, seed=11).run(
            max_requests=REQUESTS_PER_FAST_REVISION * len(FAST), max_seconds=120
        )
        fast_ended = time.time()
        slow = TrafficSender({rev: servers[rev].url for rev in SLOW}, seed=12).run(
            max_requests=SLOW_REQUESTS, max_seconds=30
        )
        print(f"\ntraffic: fast {fast.seconds:.1f}s {dict(fast.requests)}, slow {slow.seconds:.1f}s")
        prometheus.wait_fresh_scrape(timeout=15)
        yield Fleet(prometheus, servers, fast, slow, fast_ended)


@pytest.fixture
def lone_prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """A Prometheus of the test's own, to stop or pause without disturbing the fleet's."""
    with Prometheus(tmp_path / "prometheus") as prometheus:
        yield prometheus


def test_traffic_reached_every_busy_revision(fleet: Fleet) -> None:
    for rev in FAST:
        assert fleet.fast.requests[rev] == REQUESTS_PER_FAST_REVISION
        assert not fleet.fast.transport_errors[rev]
    assert fleet.fast.errors("r2-broken") > 0.1 * REQUESTS_PER_FAST_REVISION  # the NaN rows answer 500
    assert fleet.fast.errors("r1") == 0
    assert fleet.fast.feedback["r1"] == REQUESTS_PER_FAST_REVISION
    assert fleet.slow.requests["r2-slow"] == SLOW_REQUESTS


@pytest.mark.parametrize("canary", ["r2-same", "r2-better"])
def test_good_canary_is_shown_within_every_threshold(fleet: Fleet, canary: str) -> None:
    result = analyse(make_spec(fleet.prometheus.url), canary_status(canary), canary)
    assert result.verdict == "Pass", result
    assert result.baselineRevision == STABLE
    for m in result.metrics:
        assert m.reason == "Passed"
        assert m.samples is not None and m.samples >= 200
        assert m.stableValue is not None
    errors = gate(result, "error-rate")
    assert (errors.value, errors.events, errors.stableEvents) == (0.0, 0, 0)
    # increase() extrapolates the samples' span to the window's edges, by up to about 1.5 scrape
    # intervals: over the ~15-25 s these series exist at a 1 s scrape that is up to ~10 % more
    # than was sent (516 and 530 for 500 on a fast machine, where that span is shortest).
    assert errors.samples == pytest.approx(REQUESTS_PER_FAST_REVISION, rel=0.1)
    accuracy = gate(result, "accuracy")
    assert accuracy.value is not None and 0.7 < accuracy.value < 1.0
    assert accuracy.stableSamples is not None and accuracy.stableSamples >= 200
    assert "drop vs stable 0.15: met" in accuracy.message


def test_less_accurate_canary_fails_by_accuracy(fleet: Fleet) -> None:
    result = analyse(make_spec(fleet.prometheus.url), canary_status("r2-worse"), "r2-worse")
    assert result.verdict == "Fail"
    accuracy = gate(result, "accuracy")
    assert accuracy.reason == "Failed"
    assert accuracy.value is not None and accuracy.stableValue is not None
    assert accuracy.stableValue - accuracy.value > 0.15
    assert "min 0.7: breached" in accuracy.message  # 0.6 on 250 labels: shown below 0.7
    assert gate(result, "error-rate").verdict == "Pass"
    assert gate(result, "latency-p99").verdict == "Pass"


def test_failing_canary_fails_by_error_rate(fleet: Fleet) -> None:
    result = analyse(make_spec(fleet.prometheus.url), canary_status("r2-broken"), "r2-broken")
    assert result.verdict == "Fail"
    errors = gate(result, "error-rate")
    assert errors.reason == "Failed"
    assert errors.value is not None and errors.value > 0.1
    assert errors.stableValue == 0.0
    assert "max 0.1: breached" in errors.message
    assert "rise vs stable 0.05: breached" in errors.message
    assert gate(result, "latency-p99").verdict == "Pass"


def test_slow_canary_fails_by_latency(fleet: Fleet) -> None:
    result = analyse(make_spec(fleet.prometheus.url), canary_status("r2-slow"), "r2-slow")
    assert result.verdict == "Fail"
    latency = gate(result, "latency-p99")
    assert latency.verdict == "Fail"
    assert latency.value is not None
    assert latency.stableValue is not None
    # ~75 ms per call lands in the 50-100 ms histogram bucket, so the interpolated p99 can sit just under
    # the 100 ms max; the rise over stable (> 50 ms) fails the gate either way.
    assert latency.value > 50 > latency.stableValue
    assert "ms" in latency.message
    # 80 slow requests are below the 100-sample guard of the accuracy gate: waiting, not a pass.
    assert gate(result, "accuracy").reason == "InsufficientSamples"


@pytest.mark.parametrize("canary", ["r2-quiet", "r2-never-deployed"])
def test_canary_without_traffic_waits_for_samples(fleet: Fleet, canary: str) -> None:
    result = analyse(make_spec(fleet.prometheus.url), canary_status(canary), canary)
    assert result.verdict == "Inconclusive"
    for name in ("error-rate", "accuracy"):
        m = gate(result, name)
        assert m.reason == "InsufficientSamples" and m.samples == 0
        assert "no samples" in m.message
    assert gate(result, "latency-p99").reason == "NoData"  # a plain gate without data is blind


def test_the_evidence_period_decides_what_is_counted(fleet: Fleet) -> None:
    """Counted from evidenceSince: a period that starts after the traffic holds no samples.

    A query window is never shorter than min_window_seconds(), so the period must start that long
    after the traffic (the slow revisions' traffic after it took 5 to 10 s, depending on the machine)."""
    time.sleep(max(0.0, fleet.fast_ended + min_window_seconds() + 2 - time.time()))
    later = canary_status("r2-worse", since=datetime.now(UTC) - timedelta(seconds=1))
    result = analyse(make_spec(fleet.prometheus.url), later, "r2-worse")
    assert gate(result, "accuracy").reason == "InsufficientSamples"
    assert result.since == later.evidenceSince


def test_custom_gates_on_real_prometheus(fleet: Fleet) -> None:
    served = (
        'sum(rate(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", '
        'endpoint="infer", code="2xx"}[{{interval}}]))'
    )
    ratio_to_stable = (
        'sum(increase(modelserver_predictions_total{namespace="{{namespace}}", revision="{{revision}}"}[{{interval}}]))'
        ' / sum(increase(modelserver_predictions_total{namespace="{{namespace}}", '
        'revision="{{stableRevision}}"}[{{interval}}]))'
    )
    metrics = [
        {"name": "served-rps", "template": "custom", "query": served, "min": 0.5, "maxDropVsStable": 1},
        {"name": "rows-vs-stable", "template": "custom", "query": ratio_to_stable, "min": 0.9, "max": 1.1},
        {"name": "per-pod", "template": "custom", "query": "modelserver_ready", "max": 1},
        {"name": "typo", "template": "custom", "query": "sum(rate(modelserver_requests_total[1m]", "max": 1},
    ]
    result = analyse(make_spec(fleet.prometheus.url, metrics), canary_status("r2-same"), "r2-same")
    assert gate(result, "served-rps").verdict == "Pass"
    assert gate(result, "served-rps").stableValue is not None
    assert gate(result, "rows-vs-stable").verdict == "Pass"
    per_pod = gate(result, "per-pod")
    assert per_pod.reason == "QueryError"
    assert "series" in per_pod.message
    assert "sum(...)" in per_pod.message
    typo = gate(result, "typo")
    assert typo.reason == "QueryError"
    assert "parse error" in typo.message
    assert result.verdict == "Inconclusive"


def test_bake_compares_with_the_previous_stable_over_the_same_period(fleet: Fleet) -> None:
    spec = make_spec(fleet.prometheus.url, [GATES[2]])
    # After promotion the new revision is the stable one; r1, the previous stable, is the baseline.
    for promoted, expected in (("r2-better", "Pass"), ("r2-worse", "Fail")):
        baking = ModelDeploymentStatus(
            phase="Baking", stableRevision=promoted, previousStableRevision=STABLE, evidenceSince=SINCE
        )
        result = analyse(spec, baking, promoted)
        assert result.baselineRevision == STABLE
        assert result.verdict == expected, result


def test_gates_reach_a_prometheus_behind_a_bearer_token(fleet: Fleet) -> None:
    """The token comes from the Secret the spec names; the verdict is the one without a proxy."""
    SECRETS["prom-token"] = {
        "token": f"{TOKEN}\n".encode()
    }  # a trailing newline, as `kubectl create secret --from-file` keeps it
    with BearerProxy(fleet.prometheus.url, TOKEN) as proxy:
        result = analyse(make_spec(proxy.url, **BEARER), canary_status("r2-broken"), "r2-broken")
        assert proxy.forwarded >= 3 and proxy.refused == 0
    assert gate(result, "error-rate").reason == "Failed"
    assert gate(result, "latency-p99").verdict == "Pass"


def test_a_wrong_token_makes_the_gates_blind_with_the_reason(fleet: Fleet) -> None:
    SECRETS["prom-token"] = {"token": b"an-old-token"}
    with BearerProxy(fleet.prometheus.url, TOKEN) as proxy:
        url = proxy.url
        result = analyse(make_spec(url, **BEARER), canary_status("r2-broken"), "r2-broken")
        assert proxy.refused == 1  # the circuit breaker: refused credentials are not tried again this check
    assert result.verdict == "Inconclusive"
    for m in result.metrics:
        assert m.reason == "QueryError"
        assert f"Prometheus at {url} refused the credentials (HTTP 401: Unauthorized)" in m.message
        assert "an-old-token" not in m.message and TOKEN not in m.message


def test_a_missing_secret_key_is_named_with_its_field(fleet: Fleet) -> None:
    SECRETS["prom-token"] = {"password": b"x"}
    result = analyse(make_spec(fleet.prometheus.url, **BEARER), canary_status("r2-same"), "r2-same")
    assert result.verdict == "Inconclusive"
    for m in result.metrics:
        assert m.reason == "QueryError"
        assert (
            f"Prometheus credentials: Secret {NAMESPACE}/prom-token has no key 'token' "
            "(spec.analysis.prometheus.authorization.credentials.key); keys present: password"
        ) in m.message


def test_stopped_prometheus_is_blind(lone_prometheus: Prometheus) -> None:
    address = lone_prometheus.url
    lone_prometheus.stop()
    started = time.monotonic()
    result = analyse(make_spec(address), canary_status("r2-same"), "r2-same")
    assert time.monotonic() - started < 2.0
    assert result.verdict == "Inconclusive"
    for m in result.metrics:
        assert m.reason == "QueryError"
        assert "connection refused" in m.message


def test_hung_prometheus_times_out_blind(lone_prometheus: Prometheus) -> None:
    lone_prometheus.pause()
    try:
        started = time.monotonic()
        result = analyse(make_spec(lone_prometheus.url, timeout=1), canary_status("r2-same"), "r2-same")
        elapsed = time.monotonic() - started
    finally:
        lone_prometheus.resume()
    # One query waits out the timeout; the rest of the check is skipped at once (circuit breaker).
    assert 1.0 <= elapsed < 3.0
    assert result.verdict == "Inconclusive"
    for m in result.metrics:
        assert m.reason == "QueryError"
        assert "did not answer within 1s" in m.message
