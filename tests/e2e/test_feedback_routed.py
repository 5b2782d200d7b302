"""Feedback through the routed path, two pods per revision: the accuracy gate still tells models apart.

Everything is real (operator, API server, kwok, a model-server process per pod with the key Secret
the operator created mounted as kubelet would, Prometheus, the route-following gateway). The
difference from test_rollouts.py: ``replicas: 2``, and every label goes through the gateway like
the predictions do — to a random ready pod of a revision picked by the route's weights, so most
labels land on a pod (often of another revision) that never saw the prediction — and a fifth of
them 20 s late, some after the pod that predicted was deleted. The labels carry the prediction
token; the test shows that >= 95 % of them are counted, for the revision that made the prediction,
and that the accuracy gate promotes the better model and rolls back the worse one
(GateFailedAccuracy). Gate statistics are the lead's to tune: only the outcome is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hack.loopback.cluster import TESTENV, Cluster, wait_until
from hack.loopback.traffic import TrafficResult, TrafficSender
from hack.loopback.world import LocalWorld, local_world, model_spec, serving_spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
RATE = 40
REPLICAS = 2
DELAY_FRACTION = 0.2
DELAY_SECONDS = 20.0


def spec(model: str, prometheus: str) -> dict[str, Any]:
    return {
        "model": model_spec(model),
        "serving": serving_spec(replicas=REPLICAS),
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        # Pods go 2 s after their weight (not the default 30 s): the test is about labels that outlive
        # their predicting pod, sent up to DELAY_SECONDS (20 s) after the prediction.
        "strategy": {"canary": {"steps": [20, 50, 100], "stepDuration": "5s", "scaleDownDelay": "2s"}},
        "analysis": {
            "interval": "3s",
            "prometheus": {"address": prometheus, "timeoutSeconds": 2},
            "failureLimit": 1,
            "inconclusiveLimit": 10,
            "metrics": [
                {"name": "accuracy", "min": 0.7, "maxDropVsStable": 0.08, "minSamples": 15},
                {"name": "error-rate", "max": 0.05, "minSamples": 10},
            ],
        },
        "bake": {"duration": "0s"},
        "progressDeadlineSeconds": 60,
    }


@dataclass
class Routed:
    cluster: Cluster
    namespace: str
    world: LocalWorld

    def apply(self, model: str) -> None:
        manifest = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": "fraud"}, "spec": spec(model, self.world.prometheus.url)}  # fmt: skip
        self.cluster.apply(manifest, self.namespace)

    def status(self) -> dict[str, Any]:
        return (self.cluster.get("mdep", "fraud", self.namespace) or {}).get("status", {})

    def settled(self, phase: str, stable: str | None = None, timeout: float = 300) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status()
            ok = st.get("phase") == phase and (stable is None or st.get("stableRevision") == stable)
            return st if ok else None

        return wait_until(check, timeout, interval=0.5, what=f"phase {phase} with stable {stable}")

    def new_canary(self, not_this: str | None = None) -> str:
        def check() -> str | None:
            rev = self.status().get("canaryRevision")
            return rev if rev and rev != not_this else None

        return wait_until(check, 60, what="a new canary revision")

    def ready_pods(self, revision: str) -> int:
        return len(self.world.runner.by_revision().get(revision, []))

    def counted(self, by: str = "") -> list[dict[str, Any]]:
        """Labels counted by every pod that ever served (each pod's counter starts at 0)."""
        group = f" by ({by})" if by else ""
        window = "30m"
        return self.world.prometheus.query(
            f'sum{group} (last_over_time(modelserver_feedback_total{{namespace="{self.namespace}"}}[{window}]))'
        )


@pytest.fixture
def routed(cluster, operator, upstream_crds, api, namespace, tmp_path) -> Iterator[Routed]:
    with local_world(api, namespace, tmp_path, TESTENV / "e2e-logs" / namespace) as lw:
        yield Routed(cluster, namespace, lw)
        unready = lw.gateway.stats.unready
        assert not unready, f"requests routed to revisions with no ready pod: {unready}"


def test_routed_feedback_with_two_replicas_promotes_better_and_rolls_back_worse(routed: Routed) -> None:
    stats = routed.world.gateway.stats
    routed.apply("baseline")
    baseline = routed.settled("Succeeded")["stableRevision"]
    wait_until(lambda: routed.ready_pods(baseline) == REPLICAS, 60, what="two baseline pods ready")
    sender = TrafficSender({"gw": routed.world.gateway.url}, seed=7, concurrency=4, delay_fraction=DELAY_FRACTION,
                           delay_seconds=DELAY_SECONDS)  # fmt: skip
    sender.start(max_requests=RATE * 600, max_seconds=600, rate=RATE)
    try:
        wait_until(lambda: stats.routed[baseline] > 100, 30, what="traffic on the baseline revision")

        routed.apply("better")
        better = routed.new_canary()
        wait_until(lambda: routed.ready_pods(better) == REPLICAS, 90, what="two canary pods ready")
        promoted = routed.settled("Succeeded", stable=better)
        assert better not in promoted.get("failedRevisions", [])
        wait_until(lambda: routed.ready_pods(baseline) == 0, 60, what="baseline pods deleted after promotion")

        routed.apply("worse")
        worse = routed.new_canary(not_this=better)
        rolled_back = routed.settled("RolledBack", stable=better)
        degraded = next(c for c in rolled_back["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "GateFailedAccuracy", degraded
        assert worse in rolled_back["failedRevisions"]
        wait_until(lambda: routed.ready_pods(worse) == 0, 60, what="worse pods deleted after the rollback")
    finally:
        result = sender.drain(timeout=DELAY_SECONDS + 30)
    assert_labels_counted(routed, result, revisions=(baseline, better, worse))


def assert_labels_counted(routed: Routed, result: TrafficResult, revisions: tuple[str, ...]) -> None:
    """>= 95 % of the labels sent are counted, spread across pods and revisions, late ones included."""
    stats, runner = routed.world.gateway.stats, routed.world.runner
    assert result.labels_sent > 500 and result.delayed_dropped == 0, result
    assert result.with_token == sum(result.feedback_codes.values()), "every answer carried a token"
    # Some held-back labels left after the pod that made their prediction had been deleted.
    after_deletion = [
        rid for rid, sent in result.delayed_sent
        if (pod := stats.answered_by.get(rid)) is not None and runner.deleted_at.get(pod, float("inf")) < sent
    ]  # fmt: skip
    assert len(after_deletion) >= 10, f"only {len(after_deletion)} labels were sent after their pod was deleted"

    routed.world.prometheus.wait_fresh_scrape()
    counted = float(routed.counted()[0]["value"][1])
    print(
        f"\nrouted feedback: {result.labels_sent} labels sent, {counted:.0f} counted "
        f"({counted / result.labels_sent:.1%}); {len(result.delayed_sent)} sent {DELAY_SECONDS:.0f} s late, "
        f"{len(after_deletion)} after their predicting pod was deleted; answers {dict(result.feedback_codes)}"
    )
    assert 0.95 * result.labels_sent <= counted <= result.labels_sent, (counted, result.labels_sent, result)
    # Labels reached pods of other revisions and were still counted for the predicting revision.
    cells = {
        (r["metric"]["revision"], r["metric"]["modelrollout_revision"]): float(r["value"][1])
        for r in routed.counted("revision, modelrollout_revision")
    }
    for revision in revisions:
        own = cells.get((revision, revision), 0.0)
        elsewhere = sum(v for (rev, pod_rev), v in cells.items() if rev == revision and pod_rev != revision)
        assert own > 0 and elsewhere > 0, (revision, cells)
    assert not {rev for rev, _ in cells} - set(revisions), cells
