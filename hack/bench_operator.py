"""`make bench-operator`: the operator at scale on kwok nodes (~20 min on 2 cores).

A cluster of its own (``.testenv-bench``: etcd, kube-apiserver, controller-manager, scheduler and
kwok with 4 simulated nodes of 1,000 pods each, whose pods become Ready at once) and the real operator process. The
benchmark creates ``--objects`` ModelDeployments in ``--namespaces`` namespaces (one replica each,
``traffic.none``, the default canary steps and analysis interval, no gates), waits until all are
stable, measures the idle operator for a minute, then changes the model of every one of them at
``--rate`` changes per second and waits until every new revision is stable. Last, every object gets
a continuous watch checked every ``--check-interval`` seconds, ``--hanging`` of them through a
Prometheus that never answers, and the spacing of the others' checks is measured for
``--hang-seconds`` (``hack/bench_hang.py``).

Figures, sampled once a second from ``/proc`` and every 15 s from the operator's ``/metrics``:
- RSS (peak, and at idle) and CPU (% of one core) of the operator process;
- API requests per second sent by the operator (``modelrollout_api_requests_total``), idle and
  while all objects roll out;
- first write: from a spec change (the patch sent) to the operator's first write for it (the
  status with the new ``observedGeneration``, seen by a watch), p50/p99/max;
- time until all objects were created stable and until all had rolled out;
- where a slow first write came from: per 10 s of changes, how late a watch showed the change
  itself (the API server's watch delivery, which the operator waits on too), the operator's own
  queue, reconcile, status-write and garbage-collection histograms, and the API server's busiest
  requests from every client while the changes were sent;
- while some objects' Prometheus hangs: the gaps between the other objects' checks, and how many
  of them had a check delayed by more than one interval.

The simulated cluster's controller-manager gets ``--kube-api-qps=300`` so that the kube side keeps
up; every figure above is the operator's. The section "## Operator at scale" of
docs/benchmarks.md is rewritten; the last line reads
``objects=<n> rss_mb=<n> first_write_p99_s=<n> analysis_late_objects=<n>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_ENV = REPO / ".testenv-bench"
os.environ.setdefault("MODELROLLOUT_TESTENV", str(BENCH_ENV))  # read by hack.loopback.cluster at import
sys.path.insert(0, str(REPO))

from kubernetes import client, config  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from hack import bench_hang  # noqa: E402
from hack.bench_watch import GROUP, PLURAL, VERSION, ResumedWatch  # noqa: E402
from hack.benchdoc import write_section  # noqa: E402
from hack.loopback.cluster import TESTENV, Cluster, OperatorProcess, reachable, wait_until  # noqa: E402
from hack.loopback.procs import free_port  # noqa: E402

SECTION = "## Operator at scale"
SCRAPE = 15.0  # seconds between scrapes of the operator's /metrics
V1, V2 = "https://models.example.com/v1.onnx", "https://models.example.com/v2.onnx"
CLUSTER_ENV = {"MODELROLLOUT_REAL_NODE": "0", "KWOK_NODES": "4", "KWOK_NODE_PODS": "1000",
               "MODELROLLOUT_KCM_QPS": "300", "MODELROLLOUT_KCM_BURST": "500"}  # fmt: skip


def manifest(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "fraud", "uri": uri},
            "serving": {"replicas": 1, "resources": {"requests": {"cpu": "10m"}}},
            "traffic": {"none": {}},
        },
    }


@dataclass
class Sampler:
    """The operator process's RSS and CPU, and its API request count, once a second."""

    pid: int
    metrics_port: int
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)  # t, rss MB, cpu s, requests
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """RSS and CPU every second; /metrics every SCRAPE seconds, as Prometheus would (rendering
        thousands of per-object series costs the operator real CPU, so scraping every second would
        inflate its figures)."""
        ticks = os.sysconf("SC_CLK_TCK")
        requests, scraped = 0.0, 0.0
        while not self.stop.wait(1.0):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
                fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / ticks
                if time.monotonic() - scraped >= SCRAPE:
                    requests, scraped = self.requests(), time.monotonic()
                self.samples.append((time.monotonic(), rss, cpu, requests))
            except (OSError, StopIteration, ValueError):
                continue

    def requests(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("modelrollout_api_requests_total{")
        )

    def mark(self) -> tuple[float, float]:
        """(now, requests sent so far), scraped at a phase boundary: the 15 s samples would credit
        one phase's requests to the next."""
        return time.monotonic(), self.requests()

    def between(self, start: tuple[float, float], end: tuple[float, float]) -> dict[str, float]:
        """RSS and CPU from the samples between two marks, requests/s from the marks themselves."""
        window = [s for s in self.samples if start[0] <= s[0] <= end[0]]
        if len(window) < 2:
            return {"rss_mb": 0.0, "cpu_pct": 0.0, "req_s": 0.0}
        (t0, _, c0, _), (t1, _, c1, _) = window[0], window[-1]
        return {
            "rss_mb": max(s[1] for s in window),
            "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "req_s": (end[1] - start[1]) / (end[0] - start[0]),
        }


