"""Labelled traffic through the real proxy, and what the proxy did with it.

Every request goes to Traefik's NodePort with the scenario's Host header; Traefik picks a backend
Service by the HTTPRoute weights and a pod by its EndpointSlice. The answer names the revision that
predicted (``model_version``), so the split is observed at the client, not inferred. The ground
truth goes back through the proxy too, to whichever pod Traefik picks: with the prediction token
of the answer (``parameters.prediction_token``) when the server issues one, otherwise by request id
(which only counts when it happens to reach the pod that predicted).

Labels are sent in batches every ``label_every`` seconds from their own thread, as delayed ground
truth arrives in practice. Not only for realism: Traefik's weighted round-robin is deterministic,
and a client that sends "predict, label, predict, label" on one route phase-locks with it. Seen on
the real node at a 50/50 weight: the predictions alone went 17 % (one run) and 83 % (another) to
the canary, because the labels took the other turns.

``RouteWatch`` records every change of the weights the operator writes, with its time, so each
request can be compared with the weight in force when it was sent.

Safety: only the node's own addresses (in the network namespace cluster-up made) or loopback are
accepted as targets, and every run is bounded by a request count and a duration.
"""

from __future__ import annotations

import ipaddress
import math
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from kubernetes import client

from hack.realnode.kube import REPO

sys.path.append(str(REPO))  # appended: the repo's operator/ must not shadow the stdlib module
from examples.models import dataset

REVISION_LABEL = "modelrollout.io/revision"


@dataclass
class Sample:
    """One request: when it was sent, which revision answered (None: no answer), the status."""

    at: float
    revision: str | None
    status: int


@dataclass
class TrafficLog:
    samples: list[Sample] = field(default_factory=list)
    feedback: Counter = field(default_factory=Counter)  # "token" / "id" / "refused"
    transport_errors: int = 0

    def by_revision(self) -> Counter:
        return Counter(s.revision for s in self.samples if s.revision)


def check_target(url: str, allowed: list[str]) -> None:
    """Refuse any target outside loopback and the given networks (the node's own)."""
    host = urlsplit(url).hostname or ""
    address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    if address.is_loopback or any(address in ipaddress.ip_network(net, strict=False) for net in allowed):
        return
    raise ValueError(f"traffic may only go to loopback or the node's networks {allowed}, not {url!r}")


class ProxyTraffic:
    """Bounded labelled requests at ``rate`` per second through the proxy, in background threads."""

    def __init__(self, url: str, host: str, allowed: list[str], *, rate: float = 40, concurrency: int = 4,
                 seed: int = 1, concept: str = "current", model_name: str = "fraud",
                 label_every: float = 0.5) -> None:  # fmt: skip
        check_target(url, allowed)
        self.url, self.host, self.rate, self.concurrency = url.rstrip("/"), host, rate, concurrency
        self.seed, self.concept, self.model_name, self.label_every = seed, concept, model_name, label_every
        self.log = TrafficLog()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._labels: list[dict] = []  # pending {"token" | "id", "truth"} items
        self._labeller: threading.Thread | None = None

    def start(self, max_requests: int, max_seconds: float) -> ProxyTraffic:
        rows = dataset.labelled_requests(max_requests, seed=self.seed, id_prefix=f"r{uuid.uuid4().hex[:8]}",
                                         concept=self.concept)  # fmt: skip
        deadline = time.monotonic() + max_seconds
        schedule = {"next": time.monotonic(), "left": max_requests}

        def next_row() -> dataset.LabelledRequest | None:
            with self._lock:
                if self._stop.is_set() or schedule["left"] <= 0 or time.monotonic() >= deadline:
                    return None
                schedule["left"] -= 1
                at = schedule["next"] = max(schedule["next"] + 1 / self.rate, time.monotonic())
                row = next(rows, None)
            time.sleep(max(0.0, at - time.monotonic()))
            return row

        def worker() -> None:
            with requests.Session() as session:
                session.headers["Host"] = self.host
                while (row := next_row()) is not None and not self._stop.is_set():
                    self._send(session, row)

        self._threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.concurrency)]
        for t in self._threads:
            t.start()
        self._labeller = threading.Thread(target=self._send_labels, daemon=True)
        self._labeller.start()
        return self

    def _send_labels(self) -> None:
        """Every ``label_every`` s, the labels gathered so far in one batch (at most 200) through the proxy."""
        with requests.Session() as session:
            session.headers["Host"] = self.host
            while True:
                stopping = self._stop.wait(self.label_every) and not any(t.is_alive() for t in self._threads)
                with self._lock:
                    batch, self._labels = self._labels[:200], self._labels[200:]
                if batch:
                    self._post_labels(session, batch)
                if stopping and not self._labels:
                    return

    def _post_labels(self, session: requests.Session, batch: list[dict]) -> None:
        try:
            answer = session.post(f"{self.url}/v2/models/{self.model_name}/feedback", json={"feedback": batch},
                                  timeout=10)  # fmt: skip
            results = _json(answer).get("results") or []
        except requests.RequestException:
            results = []
        with self._lock:
            for item, result in zip(batch, results + [{}] * (len(batch) - len(results)), strict=True):
                matched = result.get("status") == "matched"
                self.log.feedback[("token" if "token" in item else "id") if matched else "refused"] += 1

    def _send(self, session: requests.Session, row: dataset.LabelledRequest) -> None:
        at = time.monotonic()
        try:
            answer = session.post(f"{self.url}/v2/models/{self.model_name}/infer", json=row.body, timeout=10)
        except requests.RequestException:
            with self._lock:
                self.log.transport_errors += 1
            return
        body = _json(answer)
        with self._lock:
            self.log.samples.append(Sample(at, body.get("model_version"), answer.status_code))
        if answer.status_code != 200:
            return
        token = (body.get("parameters") or {}).get("prediction_token")
        feedback = dataset.feedback_body(row.id, row.labels)
        if token:
            feedback = {"token": token, "truth": feedback["truth"]}
        with self._lock:
            self._labels.append(feedback)

    def stop(self) -> TrafficLog:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        if self._labeller:
            self._labeller.join(15)
        return self.log


