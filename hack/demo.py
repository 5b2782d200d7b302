"""`make demo`: the whole thing, live, on a laptop without Docker.

The local control plane (hack/cluster-up.sh), the operator, a real Prometheus, real model servers
for every pod the operator creates, a loopback gateway that follows the HTTPRoute weights the
operator writes, and labelled traffic with ground-truth feedback. Then two rollouts:

1. baseline -> better: promoted step by step while every gate passes;
2. better -> worse: the accuracy gate fails and the operator rolls back on its own.

Weights and gate values are printed as they change; a summary closes the run. With CI=true it exits
0 at the end; otherwise it keeps the cluster up for you to explore (`make cluster-down` stops it).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import config  # noqa: E402

from hack.loopback.cluster import BIN, TESTENV, Cluster, OperatorProcess, reachable  # noqa: E402
from hack.loopback.traffic import TrafficSender  # noqa: E402
from hack.loopback.world import local_world, model_spec, serving_spec  # noqa: E402

NS = "demo"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def manifest(model: str, prometheus: str) -> dict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec(model),
            "serving": serving_spec(),
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "public-gw"}], "hostnames": ["fraud.example.com"]}},
            "strategy": {"canary": {"steps": [20, 50, 100], "stepDuration": "6s"}},
            "analysis": {
                "interval": "3s",
                "prometheus": {"address": prometheus, "timeoutSeconds": 2},
                "failureLimit": 1,
                "inconclusiveLimit": 6,
                "metrics": [
                    {"name": "error-rate", "max": 0.02, "minSamples": 10},
                    {"name": "client-error-rate", "maxRiseVsStable": 0.05, "minSamples": 10},
                    {"name": "latency", "template": "slow-requests", "slowerThanMs": 50, "max": 0.1, "minSamples": 10},
                    {"name": "accuracy", "min": 0.75, "maxDropVsStable": 0.05, "minSamples": 15},
                ],
            },
            "bake": {"duration": "0s"},
            "progressDeadlineSeconds": 60,
        },
    }


def status(cluster: Cluster, namespace: str = NS) -> dict:
    """The status, once the operator has seen the current spec (empty before that)."""
    obj = cluster.get("mdep", "fraud", namespace) or {}
    st = obj.get("status", {})
    return st if st.get("observedGeneration") == obj.get("metadata", {}).get("generation") else {}


def describe(st: dict) -> str:
    line = f"{st.get('phase')}: stable={st.get('stableRevision')} canary={st.get('canaryRevision') or '-'}"
    line += f" weight={st.get('canaryWeight', 0)}%"
    gates = (st.get("lastAnalysis") or {}).get("metrics") or []
    if gates and st.get("canaryRevision"):
        parts = []
        for m in gates:
            value = "n/a" if m.get("value") is None else f"{m['value']:.3g}"
            if m.get("events") is not None and m.get("samples"):
                value += f" ({m['events']}/{m['samples']})"
            stable = "" if m.get("stableValue") is None else f" vs {m['stableValue']:.3g}"
            parts.append(f"{m['name']}={value}{stable} {m.get('reason') or m['verdict']}")
        line += " | " + ", ".join(parts)
    return line


def follow(cluster: Cluster, until: set[str], timeout: float) -> dict:
    """Print every change of the rollout until its phase is in ``until``."""
    last, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(cluster)
        if not st:
            time.sleep(0.2)
            continue
        text = describe(st)
        if text != last:
            say(text)
            last = text
        if st.get("phase") in until and not st.get("canaryRevision"):
            return st
        time.sleep(0.5)
    raise SystemExit(f"demo: rollout did not finish within {timeout}s")


def control_plane(namespace: str) -> tuple[Cluster, bool]:
    """The local control plane with the CRDs, and a fresh ``namespace``; whether this call started it."""
    cluster = Cluster(TESTENV / "kubeconfig")
    started_cluster = not reachable(cluster.kubeconfig)
    subprocess.run(["bash", str(REPO / "hack/cluster-up.sh")], check=True)
    crd_dirs = subprocess.run(["bash", str(REPO / "hack/fetch-crds.sh")], check=True, capture_output=True, text=True)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crd_dirs.stdout.split()[0])
    cluster.wait_established("modeldeployments.modelrollout.io", "httproutes.gateway.networking.k8s.io")
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=60s")
    cluster.kubectl("create", "namespace", namespace)
    return cluster, started_cluster


def finish(cluster: Cluster, started_cluster: bool, namespace: str) -> None:
    """With CI=true, stop a control plane this run started; otherwise leave it up to explore."""
    if os.environ.get("CI") == "true" and started_cluster:
        subprocess.run(["bash", str(REPO / "hack/cluster-down.sh")], check=False)
    elif os.environ.get("CI") != "true":
        say(f'cluster stays up: eval "$(make -s env)"; {BIN}/kubectl get mdep -n {namespace}; make cluster-down')


def main() -> int:
    cluster, started_cluster = control_plane(NS)
    api = config.new_client_from_config(str(cluster.kubeconfig))
    summary: list[str] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelrollout-demo-")))
        operator = OperatorProcess(cluster, extra_env={"MODELROLLOUT_TICK_SECONDS": "1"})
        operator.start()
        stack.callback(operator.stop)
        lw = stack.enter_context(local_world(api, NS, work, TESTENV / "demo-logs"))
        prometheus, gateway = lw.prometheus, lw.gateway
        say(f"operator pid {operator.proc.pid}, Prometheus {prometheus.url}, gateway {gateway.url}")

        say("1/3 first revision: baseline model")
        cluster.apply(manifest("baseline", prometheus.url), NS)
        first = follow(cluster, {"Succeeded"}, 120)
        sender = TrafficSender({"gw": gateway.url}, concurrency=2)
        sender.start(max_requests=50 * 600, max_seconds=600, rate=50)
        stack.callback(sender.stop)
        time.sleep(8)

        say("2/3 rolling out the better model: every gate must pass at every step")
        cluster.apply(manifest("better", prometheus.url), NS)
        second = follow(cluster, {"Succeeded", "RolledBack"}, 240)
        summary.append(f"better: {second['phase']} (stable {first['stableRevision']} -> {second['stableRevision']})")
        time.sleep(6)

        say("3/3 rolling out the worse model: the accuracy gate should send it back")
        cluster.apply(manifest("worse", prometheus.url), NS)
        started = time.monotonic()
        third = follow(cluster, {"Succeeded", "RolledBack"}, 240)
        degraded = next(c for c in third["conditions"] if c["type"] == "Degraded")
        summary.append(f"worse: {third['phase']} after {time.monotonic() - started:.0f}s: {degraded['message']}")
        result = sender.stop()
        unready = sum(gateway.stats.unready.values())
        summary.append(f"traffic: {result.total} requests, {sum(result.feedback.values())} feedback labels")
        summary.append(f"routed per revision: {dict(gateway.stats.routed)}; to revisions without ready pods: {unready}")
        print()
        cluster_view = cluster.kubectl("get", "mdep,deploy,svc,httproute", "-n", NS).stdout
        print(cluster_view)
        history = json.dumps([(h["revision"], h["phase"], h.get("reason", "")) for h in third["history"]])
        summary.append(f"history: {history}")
        say("summary")
        for line in summary:
            print(f"  - {line}")
    ok = second["phase"] == "Succeeded" and third["phase"] == "RolledBack"
    finish(cluster, started_cluster, NS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
