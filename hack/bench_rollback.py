"""`make bench-rollback`: time-to-rollback at a 10 s analysis interval, measured end to end.

For each gate and each run: a fresh namespace, the baseline model stable with labelled traffic
flowing through the route-driven gateway, then a bad model as canary: coinflip (50 % accuracy) for
the accuracy gate, broken (~23 % errors) for the error rate, slow for latency.
Time-to-rollback is from the first request the gateway routed to the canary to the moment the
route the operator wrote sent it nothing again (100 % stable). The target from the issue is
<= 2 analysis intervals + 1 scrape interval; Flagger's defaults take about (threshold+1) x interval.
The table goes to docs/benchmarks.md under "## Time to rollback".
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kubernetes import config  # noqa: E402

from hack.benchdoc import write_section  # noqa: E402
from hack.loopback.cluster import TESTENV, Cluster, OperatorProcess, reachable, wait_until  # noqa: E402
from hack.loopback.traffic import TrafficSender  # noqa: E402
from hack.loopback.world import local_world, model_spec, serving_spec  # noqa: E402

# The accuracy case is coinflip (~0.50, independent of the truth): the "50 % accuracy" of issue 8.
# worse (~0.61) is a milder regression that the sequential test needs more labels to tell from 0.75.
CASES = [("coinflip", "accuracy"), ("broken", "error-rate"), ("slow", "latency")]
SECTION = "## Time to rollback"
RATE = 50  # labelled requests per second, the cap the sender aims at
# Worker threads of the sender. Each request is a predict and a feedback through the Python gateway;
# with 2 workers a loaded 2-core machine sent 12-13 req/s, not 50, and a 20 % canary then has ~30
# labels at the first analysis, too few to decide even a coin flip. 8 workers reach 30-40 req/s there.
SENDERS = 8


def manifest(model: str, prometheus: str, interval: int) -> dict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec(model),
            "serving": serving_spec(),
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "strategy": {"canary": {"steps": [20, 50, 100], "stepDuration": f"{3 * interval}s"}},
            "analysis": {
                "interval": f"{interval}s",
                "prometheus": {"address": prometheus, "timeoutSeconds": 3},
                "failureLimit": 1,
                "inconclusiveLimit": 10,
                "metrics": [
                    {"name": "error-rate", "max": 0.02, "minSamples": 20},
                    {"name": "latency", "template": "slow-requests", "slowerThanMs": 50, "max": 0.1, "minSamples": 20},
                    {"name": "accuracy", "min": 0.75, "maxDropVsStable": 0.05, "minSamples": 30},
                ],
            },
            "progressDeadlineSeconds": 120,
        },
    }


def one_run(cluster: Cluster, api, model: str, interval: int, scrape: float) -> tuple[float, str, float]:
    """Time-to-rollback of ``model`` in seconds, the outcome, and the request rate actually sent."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", ns)
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            local_world(api, ns, Path(tmp), TESTENV / "bench-logs" / ns, scrape_interval=scrape) as lw,
        ):
            cluster.apply(manifest("baseline", lw.prometheus.url, interval), ns)

            def get() -> dict:
                """Status once the operator has observed the current spec, else {}."""
                obj = cluster.get("mdep", "fraud", ns) or {}
                st = obj.get("status", {})
                return st if st.get("observedGeneration") == obj.get("metadata", {}).get("generation") else {}

            stable = wait_until(
                lambda: get().get("phase") == "Succeeded" and get()["stableRevision"], 120, what="stable"
            )
            sender = TrafficSender({"gw": lw.gateway.url}, concurrency=SENDERS)
            sender.start(max_requests=RATE * 300, max_seconds=300, rate=RATE)
            try:
                time.sleep(2 * interval)  # the stable revision has a full window of data
                cluster.apply(manifest(model, lw.prometheus.url, interval), ns)
                done = lambda s: s.get("phase") == "RolledBack" or s.get("stableRevision") not in (None, stable)  # noqa: E731
                st = wait_until(lambda: done(s := get()) and s, 240, interval=0.5, what="rollback")
            finally:
                sent = sender.stop()
            canary = next(r for r in lw.gateway.stats.first_seen if r != stable)
            first = lw.gateway.stats.first_seen[canary]
            back = next(at for at, w in lw.gateway.stats.weights_log if at > first and w.get(canary, 0) == 0)
            reason = next(c for c in st["conditions"] if c["type"] == "Degraded")["reason"]
            return back - first, f"{st['phase']}/{reason}", sent.total / max(sent.seconds, 1e-9)
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interval", type=int, default=10, help="analysis interval in seconds")
    parser.add_argument("--scrape", type=float, default=2.0, help="Prometheus scrape interval in seconds")
    parser.add_argument("--runs", type=int, default=2, help="runs per gate")
    args = parser.parse_args()

    cluster = Cluster(TESTENV / "kubeconfig")
    started = not reachable(cluster.kubeconfig)
    subprocess.run(["bash", str(REPO / "hack/cluster-up.sh")], check=True)
    dirs = subprocess.run(["bash", str(REPO / "hack/fetch-crds.sh")], check=True, capture_output=True, text=True)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", dirs.stdout.split()[0])
    api = config.new_client_from_config(str(cluster.kubeconfig))
    operator = OperatorProcess(cluster, extra_env={"MODELROLLOUT_MIN_QUERY_WINDOW": f"{args.interval}s"})
    rows, budget = [], 2 * args.interval + args.scrape
    with contextlib.ExitStack() as stack:
        operator.start()
        stack.callback(operator.stop)
        for model, gate in CASES:
            times, rates = [], []
            for i in range(args.runs):
                seconds, outcome, rate = one_run(cluster, api, model, args.interval, args.scrape)
                print(f"{gate} run {i + 1}: {seconds:.1f}s ({outcome}; {rate:.0f} req/s sent)", flush=True)
                times.append(seconds)
                rates.append(rate)
            rows.append((gate, model, times, outcome, rates))
    if started:
        subprocess.run(["bash", str(REPO / "hack/cluster-down.sh")], check=False)

    lines = [
        SECTION,
        "",
        f"`make bench-rollback`, {time.strftime('%Y-%m-%d')}, {platform.node()} ({platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores). Analysis interval {args.interval} s, Prometheus "
        f"scrape interval {args.scrape:g} s, failureLimit 1, first step 20 % of labelled traffic capped at "
        f"{RATE} req/s ({SENDERS} sender threads; the rate each run actually sent is in the table); "
        "time from the first request routed to the bad canary until the operator's HTTPRoute sent it nothing. "
        f"Target: <= 2 intervals + 1 scrape = {budget:g} s (Flagger's defaults: about (threshold+1) x interval, "
        "~6 min).",
        "",
        "| gate | bad model | runs (s) | median (s) | within target | outcome | sent (req/s) |",
        "|---|---|---|---:|---|---|---|",
    ]
    for gate, model, times, outcome, rates in rows:
        med = statistics.median(times)
        runs = ", ".join(f"{t:.1f}" for t in times)
        sent = ", ".join(f"{r:.0f}" for r in rates)
        within = "yes" if max(times) <= budget else "no"
        lines.append(f"| {gate} | {model} | {runs} | {med:.1f} | {within} | {outcome} | {sent} |")
    table = "\n".join(lines) + "\n"
    print(table)
    write_section(SECTION, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