def _json(answer: requests.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class RouteWatch:
    """Polls the HTTPRoute every ``period`` s and logs (time, {revision: weight}) on every change."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, period: float = 0.2) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.name, self.period = namespace, name, period
        self.log: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            try:
                weights = self.read()
            except Exception:  # an API hiccup must not end the watch
                continue
            if not self.log or self.log[-1][1] != weights:
                self.log.append((time.monotonic(), weights))

    def read(self) -> dict[str, int]:
        try:
            route = self.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.name
            )
        except client.ApiException:
            return {}
        out: dict[str, int] = {}
        for ref in route["spec"]["rules"][-1].get("backendRefs", []):
            svc = self.core.read_namespaced_service(ref["name"], self.namespace)
            revision = (svc.spec.selector or {}).get(REVISION_LABEL)
            if revision:
                out[revision] = out.get(revision, 0) + int(ref.get("weight", 1))
        return out

    def first_seen(self, revision: str) -> float | None:
        """When the route first sent ``revision`` a weight (the write that also adds its header rule)."""
        return next((t for t, weights in self.log if weights.get(revision)), None)

    def weight_at(self, at: float) -> dict[str, int]:
        current: dict[str, int] = {}
        for t, weights in self.log:
            if t > at:
                break
            current = weights
        return current


@dataclass
class StepSplit:
    """Requests sent while one weight was in force, and how many the canary answered."""

    canary_weight: int
    requests: int
    canary: int
    z: float

    @property
    def observed(self) -> float:
        return self.canary / self.requests if self.requests else 0.0

    @property
    def within_noise(self) -> bool:
        p = self.canary_weight / 100
        if p in (0.0, 1.0):
            return self.canary == round(p * self.requests)
        return abs(self.z) <= 3.0


PROXY_SETTLE_S = 1.5
"""Traefik applies a route change after its provider throttle (0.5 s) and a reload; requests sent
sooner may still follow the previous route."""


def split_per_step(watch: RouteWatch, log: TrafficLog, canary: str, settle: float = PROXY_SETTLE_S) -> list[StepSplit]:
    """Per weight step of ``canary``: observed share vs written weight (binomial z-score).

    Requests sent within ``settle`` s after a change are left out: Traefik applies new weights after
    its provider throttle (0.5 s) and a reload, and a request in flight may be counted either way.
    """
    steps: list[StepSplit] = []
    changes = [(t, w) for t, w in watch.log]
    for i, (start, weights) in enumerate(changes):
        total = sum(weights.values())
        if canary not in weights or not total:
            continue
        end = changes[i + 1][0] if i + 1 < len(changes) else math.inf
        window = [s for s in log.samples if start + settle <= s.at < end and s.revision]
        if not window:
            continue
        hits = sum(1 for s in window if s.revision == canary)
        p, n = weights[canary] / total, len(window)
        z = (hits - n * p) / math.sqrt(n * p * (1 - p)) if 0 < p < 1 else 0.0
        steps.append(StepSplit(round(100 * p), n, hits, z))
    return steps
