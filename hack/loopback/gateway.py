"""A loopback data plane for the HTTPRoute the operator writes: the stand-in for a Gateway.

Every request is routed the way a Gateway API implementation would: read the ModelDeployment's
HTTPRoute (refreshed every ``refresh`` seconds); a request whose headers satisfy a rule with header
matches (the operator's canary routes) takes that rule, one whose path is an exact-path rule's (the
shadow step's inference rule) takes that one, and is copied in the background to its
``RequestMirror`` target's ready pods for the filter's share (the answer dropped, as a gateway
does), any other the route's last rule (the weighted one); pick a backendRef of the rule by its weight, resolve the
Service to the revision it selects, and forward to one of that revision's *ready* pods (from the
:class:`~hack.loopback.pods.PodRunner`), chosen at random. Feedback is routed exactly like
predictions — by the route's weights, to a random ready pod — because a real route does the same:
it lands on any pod of any revision, which is what prediction tokens are for. The gateway records,
per revision, when predictions first reached it, which pod answered each prediction (bookkeeping
for tests, never used to route), and counts any request that the route sent to a revision with no
ready pod (the "never route to an unready canary" target).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.loopback.pods import REVISION_LABEL, PodRunner

Backends = list[tuple[str, int]]
"""[(revision, weight)] of one rule."""


def by_revision(backends: Backends) -> dict[str, int]:
    """revision -> its share of the weights. Two Services may select the same revision (a promoted
    canary's Service and the stable one, until the operator moves it): their weights add up."""
    out: dict[str, int] = {}
    for revision, weight in backends:
        out[revision] = out.get(revision, 0) + weight
    return out


@dataclass
class HeaderRule:
    """A rule with header matches: a request satisfying any one of ``matches`` takes ``backends``."""

    matches: list[list[dict[str, str]]]  # each: HTTPHeaderMatch entries that must all hold
    backends: Backends

    def holds(self, headers: Mapping[str, str]) -> bool:
        return any(all(_header_holds(m, headers) for m in match) for match in self.matches)


def _header_holds(match: dict[str, str], headers: Mapping[str, str]) -> bool:
    """Gateway API header matching: names case-insensitive; Exact, or RegularExpression searched in
    the value (as Traefik does; the operator's patterns are anchored, so either reading agrees)."""
    value = next((v for k, v in headers.items() if k.lower() == match["name"].lower()), None)
    if value is None:
        return False
    if match.get("type", "Exact") == "Exact":
        return value == match["value"]
    return re.search(match["value"], value) is not None


@dataclass
class PathRule:
    """A rule for one exact path (the shadow step's inference rule): its backends, and the revision
    a ``RequestMirror`` filter copies ``mirror_percent`` % of its requests to."""

    path: str
    backends: Backends
    mirror: str | None = None
    mirror_percent: float = 0.0


@dataclass
class RouteView:
    """The route as it says right now: the weighted rule's backends, the header rules and exact-path
    rules before it."""

    backends: Backends = field(default_factory=list)
    header_rules: list[HeaderRule] = field(default_factory=list)
    read_at: float = 0.0
    path_rules: list[PathRule] = field(default_factory=list)


ANSWERED_BY_LIMIT = 200_000
MIRROR_IN_FLIGHT = 32
"""Mirrored copies under way at once; more are dropped (a real gateway sheds mirrors under load too)."""


@dataclass
class GatewayStats:
    routed: Counter = field(default_factory=Counter)  # revision -> predictions forwarded
    feedback_routed: Counter = field(default_factory=Counter)  # revision -> feedback requests forwarded
    header_routed: Counter = field(default_factory=Counter)  # revision -> predictions routed by a header rule
    unready: Counter = field(default_factory=Counter)  # revision -> requests with no ready pod
    first_seen: dict[str, float] = field(default_factory=dict)  # revision -> monotonic time of first prediction
    weights_log: list[tuple[float, dict[str, int]]] = field(default_factory=list)  # every change of weights
    mirrored: Counter = field(default_factory=Counter)  # revision -> requests copied to it by a RequestMirror
    mirror_answers: Counter = field(default_factory=Counter)  # (revision, status) -> mirrored answers (dropped)
    mirror_dropped: int = 0  # copies not sent because MIRROR_IN_FLIGHT were still under way
    answered_by: OrderedDict[str, str] = field(default_factory=OrderedDict)  # request id -> pod (bounded)


class Gateway:
    """``with Gateway(api, namespace, "fraud", runner) as gw: gw.url`` — a real HTTP front on loopback."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, name: str, runner: PodRunner, refresh: float = 0.2
    ):
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.name, self.runner, self.refresh = namespace, name, runner, refresh
        self.stats = GatewayStats()
        self._mirror_slots = threading.BoundedSemaphore(MIRROR_IN_FLIGHT)
        self._view = RouteView()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True)
        # Weight changes are logged as they happen, not only when a request arrives to notice them.
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch_route, name="gateway-route", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Gateway:
        self._thread.start()
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watcher.join(5)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _watch_route(self) -> None:
        while not self._stop.wait(self.refresh):
            self.weights()

    # ------------------------------------------------------------------ routing
    def weights(self) -> dict[str, int]:
        """revision -> weight as currently written by the operator (refreshed at most every ``refresh`` s)."""
        return by_revision(self._route().backends)

    def _route(self) -> RouteView:
        now = time.monotonic()
        with self._lock:
            if now - self._view.read_at < self.refresh:
                return self._view
        view = self._read_route(now)
        with self._lock:
            self._view = view
            current = by_revision(view.backends)
            if not self.stats.weights_log or self.stats.weights_log[-1][1] != current:
                self.stats.weights_log.append((now, current))
        return view

    def _read_route(self, now: float) -> RouteView:
        try:
            route = self.custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.name
            )
        except ApiException:
            return RouteView(read_at=now)
        if not route["spec"].get("rules"):
            return RouteView(read_at=now)
        *before, weighted = route["spec"]["rules"]
        header_rules = [r for r in before if any(m.get("headers") for m in r.get("matches") or [])]
        return RouteView(
            self._backends(weighted),
            [HeaderRule([m.get("headers") or [] for m in rule.get("matches") or []], self._backends(rule))
             for rule in header_rules],
            now,
            [self._path_rule(rule) for rule in before if rule not in header_rules],
        )  # fmt: skip

    def _path_rule(self, rule: dict[str, Any]) -> PathRule:
        """An exact-path rule and its RequestMirror filter (percent, or fraction; absent: every request)."""
        path = next(m["path"]["value"] for m in rule.get("matches") or [] if "path" in m)
        out = PathRule(path, self._backends(rule))
        for filt in rule.get("filters") or []:
            if filt.get("type") != "RequestMirror":
                continue
            mirror = filt["requestMirror"]
            out.mirror = self._revision_of(mirror["backendRef"]["name"])
            fraction = mirror.get("fraction")
            if "percent" in mirror:
                out.mirror_percent = float(mirror["percent"])
            elif fraction:
                out.mirror_percent = 100.0 * fraction["numerator"] / fraction.get("denominator", 100)
            else:
                out.mirror_percent = 100.0
        return out

    def _backends(self, rule: dict[str, Any]) -> Backends:
        out = []
        for ref in rule.get("backendRefs", []):
            revision = self._revision_of(ref["name"])
            if revision:
                out.append((revision, int(ref.get("weight", 1))))
        return out

    def _revision_of(self, service: str) -> str | None:
        try:
            svc = self.core.read_namespaced_service(service, self.namespace)
        except ApiException:
            return None
        return (svc.spec.selector or {}).get(REVISION_LABEL)

    def pick(self, headers: Mapping[str, str] | None = None, path: str = "") -> tuple[str | None, bool]:
        """(revision, whether a header rule chose it) for a request with these headers and path."""
        revision, by_header, _ = self._choose(self._route(), headers or {}, path)
        return revision, by_header

    @staticmethod
    def _choose(view: RouteView, headers: Mapping[str, str], path: str) -> tuple[str | None, bool, PathRule | None]:
        """A header rule first, then an exact-path rule, then the weighted rule (the precedence the
        operator's rules need: it never writes header and exact-path rules together)."""
        rule = next((r for r in view.header_rules if r.holds(headers)), None)
        bare = path.partition("?")[0]
        exact = None if rule else next((r for r in view.path_rules if r.path == bare), None)
        backends = rule.backends if rule else exact.backends if exact else view.backends
        weights = {rev: w for rev, w in by_revision(backends).items() if w > 0}
        if not weights:
            return None, False, exact
        return random.choices(list(weights), weights=list(weights.values()))[0], rule is not None, exact

    def forward(self, path: str, body: bytes, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """Route one request like the HTTPRoute says: its header rule, its exact-path rule (copied to
        the mirror, if the rule has one) or the weights, then a ready pod."""
        feedback = path.endswith("/feedback")
        revision, by_header, exact = self._choose(self._route(), headers or {}, path)
        if exact is not None and exact.mirror and random.random() * 100 < exact.mirror_percent:
            self._mirror(exact.mirror, path, body)
        if revision is None:
            return 503, b'{"error": "gateway: no route"}'
        pods = self.runner.by_revision().get(revision, [])
        with self._lock:
            if not feedback:
                self.stats.first_seen.setdefault(revision, time.monotonic())
                if by_header:
                    self.stats.header_routed[revision] += 1
            if not pods:
                self.stats.unready[revision] += 1
                return 503, b'{"error": "gateway: no ready endpoint"}'
            (self.stats.feedback_routed if feedback else self.stats.routed)[revision] += 1
        pod = random.choice(pods)
        status, answer = _post(pod.url, path, body)
        if not feedback and status == 200:
            self._note_answer(body, pod.pod)
        return status, answer

    def _mirror(self, revision: str, path: str, body: bytes) -> None:
        """Copy a request to a ready pod of ``revision`` in the background and drop the answer, as a
        gateway's RequestMirror does; bounded (copies beyond MIRROR_IN_FLIGHT are dropped)."""
        pods = self.runner.by_revision().get(revision, [])
        if not pods or not self._mirror_slots.acquire(blocking=False):
            with self._lock:
                self.stats.mirror_dropped += 1
            return
        pod = random.choice(pods)

        def send() -> None:
            try:
                status, _ = _post(pod.url, path, body)
            except OSError:
                status = 502
            finally:
                self._mirror_slots.release()
            with self._lock:
                self.stats.mirrored[revision] += 1
                self.stats.mirror_answers[(revision, status)] += 1

        threading.Thread(target=send, name="gateway-mirror", daemon=True).start()

    def _note_answer(self, body: bytes, pod: str) -> None:
        """Which pod answered a prediction (for tests that check where its label landed)."""
        payload = json.loads(body or b"{}")
        request_id = payload.get("id") if isinstance(payload, dict) else None
        if request_id is None:
            return
        with self._lock:
            answered = self.stats.answered_by
            answered[str(request_id)] = pod
            while len(answered) > ANSWERED_BY_LIMIT:
                answered.popitem(last=False)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    status, answer = gateway.forward(self.path, body, dict(self.headers.items()))
                except (OSError, ValueError) as exc:
                    status, answer = 502, json.dumps({"error": f"gateway: {exc}"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                return

        return Handler


def _post(base: str, path: str, body: bytes) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
