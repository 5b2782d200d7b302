"""Chaos: rollouts under the faults a cluster throws at a controller, against the real API server (kwok
runs the pods). After each fault the rollouts must converge to the outcome they have without faults,
``status.history`` must hold every revision once (no lost or duplicated transition), and no route
may ever give traffic to a revision without a ready pod while another revision has one.

* ``test_the_operator_killed_at_20_random_points_converges`` SIGKILLs the operator 20 times, each
  time right after a randomly chosen number of its writes (seeded; the seed is printed and
  ``MODELROLLOUT_CHAOS_SEED`` replays it), while six ModelDeployments roll out: two promoted, two
  rolled back by a failing gate, two rolled back because their pods never become ready.
* ``test_control_plane_prometheus_and_hand_edits_mid_rollout_converge`` stops and starts Prometheus,
  deletes the route and scales the canary to zero by hand, freezes etcd and crashes the API server,
  one after another during one rollout.

A watch on every kind the operator writes records the namespace's history (ordered by
resourceVersion, which is etcd's global revision); the traffic invariant is checked on that record.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from hack.loopback import controlplane
from hack.loopback.cluster import TESTENV, Cluster, OperatorProcess, wait_until
from hack.loopback.procs import free_port
from tests.integration.test_operator import deployments, events, manifest, mdep, wait_phase

pytestmark = pytest.mark.cluster

RUN = TESTENV / "run"
KILLS = 20
REVISION = "modelrollout.io/revision"


# ------------------------------------------------------------------------------------- Prometheus


class FakePrometheus:
    """Prometheus' instant-query API answering ``vector(N)`` with N: a gate's verdict is in its spec.

    It can be stopped and started again on the same port (connections are refused in between), which
    is what the operator sees of a Prometheus restart.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.queries = 0
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, params: dict[str, list[str]]) -> None:
                outer.queries += 1
                query = (params.get("query") or [""])[0].strip()
                result = []
                if query.startswith("vector(") and query.endswith(")"):
                    result = [{"metric": {}, "value": [time.time(), query[7:-1]]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(parse_qs(urlparse(self.path).query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._answer(parse_qs(self.rfile.read(length).decode()))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    prom = FakePrometheus()
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


# ---------------------------------------------------------------------------------------- record


@dataclass(frozen=True)
class Seen:
    """One watch event: etcd's revision, the kind, the event type and the object."""

    rv: int
    kind: str
    type: str
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]


class Record:
    """Every change to the ModelDeployments, Deployments, Services and HTTPRoutes of one namespace.

    One watch per kind, each resumed from its last resourceVersion after an error (the API server
    restarts under it) and relisted after 410 Gone. ``writes`` counts the operator's writes as they
    arrive: status of a ModelDeployment, a Deployment's spec (its generation), Services, routes.
    """

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.events: list[Seen] = []
        self.writes = 0
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self._generation: dict[str, int] = {}
        self._status: dict[str, Any] = {}
        custom, apps, core = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)

        def crd(group: str, version: str, plural: str) -> Callable[..., Any]:
            def list_fn(namespace: str, **kw: Any) -> Any:
                return custom.list_namespaced_custom_object(group, version, namespace, plural, **kw)

            return list_fn

        self.kinds: dict[str, Callable[..., Any]] = {
            "ModelDeployment": crd("modelrollout.io", "v1alpha1", "modeldeployments"),
            "Deployment": apps.list_namespaced_deployment,
            "Service": core.list_namespaced_service,
            "HTTPRoute": crd("gateway.networking.k8s.io", "v1", "httproutes"),
        }
        self.api = api
        self.threads = [threading.Thread(target=self._follow, args=(k,), daemon=True) for k in self.kinds]

    def __enter__(self) -> Record:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(10)

    def _follow(self, kind: str) -> None:
        rv = ""
        while not self.stopping.is_set():
            try:
                stream = watch.Watch().stream(
                    self.kinds[kind], self.namespace, resource_version=rv, timeout_seconds=2, _request_timeout=5
                )
                for event in stream:
                    obj = event["object"]
                    obj = obj if isinstance(obj, dict) else self.api.sanitize_for_serialization(obj)
                    rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._add(Seen(int(rv), kind, event["type"], obj))
            except ApiException as exc:
                if exc.status == 410:
                    rv = ""
                time.sleep(0.2)
            except Exception:  # the API server is restarting: resume from the last version seen
                time.sleep(0.2)

    def _add(self, seen: Seen) -> None:
        key = f"{seen.kind}/{seen.name}"
        if seen.kind == "Deployment":
            generation = seen.obj["metadata"].get("generation", 0)
            written = seen.type == "ADDED" or generation != self._generation.get(key)
            self._generation[key] = generation
        elif seen.kind == "ModelDeployment":
            status = seen.obj.get("status")
            written = seen.type == "MODIFIED" and status != self._status.get(key)
            self._status[key] = status
        else:
            written = True
        with self.changed:
            self.events.append(seen)
            self.writes += written
            self.changed.notify_all()

    def wait_writes(self, count: int, timeout: float) -> bool:
        """Block until ``count`` operator writes have been seen in all; False after ``timeout``."""
        with self.changed:
            return self.changed.wait_for(lambda: self.writes >= count, timeout)

    def canary_weights(self, name: str) -> list[int]:
        """``status.canaryWeight`` of ModelDeployment ``name`` each time it changed, in etcd order."""
        weights: list[int] = []
        for seen in sorted(self.events, key=lambda s: s.rv):
            if seen.kind == "ModelDeployment" and seen.name == name:
                weight = (seen.obj.get("status") or {}).get("canaryWeight") or 0
                if not weights or weights[-1] != weight:
                    weights.append(weight)
        return weights

    def traffic_without_ready_pods(self) -> list[str]:
        """Every moment a route or Service change left weight on a revision with no available pod
        while another revision of the same ModelDeployment had one (replayed in etcd order)."""
        available: dict[str, int] = {}  # revision -> available pods of its Deployment
        selects: dict[str, str] = {}  # Service -> revision
        routes: dict[str, list[tuple[str, int]]] = {}
        owner: dict[str, str] = {}  # revision -> ModelDeployment
        bad = []
        for seen in sorted(self.events, key=lambda s: s.rv):
            obj, gone = seen.obj, seen.type == "DELETED"
            if seen.kind == "Deployment":
                revision = obj["metadata"].get("labels", {}).get(REVISION)
                if revision:
                    available[revision] = 0 if gone else (obj.get("status") or {}).get("availableReplicas") or 0
                    owner[revision] = obj["metadata"]["labels"].get("modelrollout.io/deployment", "")
                continue
            if seen.kind == "Service":
                revision = (obj.get("spec") or {}).get("selector", {}).get(REVISION)
                if gone or not revision:
                    selects.pop(seen.name, None)
                else:
                    selects[seen.name] = revision
            elif seen.kind == "HTTPRoute":
                rules = (obj.get("spec") or {}).get("rules") or []
                routes[seen.name] = [] if gone else [
                    (b["name"], b.get("weight", 1)) for r in rules for b in r.get("backendRefs") or []
                ]  # fmt: skip
            else:
                continue
            for route, backends in routes.items():
                for service, weight in backends:
                    revision = selects.get(service)
                    if weight <= 0 or revision is None or available.get(revision, 0) > 0:
                        continue
                    others = [r for r, n in available.items() if n > 0 and owner.get(r) == owner.get(revision)]
                    if others:
                        bad.append(f"rv {seen.rv} ({seen.kind} {seen.name}): {route} gives {weight} to {service} "
                                   f"= {revision} without ready pods while {others} have some")  # fmt: skip
        return bad


# -------------------------------------------------------------------------------------- rollouts


def spec(
    name: str, prometheus: str, version: int, query: str = "vector(0)", unready: bool = False, step: str = "1s"
) -> dict[str, Any]:
    """A canary through three steps, a custom gate whose PromQL is its verdict, routed by an HTTPRoute."""
    m = manifest(
        name,
        uri=f"https://models.example.com/{name}-v{version}.onnx",
        traffic={"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
        strategy={"canary": {"steps": [20, 50, 100], "stepDuration": step}},
        analysis={
            "interval": "1s",
            "prometheus": {"address": prometheus, "timeoutSeconds": 2},
            "inconclusiveLimit": 30,  # a stopped Prometheus holds the rollout; it must not roll back
            "metrics": [{"name": "errors", "template": "custom", "query": query, "max": 1}],
        },
        progressDeadlineSeconds=10,
    )
    if unready:
        m["spec"]["serving"]["podLabels"] = {"modelrollout.io/simulate": "unready"}
    return m


# Two of each kind, so that one round of rollouts makes writes enough for half the kill points.
NAMES = ("good-a", "failing-a", "unready-a", "good-b", "failing-b", "unready-b")
PER_ROUND = 10  # kills in one round of rollouts at most; rounds go on until there were KILLS


def apply_round(cluster: Cluster, ns: str, prometheus: str, version: int) -> dict[str, str]:
    """Version ``version`` of the ModelDeployments; returns the phase each must end in. The first
    version is the first revision of each; later ones are canaries: ``good-*`` pass their gate,
    ``failing-*``'s gate fails, ``unready-*``'s pods never become ready."""
    outcomes = {}
    for name in NAMES:
        kind = name.split("-")[0]
        bad = version > 1 and kind != "good"
        query = "vector(5)" if bad and kind == "failing" else "vector(0)"
        cluster.apply(spec(name, prometheus, version, query=query, unready=bad and kind == "unready"), ns)
        outcomes[name] = "RolledBack" if bad else "Succeeded"
    return outcomes


def revision_of(cluster: Cluster, ns: str, name: str, version: int) -> str:
    """The revision the operator computed for ``version`` of ``name``: the Deployment serving its URI."""
    uri = f"https://models.example.com/{name}-v{version}.onnx"

    def find() -> str | None:
        for dep in deployments(cluster, ns):
            labels = dep["metadata"]["labels"]
            if labels["modelrollout.io/deployment"] == name and uri in json.dumps(dep["spec"]["template"]):
                return labels[REVISION]
        return None

    return wait_until(find, 30, what=f"the Deployment of {name} v{version}")


def assert_converged(cluster: Cluster, ns: str, name: str, phase: str, revisions: list[str], stable: str) -> None:
    """``name`` ends in ``phase`` on ``stable`` with every revision in its history exactly once."""
    st = wait_phase(cluster, ns, phase, name=name, timeout=60)["status"]
    history = [h["revision"] for h in st["history"]]
    assert history == revisions, f"{name}: history {history}, expected {revisions} (a lost or duplicated transition)"
    assert st["stableRevision"] == stable, f"{name}: stable {st['stableRevision']}, expected {stable}"
    assert st["history"][-1]["phase"] == phase, st["history"]


@pytest.mark.usefixtures("alone", "upstream_crds")
def test_the_operator_killed_at_20_random_points_converges(cluster, api, prometheus, namespace):
    seed = int(os.environ.get("MODELROLLOUT_CHAOS_SEED") or 20261129)
    rng = random.Random(seed)
    print(f"\nchaos seed {seed} (MODELROLLOUT_CHAOS_SEED={seed} replays it)")
    kill_points: list[int] = []
    revisions: dict[str, list[str]] = {n: [] for n in NAMES}
    stable: dict[str, str] = {}
    op = OperatorProcess(cluster)
    with Record(api, namespace) as record:
        op.start()
        try:
            version = 0
            while len(kill_points) < KILLS and version < 6:
                version += 1
                outcomes = apply_round(cluster, namespace, prometheus.address, version)
                for _ in range(min(PER_ROUND, KILLS - len(kill_points))):
                    if not record.wait_writes(record.writes + rng.randint(1, 8), 3):
                        break  # quiet: this round has converged or waits on a deadline
                    op.kill()
                    kill_points.append(record.writes)
                    op.start()
                for name, phase in outcomes.items():
                    revisions[name].append(revision_of(cluster, namespace, name, version))
                    if phase == "Succeeded":
                        stable[name] = revisions[name][-1]
                    assert_converged(cluster, namespace, name, phase, revisions[name], stable[name])
        finally:
            op.stop()
    print(f"chaos: killed after operator writes {kill_points}; {len(kill_points)}/{len(kill_points)} kill points "
          f"converged over {version} rounds")  # fmt: skip
    assert len(kill_points) >= KILLS, f"{len(kill_points)} kills: the rollouts converged before {KILLS}"
    assert record.traffic_without_ready_pods() == []
    for name in NAMES[::3]:  # the good ones: every step of every canary once, in order
        weights = record.canary_weights(name)
        assert steps_taken(weights) == [20, 50, 100] * (version - 1), f"{name}: {weights}"


def steps_taken(weights: list[int]) -> list[int]:
    """The canary weights a rollout went through: a step held at 0 while its canary had no pod and then
    given back (50, 0, 50) is one step."""
    nonzero = [w for w in weights if w]
    return [w for i, w in enumerate(nonzero) if nonzero[i - 1 : i] != [w]]


def api_ready(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "--raw", "/readyz", "--request-timeout=2s", check=False).returncode == 0


@pytest.mark.usefixtures("operator", "upstream_crds")
def test_control_plane_prometheus_and_hand_edits_mid_rollout_converge(cluster, api, prometheus, namespace):
    """One rollout through five steps while, one after another: Prometheus is stopped and started, the
    HTTPRoute is deleted and the canary scaled to zero by hand, etcd freezes, the API server crashes.

    The API server comes last: after it, the rest of the control plane is restarted too (below)."""
    faults: dict[str, float] = {}

    def weight_at_least(weight: int) -> None:
        wait_until(lambda: (mdep(cluster, namespace, "good").get("status") or {}).get("canaryWeight", 0) >= weight,
                   60, what=f"canary weight {weight}")  # fmt: skip

    def deployment() -> dict[str, Any]:
        return cluster.get("deploy", f"good-{canary}", namespace) or {}

    def available() -> bool:
        st, meta = deployment().get("status") or {}, deployment().get("metadata") or {}
        return st.get("observedGeneration") == meta.get("generation") and st.get("availableReplicas") == 2

    with Record(api, namespace) as record:
        cluster.apply(spec("good", prometheus.address, 1), namespace)
        first = wait_phase(cluster, namespace, "Succeeded", name="good")["status"]["stableRevision"]
        slow = spec("good", prometheus.address, 2, step="3s")
        slow["spec"]["strategy"]["canary"]["steps"] = [10, 30, 50, 70, 100]
        cluster.apply(slow, namespace)
        canary = revision_of(cluster, namespace, "good", 2)

        weight_at_least(10)
        t0 = time.monotonic()
        prometheus.stop()
        time.sleep(2)
        prometheus.start()
        faults["Prometheus stopped for 2 s"] = time.monotonic() - t0

        t0 = time.monotonic()
        cluster.kubectl("delete", "httproute", "good", "-n", namespace)
        wait_until(lambda: cluster.get("httproute", "good", namespace), 30, what="the deleted HTTPRoute recreated")
        faults["HTTPRoute deleted: recreated"] = time.monotonic() - t0

        weight_at_least(30)
        t0 = time.monotonic()
        cluster.kubectl("scale", "deploy", f"good-{canary}", "--replicas=0", "-n", namespace)
        wait_until(lambda: deployment().get("spec", {}).get("replicas") == 2, 30, what="the canary's replicas put back")
        faults["canary scaled to 0: replicas put back"] = time.monotonic() - t0
        wait_until(available, 60, what="the canary's pods available again")
        faults["canary scaled to 0: pods available"] = time.monotonic() - t0

        weight_at_least(50)
        t0 = time.monotonic()
        with controlplane.frozen(RUN, "etcd"):
            time.sleep(3)
        faults["etcd frozen for 3 s"] = time.monotonic() - t0

        t0 = time.monotonic()
        controlplane.restart(RUN, "kube-apiserver", crash=True)
        wait_until(lambda: api_ready(cluster), 90, what="the restarted API server")
        faults["API server crashed: serving again"] = time.monotonic() - t0
        # Its other clients here (controller-manager, scheduler, kwok) take up to a minute to act
        # again after it restarted (their watches back off); restarted too, the cluster is whole again
        # for the rest of the rollout and for the tests after this one. The operator is not restarted.
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            controlplane.restart(RUN, component)

        assert_converged(cluster, namespace, "good", "Succeeded", [first, canary], canary)
    print("\nchaos faults (seconds): " + ", ".join(f"{k} {v:.1f}" for k, v in faults.items()))
    assert record.traffic_without_ready_pods() == []
    # Every step entered once, in order (from the operator's Events: the record's watches may miss
    # the changes made while they reconnect to the restarted API server, past its new watch cache).
    started = sorted((e for e in events(cluster, namespace, "good") if e["reason"] == "StepStarted"),
                     key=lambda e: int(e["metadata"]["resourceVersion"]))  # fmt: skip
    assert [e["message"].split(": ")[0] for e in started] == [f"step {i}/5" for i in range(1, 6)], started
    assert all(e.get("count", 1) == 1 for e in started)


def test_the_traffic_check_catches_weight_on_a_revision_without_pods() -> None:
    """The invariant checker itself, on a hand-written history (no cluster)."""

    def dep(rv: int, revision: str, available: int) -> Seen:
        labels = {REVISION: revision, "modelrollout.io/deployment": "m"}
        meta = {"name": f"m-{revision}", "labels": labels}
        return Seen(rv, "Deployment", "MODIFIED", {"metadata": meta, "status": {"availableReplicas": available}})

    def svc(rv: int, name: str, revision: str) -> Seen:
        return Seen(rv, "Service", "MODIFIED", {"metadata": {"name": name}, "spec": {"selector": {REVISION: revision}}})

    def route(rv: int, canary: int) -> Seen:
        backends = [{"name": "m-stable", "weight": 100 - canary}, {"name": "m-canary", "weight": canary}]
        return Seen(
            rv, "HTTPRoute", "MODIFIED", {"metadata": {"name": "m"}, "spec": {"rules": [{"backendRefs": backends}]}}
        )

    record = Record(client.ApiClient(), "ns")
    record.events = [dep(10, "a", 2), dep(20, "b", 0), svc(30, "m-stable", "a"), svc(40, "m-canary", "b"), route(50, 0)]
    assert record.traffic_without_ready_pods() == []
    record.events.append(route(60, 20))  # the canary has no pod yet
    assert len(record.traffic_without_ready_pods()) == 1
    record.events += [dep(70, "b", 1), route(80, 50)]  # ready now: fine
    assert len(record.traffic_without_ready_pods()) == 1
    record.events.append(dep(55, "b", 1))  # order is etcd's, not arrival's: it was ready before rv 60
    assert record.traffic_without_ready_pods() == []
    record.events += [dep(90, "a", 0), route(91, 0)]  # stable lost its pods while the canary has some
    assert len(record.traffic_without_ready_pods()) == 1
    record.events += [dep(92, "b", 0), route(93, 0)]  # no revision has a pod: nothing better to route to
    assert len(record.traffic_without_ready_pods()) == 1
