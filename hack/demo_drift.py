"""`make demo-drift`: the drift loop, live: drift detected, a retraining Job, the retrained model rolled out.

The same world as `make demo` (the local control plane, the operator, a real Prometheus, real model
servers behind a loopback gateway, labelled traffic), plus the real Job controller running the
retraining Job, whose pod the harness runs as a local process (hack/loopback/jobs.py):

1. baseline is stable, with a drift gate in its continuous watch and ``spec.retraining``;
2. healthy traffic: every feature judged against the training bins, no drift;
3. the traffic's ``amount`` becomes four times larger: Drifted names it;
4. the operator starts the retraining Job (``examples/retraining/train.py``): it trains on fresh data
   with the same shift, publishes the model with its own reference bins and patches the manifest;
5. the retrained revision rolls out through the canary gates (the drift gate included, now against
   its own training data), is promoted, and its watch finds no drift.

With CI=true it exits 0 at the end; otherwise the cluster stays up (`make cluster-down` stops it).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import config  # noqa: E402

from hack.demo import control_plane, describe, finish, say, status  # noqa: E402
from hack.loopback.cluster import TESTENV, Cluster, OperatorProcess, wait_until  # noqa: E402
from hack.loopback.jobs import JOB_POD, JobPodRunner  # noqa: E402
from hack.loopback.traffic import TrafficSender  # noqa: E402
from hack.loopback.world import local_world, model_spec, serving_spec  # noqa: E402

NS = "demo-drift"
SHIFT = {"amount": 4.0}
RATE, BATCH = 40, 5  # requests per second, rows per request


def manifest(prometheus: str, store: Path) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec("baseline"),
            "serving": serving_spec(),
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "public-gw"}], "hostnames": ["fraud.example.com"]}},
            "strategy": {"canary": {"steps": [20, 50, 100], "stepDuration": "6s", "scaleDownDelay": "2s"}},
            "analysis": {
                "interval": "3s",
                "prometheus": {"address": prometheus, "timeoutSeconds": 2},
                "failureLimit": 2,
                "inconclusiveLimit": 6,
                "metrics": [
                    {"name": "error-rate", "max": 0.02, "minSamples": 10},
                    {"name": "accuracy", "min": 0.75, "maxDropVsStable": 0.05, "minSamples": 15},
                    {"name": "drift", "maxPSI": 0.2},
                ],
                "continuous": {"window": "5m"},
            },
            "retraining": {
                "job": {
                    "image": "registry.example.com/fraud-trainer:1",
                    "command": ["python", "examples/retraining/train.py"],
                    "args": ["--store", str(store), "--data-scale", "amount=4", "--apply"],
                    "podLabels": {"modelrollout.io/simulate": JOB_POD},
                },
                "cooldown": "1h",
            },
            "bake": {"duration": "0s"},
            "progressDeadlineSeconds": 60,
        },
    }


def drift_line(st: dict[str, Any]) -> str:
    gate = next((m for m in (st.get("lastAnalysis") or {}).get("metrics", []) if m["name"] == "drift"), {})
    features = ", ".join(f"{f['name']} {f['psi']:.3f}" for f in gate.get("features", [])[:3])
    cond = next((c for c in st.get("conditions", []) if c["type"] == "Drifted"), {})
    return f"drift gate {gate.get('reason', '-')} (largest PSI: {features or '-'}); Drifted={cond.get('status', '-')}"


def watch(cluster: Cluster, done: Any, timeout: float, what: str) -> dict[str, Any]:
    """Print the rollout and drift lines as they change until ``done(status)``."""
    last, deadline = "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(cluster, NS)
        if st:
            text = describe(st) + " | " + drift_line(st)
            if text != last:
                say(text)
                last = text
            if done(st):
                return st
        time.sleep(1)
    raise SystemExit(f"demo-drift: no {what} within {timeout}s")


def main() -> int:
    cluster, started_cluster = control_plane(NS)
    api = config.new_client_from_config(str(cluster.kubeconfig))
    summary: list[str] = []
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelrollout-drift-")))
        operator = OperatorProcess(cluster, extra_env={"MODELROLLOUT_TICK_SECONDS": "1"})
        operator.start()
        stack.callback(operator.stop)
        lw = stack.enter_context(local_world(api, NS, work, TESTENV / "demo-drift-logs"))
        jobs = stack.enter_context(JobPodRunner(api, NS, TESTENV / "demo-drift-logs", cluster.kubeconfig))
        senders: list[TrafficSender] = []

        def traffic(scale: dict[str, float] | None = None) -> None:
            for sender in senders:
                sender.stop()
            sender = TrafficSender({"gw": lw.gateway.url}, seed=len(senders) + 3, batch_size=BATCH, concurrency=2,
                                   scale=scale)  # fmt: skip
            sender.start(max_requests=RATE * 600, max_seconds=600, rate=RATE)
            senders.append(sender)
            stack.callback(sender.stop)

        say("1/4 baseline with a drift gate in its continuous watch and spec.retraining")
        cluster.apply(manifest(lw.prometheus.url, work / "models"), NS)
        first = watch(cluster, lambda s: s.get("phase") == "Succeeded", 120, "first revision")
        traffic()
        say("2/4 healthy traffic: every feature judged against its training bins")
        healthy = watch(cluster, lambda s: "drift gate Passed" in drift_line(s), 90, "judged check")
        summary.append(f"healthy: {drift_line(healthy)}")

        say(f"3/4 the traffic shifts: amount x{SHIFT['amount']:g}")
        shifted = time.monotonic()
        traffic(SHIFT)
        drifted = watch(cluster, lambda s: "Drifted=True" in drift_line(s), 120, "Drifted")
        message = next(c["message"] for c in drifted["conditions"] if c["type"] == "Drifted")
        summary.append(f"Drifted {time.monotonic() - shifted:.0f}s after the shift: {message}")

        say("4/4 the retraining Job trains, publishes and patches the manifest; the canary gates judge it")
        new = watch(cluster, lambda s: s.get("stableRevision") not in (None, first["stableRevision"])
                    and s.get("phase") == "Succeeded", 240, "retrained model promoted")  # fmt: skip
        runs = new.get("retraining") or {}
        summary.append(f"retraining: run {runs.get('runs')} {runs.get('job')} {runs.get('outcome')}")
        summary.append(f"retrained revision {new['stableRevision']} promoted: "
                       + json_history(new))  # fmt: skip
        clean = watch(cluster, lambda s: "drift gate Passed" in drift_line(s) and "Drifted=False" in drift_line(s),
                      120, "a clean watch on the retrained model")  # fmt: skip
        summary.append(f"after: {drift_line(clean)}")
        wait_until(lambda: jobs.finished, 5, what="the Job pod's exit")
        log = next((TESTENV / "demo-drift-logs").glob(f"{runs.get('job')}-*.log"), None)
        if log is not None:
            summary.append("trainer: " + " / ".join(line for line in log.read_text().splitlines() if line)[:400])
        say("summary")
        for line in summary:
            print(f"  - {line}")
    finish(cluster, started_cluster, NS)
    return 0


def json_history(st: dict[str, Any]) -> str:
    return ", ".join(f"{h['revision']} {h['phase']}" + (f" ({h['reason']})" if h.get("reason") else "")
                     for h in st.get("history", []))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
