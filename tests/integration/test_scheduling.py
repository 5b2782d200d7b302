"""The operator's scheduling and high availability against the real API server (kwok runs the pods):
one ModelDeployment whose Prometheus hangs delays no other, and a standby replica finishes the
rollout of a leader killed mid-rollout (the takeover time is printed and quoted in
docs/operations.md)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from hack.loopback.cluster import Cluster, OperatorProcess, wait_until
from hack.loopback.hanging import HangingPrometheus
from tests.integration.test_operator import events, manifest, mdep, wait_phase

pytestmark = pytest.mark.cluster

LEASE = "modelrollout-test-leader"


@contextlib.contextmanager
def operators(cluster: Cluster, *args_each: list[str]) -> Iterator[list[OperatorProcess]]:
    procs = [OperatorProcess(cluster, extra_args=args) for args in args_each]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def check_times(cluster: Cluster, ns: str, name: str, seconds: float) -> list[float]:
    """The distinct ``status.lastCheckAt`` values seen while polling for ``seconds``."""
    seen: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        at = (mdep(cluster, ns, name).get("status") or {}).get("lastCheckAt")
        if at:
            stamp = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            if not seen or stamp != seen[-1]:
                seen.append(stamp)
        time.sleep(0.2)
    return seen


def test_a_hanging_prometheus_delays_no_other_object(cluster: Cluster, namespace: str, alone: None) -> None:
    """``slow`` is watched continuously through a Prometheus that never answers (each check blocks
    for its 20 s timeout); ``fast`` checks every 2 s. With two workers, ``fast``'s checks keep their
    interval. (The global ticker this replaced checked every object in turn: one hanging check
    delayed every other object by its whole timeout.)"""
    with HangingPrometheus() as prometheus, operators(cluster, ["--workers=2"]):
        watch = {
            "interval": "2s",
            "prometheus": {"address": prometheus.address, "timeoutSeconds": 20},
            "metrics": [{"name": "error-rate", "max": 0.1}],
            "continuous": {"window": "1m"},
        }
        cluster.apply(manifest("slow", analysis=watch), namespace)
        wait_phase(cluster, namespace, "Succeeded", name="slow")
        # fast: a canary walking long steps with checks every 2 s and no gate to query
        cluster.apply(manifest("fast"), namespace)
        wait_phase(cluster, namespace, "Succeeded", name="fast")
        long_steps = {"canary": {"steps": [50, 100], "stepDuration": "60s"}}
        cluster.apply(
            manifest("fast", uri="https://models.example.com/b.onnx", strategy=long_steps, analysis={"interval": "2s"}),
            namespace,
        )
        wait_until(
            lambda: mdep(cluster, namespace, "fast")["status"].get("canaryWeight") == 50, 30, what="fast at 50 %"
        )
        times = check_times(cluster, namespace, "fast", 12)
        assert prometheus.held, "slow's checks never reached its Prometheus: this test would prove nothing"
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
    print(f"\nfast's check intervals while slow's Prometheus hangs: {gaps}")
    assert len(gaps) >= 4, gaps
    assert max(gaps) <= 3.0, f"a check of fast waited behind slow's hanging Prometheus: {gaps}"


def lease_holder(cluster: Cluster, ns: str) -> str | None:
    lease = cluster.get("lease", LEASE, ns)
    return None if lease is None else lease["spec"].get("holderIdentity")


def test_the_standby_takes_over_a_killed_leaders_rollout(cluster: Cluster, namespace: str, alone: None) -> None:
    """Two replicas elect a leader on a Lease; the leader is SIGKILLed mid-rollout; the standby takes
    the Lease once it has expired and finishes the rollout with no transition lost or repeated."""
    election = ["--leader-elect", f"--leader-elect-namespace={namespace}", f"--leader-elect-name={LEASE}",
                "--lease-duration=4", "--renew-deadline=3", "--retry-period=0.5"]  # fmt: skip
    with operators(cluster, [*election, "--leader-elect-identity=a"]) as (a,):
        wait_until(lambda: lease_holder(cluster, namespace) == "a", 20, what="a holds the Lease")
        with operators(cluster, [*election, "--leader-elect-identity=b"]):
            cluster.apply(manifest(), namespace)
            rev1 = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
            steps = {"canary": {"steps": [25, 50, 100], "stepDuration": "4s"}}
            cluster.apply(manifest(uri="https://models.example.com/c.onnx", strategy=steps), namespace)
            wait_until(lambda: mdep(cluster, namespace)["status"].get("canaryWeight") == 25, 30, what="first step")
            a.kill()
            killed = time.monotonic()
            held: dict[str, Any] = mdep(cluster, namespace)["status"]
            wait_until(lambda: lease_holder(cluster, namespace) == "b", 20, what="b takes the Lease")
            takeover = time.monotonic() - killed
            done = wait_phase(cluster, namespace, "Succeeded", timeout=60)
    print(f"\nleader SIGKILLed at the 25 % step: standby took the Lease after {takeover:.1f} s "
          f"(lease duration 4 s, retry period 0.5 s)")  # fmt: skip
    assert 3.5 <= takeover <= 8, takeover  # not before the lease expired; soon after it did
    rev2 = done["status"]["stableRevision"]
    assert rev2 == held["canaryRevision"] and rev2 != rev1
    assert [h["revision"] for h in done["status"]["history"]] == [rev1, rev2]
    assert [h["phase"] for h in done["status"]["history"]] == ["Superseded", "Succeeded"]
    reasons = [e["reason"] for e in events(cluster, namespace) for _ in range(e.get("count", 1))]
    assert reasons.count("RevisionCreated") == 2, "the new leader must not start the rollout again"
    assert reasons.count("Promoted") == 1, reasons
    # Every step exactly once, whichever replica entered it.
    assert reasons.count("StepStarted") == 3, reasons


def test_a_leader_that_stops_cleanly_hands_over_within_one_retry(cluster: Cluster, namespace: str, alone: None) -> None:
    """A rolling update stops the old pod with SIGTERM: it releases the Lease on its way out, so the
    standby takes over at its next retry instead of waiting out the lease duration."""
    election = ["--leader-elect", f"--leader-elect-namespace={namespace}", f"--leader-elect-name={LEASE}",
                "--lease-duration=15", "--renew-deadline=10", "--retry-period=0.5"]  # fmt: skip
    with operators(cluster, [*election, "--leader-elect-identity=a"]) as (a,):
        wait_until(lambda: lease_holder(cluster, namespace) == "a", 20, what="a holds the Lease")
        with operators(cluster, [*election, "--leader-elect-identity=b"]):
            stopped = time.monotonic()
            a.stop()
            wait_until(lambda: lease_holder(cluster, namespace) == "b", 10, what="b takes the released Lease")
            handover = time.monotonic() - stopped
            cluster.apply(manifest(), namespace)
            wait_phase(cluster, namespace, "Succeeded")  # the new leader reconciles
    print(f"\nleader stopped with SIGTERM: standby took the Lease after {handover:.1f} s (lease duration 15 s)")
    assert handover < 5, handover