def request_totals(metrics_port: int) -> dict[tuple[str, str], tuple[float, float]]:
    """(method, resource) -> (requests, seconds spent waiting on them), from the operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "modelrollout_api_request_duration_seconds":
            continue
        for sample in family.samples:
            key = (sample.labels["method"], sample.labels["resource"])
            count, seconds = out.get(key, (0.0, 0.0))
            if sample.name.endswith("_count"):
                out[key] = (count + sample.value, seconds)
            elif sample.name.endswith("_sum"):
                out[key] = (count, seconds + sample.value)
    return out


def histogram_buckets(metrics_port: int, name: str, **labels: str) -> list[tuple[float, float]]:
    """(upper edge, cumulative count) of one of the operator's histograms, ordered by edge."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets: list[tuple[float, float]] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_bucket" and all(sample.labels.get(k) == v for k, v in labels.items()):
                buckets.append((float(sample.labels["le"]), sample.value))
    return sorted(buckets)


def bucket_quantiles(
    buckets: list[tuple[float, float]], qs: tuple[float, ...], since: list[tuple[float, float]] | None = None
) -> list[float]:
    """Upper bucket edges holding quantiles ``qs`` (the resolution the buckets give: "p99 <= 0.25 s"),
    of what was observed after the scrape ``since`` when given."""
    earlier = dict(since or [])
    counts = [(le, count - earlier.get(le, 0.0)) for le, count in buckets]
    total = counts[-1][1] if counts else 0.0
    if not total:  # nothing observed: no quantile (the first bucket's edge would read as a measurement)
        return [float("nan")] * len(qs)
    return [next((le for le, count in counts if count >= q * total), float("inf")) for q in qs]


def histogram_quantiles(metrics_port: int, name: str, qs: tuple[float, ...], **labels: str) -> list[float]:
    """Quantiles of everything one of the operator's histograms has observed (to its bucket edges)."""
    return bucket_quantiles(histogram_buckets(metrics_port, name, **labels), qs)


def apiserver_requests(cluster: Cluster) -> dict[tuple[str, str], float]:
    """(verb, resource[/subresource]) -> requests the API server has answered, from its own /metrics
    (every client's: the operator, the controller-manager, the scheduler, kwok and this benchmark)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":  # the parser strips the counter's _total
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("verb") in ("WATCH", "CONNECT"):
                continue
            labels = sample.labels
            resource = labels["resource"] + (f"/{labels['subresource']}" if labels.get("subresource") else "")
            key = (labels["verb"], resource)
            out[key] = out.get(key, 0.0) + sample.value
    return out


def apiserver_table(before: dict, after: dict, seconds: float, top: int = 8) -> str:
    """The API server's busiest requests between two scrapes, per second: whose load the
    operator's writes queue behind."""
    deltas = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    total = sum(d for d, _ in deltas)
    rows = [f"| {verb} {resource} | {d / seconds:.1f} |" for d, (verb, resource) in deltas[:top] if d >= 1]
    rows.append(f"| all (WATCH aside) | {total / seconds:.1f} |")
    return "\n".join(["| request | per second |", "| --- | ---: |", *rows])


def breakdown_table(before: dict, after: dict, objects: int) -> str:
    """Where the rollout phase's requests went: per object, and the mean latency the operator saw."""
    rows = []
    for key in sorted(after, key=lambda k: -(after[k][0] - before.get(k, (0.0, 0.0))[0])):
        count = after[key][0] - before.get(key, (0.0, 0.0))[0]
        seconds = after[key][1] - before.get(key, (0.0, 0.0))[1]
        if count >= 1:
            rows.append(f"| {key[0]} {key[1]} | {count:.0f} | {count / objects:.1f} | {1000 * seconds / count:.1f} |")
    return "\n".join(["| request | count | per object | mean latency (ms) |", "| --- | ---: | ---: | ---: |", *rows])


class Progress:
    """What the benchmark's one watch (``hack/bench_watch.py``) showed of every ModelDeployment:
    when each generation first appeared, when the operator first wrote a status for it, and which
    model each one has stable now."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, int], float] = {}  # the operator's first status for a generation
        self.generations: dict[tuple[str, str, int], float] = {}  # when the watch first showed the generation
        self.stable: dict[tuple[str, str], str | None] = {}  # the stable model's URI, once Succeeded
        self._lock = threading.Lock()

    def __call__(self, obj: dict[str, Any], arrived: float) -> None:
        meta, st = obj["metadata"], obj.get("status") or {}
        key = (meta["namespace"], meta["name"])
        stable = next((h for h in st.get("history", []) if h["revision"] == st.get("stableRevision")), {})
        with self._lock:
            self.generations.setdefault((*key, meta.get("generation")), arrived)
            if st.get("observedGeneration"):
                self.seen.setdefault((*key, st["observedGeneration"]), arrived)
            self.stable[key] = stable.get("modelURI") if st.get("phase") == "Succeeded" else None

    def stable_on(self, uri: str) -> int:
        with self._lock:
            return sum(u == uri for u in self.stable.values())


def wait_all(progress: Progress, count: int, uri: str, timeout: float) -> float:
    """Seconds until ``count`` ModelDeployments are Succeeded with ``uri`` stable."""
    started = printed = time.monotonic()

    def done() -> bool:
        nonlocal printed
        ok = progress.stable_on(uri)
        if time.monotonic() - printed >= 10 or ok == count:
            print(f"  {ok}/{count} stable on {uri.rsplit('/', 1)[-1]} after {time.monotonic() - started:.0f}s")
            printed = time.monotonic()
        return ok == count

    wait_until(done, timeout, interval=0.5, what=f"{count} ModelDeployments stable on {uri}")
    return time.monotonic() - started


def hang_text(hang: bench_hang.HangResult, hanging: int, namespaces: int, workers: int, due_waits: list[float]) -> str:
    """The hang phase's paragraph and table for docs/benchmarks.md."""
    interval = hang.interval
    rows = []
    for what, g in (("answered", hang.answered), ("hanging", hang.hanging)):
        rows.append(
            f"| {what} | {g.objects} | {g.checks} | {g.quantile(0.5):.1f} | {g.quantile(0.99):.1f} "
            f"| {max(g.gaps, default=float('nan')):.1f} | {g.late_objects} | {g.unchecked} |"
        )
    table = "\n".join([
        "| Prometheus | objects | checks | gap p50 (s) | p99 (s) | max (s) | objects with a gap > 2 intervals "
        "| never checked |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])  # fmt: skip
    late = hang.answered.late_objects + hang.answered.unchecked
    spread = " (one per namespace)" if hanging <= namespaces else ""
    verdict = "none" if not late else f"**{late}**"
    return f"""Analysis while a Prometheus hangs: every object then got a continuous watch (an `error-rate` gate
every {interval:g} s). {hanging} of them{spread} query a Prometheus that accepts connections and
never answers, with the longest timeout allowed (120 s), so each of their checks holds one of the
{workers} workers for the whole timeout ({hang.held} connections held); the rest query a real Prometheus
that answers. Over {hang.seconds:.0f} s, the gaps between consecutive checks of each object (its
`status.lastCheckAt` stamps, plus the open gap to the window's end when longer than the interval). A
check that starts d s late makes a gap of {interval:g} + d s, so a gap above {2 * interval:g} s is a check delayed by
more than one interval: objects of the answered Prometheus with such a gap: {verdict}. Due work (the
checks among it) waited for a worker (`modelrollout_queue_wait_seconds{{urgent="false"}}`, this phase):
p50 <= {due_waits[0]:g} s, p99 <= {due_waits[1]:g} s, max <= {due_waits[2]:g} s. Up to `workers - 1` objects can
hang at once without delaying the others; more than that queue the rest behind them.

{table}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20, help="spec changes per second in the rollout phase")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--hanging", type=int, default=10, help="objects whose Prometheus hangs in the last phase")
    parser.add_argument("--check-interval", type=float, default=30, help="analysis interval in the last phase")
    parser.add_argument("--hang-seconds", type=float, default=240, help="checks measured in the last phase")
    parser.add_argument("--keep", action="store_true", help="leave the bench cluster running")
    parser.add_argument("--no-doc", action="store_true", help="print only; do not rewrite docs/benchmarks.md")
    args = parser.parse_args()

    started_cluster = False
    kubeconfig = TESTENV / "kubeconfig"
    if not reachable(kubeconfig):
        subprocess.run(
            ["bash", str(REPO / "hack/cluster-up.sh")], check=True, cwd=REPO, env={**os.environ, **CLUSTER_ENV}
        )
        started_cluster = True
    cluster = Cluster(kubeconfig)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.wait_established(f"{PLURAL}.{GROUP}")
    config.load_kube_config(str(kubeconfig))
    api = client.CustomObjectsApi()
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    metrics_port = free_port()
    operator = OperatorProcess(
        cluster, tick_seconds=5, extra_args=[f"--workers={args.workers}", f"--metrics-port={metrics_port}"]
    )
    writes, checks = Progress(), bench_hang.CheckTimes()
    objects_watch = ResumedWatch(api, [writes, checks])
    threads: list[threading.Thread] = []
    try:
        for ns in namespaces:
            cluster.kubectl("create", "namespace", ns, check=False)
        operator.start()
        assert operator.proc is not None
        sampler = Sampler(operator.proc.pid, metrics_port)
        threads = [threading.Thread(target=sampler.run, daemon=True), objects_watch.thread]
        for t in threads:
            t.start()

        print(f"creating {args.objects} ModelDeployments in {args.namespaces} namespaces", flush=True)
        t_create = sampler.mark()
        names = [(namespaces[i % args.namespaces], f"model-{i:04d}") for i in range(args.objects)]
        for ns in namespaces:
            docs = [manifest(name, V1) for n, name in names if n == ns]
            cluster.kubectl("apply", "--server-side", "-n", ns, "-f", "-", stdin=json.dumps({"apiVersion": "v1",
                            "kind": "List", "items": docs}))  # fmt: skip
        created_s = wait_all(writes, args.objects, V1, 1800)
        create_fig = sampler.between(t_create, sampler.mark())

        print(f"idle for {args.idle_seconds:.0f}s", flush=True)
        t_idle = sampler.mark()
        time.sleep(args.idle_seconds)
        idle = sampler.between(t_idle, sampler.mark())

        print(f"rolling out a new revision in all of them at {args.rate:g} changes/s", flush=True)
        sent: dict[tuple[str, str, int], float] = {}
        accepted: dict[tuple[str, str, int], float] = {}  # when the API server answered the change
        t_roll_mark = sampler.mark()
        t_roll = t_roll_mark[0]
        requests_before = request_totals(metrics_port)
        server_before = apiserver_requests(cluster)
        for i, (ns, name) in enumerate(names):
            pause = t_roll + i / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            at = time.time()
            change = {"spec": {"model": {"uri": V2}}}
            obj = api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, change)
            sent[(ns, name, obj["metadata"]["generation"])] = at
            accepted[(ns, name, obj["metadata"]["generation"])] = time.time()
        changes_s = time.monotonic() - t_roll
        server_load = apiserver_table(server_before, apiserver_requests(cluster), changes_s)
        rolled_s = wait_all(writes, args.objects, V2, 3600)
        rollout = sampler.between(t_roll_mark, sampler.mark())
        breakdown = breakdown_table(requests_before, request_totals(metrics_port), args.objects)
        waits = histogram_quantiles(metrics_port, "modelrollout_queue_wait_seconds", (0.5, 0.99), urgent="true")
        durations = histogram_quantiles(metrics_port, "modelrollout_reconcile_duration_seconds", (0.5, 0.99))
        full_gcs = histogram_quantiles(metrics_port, "modelrollout_gc_pause_seconds", (0.5, 1.0), generation="2")
        status_writes = histogram_quantiles(
            metrics_port, "modelrollout_api_request_duration_seconds", (0.5, 0.99),
            method="PATCH", resource="modeldeployments/status",
        )  # fmt: skip
        wait_until(lambda: all(k in writes.seen for k in sent), 60, what="every first write seen by the watch")
        latencies = [writes.seen[k] - at for k, at in sent.items()]
        after_accept = [writes.seen[k] - at for k, at in accepted.items()]

        t_hang = sampler.mark()
        due_before = histogram_buckets(metrics_port, "modelrollout_queue_wait_seconds", urgent="false")
        hang = bench_hang.run(
            api, checks, names, hanging=args.hanging, interval=args.check_interval, seconds=args.hang_seconds,
            rate=args.rate, workdir=BENCH_ENV / "hang-prometheus",
        )  # fmt: skip
        hang_fig = sampler.between(t_hang, sampler.mark())
        due_waits = bucket_quantiles(
            histogram_buckets(metrics_port, "modelrollout_queue_wait_seconds", urgent="false"), (0.5, 0.99, 1.0),
            since=due_before,
        )  # fmt: skip
    finally:
        objects_watch.stop.set()
        if threads:
            sampler.stop.set()
        operator.stop()
        if started_cluster and not args.keep:
            subprocess.run(["bash", str(REPO / "hack/cluster-down.sh")], check=False, cwd=REPO)

    p50, p99, worst = percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies)
    first_sent = min(sent.values())
    window_rows = []
    for window in range(0, int(max(sent.values()) - first_sent) + 1, 10):
        keys = [k for k, at in sent.items() if window <= at - first_sent < window + 10]
        part = [writes.seen[k] - sent[k] for k in keys]
        shown = [writes.generations[k] - accepted[k] for k in keys if k in writes.generations]
        watch = f"{percentile(shown, 0.5):.2f} | {max(shown):.2f}" if shown else "- | -"
        if part:
            window_rows.append(
                f"| {window}-{window + 10} | {len(part)} | {percentile(part, 0.5):.2f} | {percentile(part, 0.99):.2f} "
                f"| {watch} |"
            )
    windows = "\n".join([
        "| changes sent (s in) | changes | first write p50 (s) | p99 (s) | watch showed the change p50 (s) | max (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *window_rows,
    ])  # fmt: skip
    peak_rss = max(s[1] for s in sampler.samples)
    last_line = (
        f"objects={args.objects} rss_mb={peak_rss:.0f} first_write_p99_s={p99:.2f} "
        f"analysis_late_objects={hang.answered.late_objects + hang.answered.unchecked}"
    )
    rows = [
        ("create all, until all stable", f"{created_s:.0f} s", create_fig),
        (f"idle {args.idle_seconds:.0f} s (all stable)", "", idle),
        (f"roll out all at {args.rate:g} changes/s, until all stable", f"{rolled_s:.0f} s", rollout),
        (
            f"continuous watch on all, {args.hanging} through a hanging Prometheus",
            f"{hang.seconds:.0f} s measured",
            hang_fig,
        ),
    ]
    table = "\n".join(
        f"| {what} | {took} | {fig['rss_mb']:.0f} | {fig['cpu_pct']:.0f} | {fig['req_s']:.1f} |"
        for what, took, fig in rows
    )
    text = f"""{SECTION}

`make bench-operator` ({platform.machine()}, {os.cpu_count()} cores; {time.strftime("%Y-%m-%d")}): {args.objects}
ModelDeployments in {args.namespaces} namespaces on 4 kwok nodes (one replica each, `traffic.none`, the
default canary steps 5/10/25/50/100 % at 60 s each, so a rollout takes at least 300 s, and the default
analysis interval), the real operator with {args.workers} workers. The whole simulated cluster (etcd,
API server, controller-manager at `--kube-api-qps=300`, scheduler, kwok) runs on the same two cores.

| phase | took | operator RSS peak (MB) | operator CPU (% of a core) | API requests/s |
| --- | --- | --- | --- | --- |
{table}

Spec change -> the operator's first write for it (status with the new `observedGeneration`, seen by a
watch), over all {len(latencies)} changes at {args.rate:g}/s: p50 {p50:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s.
From the API server's answer to the change instead of its sending: p50
{percentile(after_accept, 0.5):.2f} s, p99 {percentile(after_accept, 0.99):.2f} s. In the operator
(its histograms, to their bucket edges): a changed object waited for a worker p50 <= {waits[0]:g} s,
p99 <= {waits[1]:g} s; a reconcile took p50 <= {durations[0]:g} s, p99 <= {durations[1]:g} s; a status write took
p50 <= {status_writes[0]:g} s, p99 <= {status_writes[1]:g} s (over the whole run); a full garbage collection
stopped the operator for p50 <= {full_gcs[0]:g} s, at most <= {full_gcs[1]:g} s (`modelrollout_gc_pause_seconds`).
Peak RSS over the run: {peak_rss:.0f} MB. The benchmark's own watch of the objects listed them
{objects_watch.lists} time(s) (more than once: the API server expired its resourceVersion).

By when the change was sent; "watch showed the change": from the API server's answer to the change
until this benchmark's own watch of ModelDeployments delivered it (the operator's watch waits on the
same API server):

{windows}

The API server's busiest requests while the changes were sent ({changes_s:.0f} s; every client's,
from its own `apiserver_request_total`):

{server_load}

The operator's API requests in the rollout phase (`modelrollout_api_request_duration_seconds`):

{breakdown}

{hang_text(hang, args.hanging, args.namespaces, args.workers, due_waits)}

{last_line}
"""
    print(text)
    if not args.no_doc:
        write_section(SECTION, text)
    print(last_line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
