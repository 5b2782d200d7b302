"""Bounded, labelled inference traffic with ground-truth feedback, split across backends by weight.

Why: the accuracy gate needs labels joined to predictions *by the revision that made them*, the
error-rate and latency gates need real requests, and the operator e2e needs the split to follow the
weights the operator wrote into its route objects. So each request is a row from
``examples/models/dataset.py`` with a known label; the sender picks a backend by weight (smooth
weighted round-robin: deterministic, exact proportions, no randomness to explain in a flaky test),
posts ``/v2/models/{name}/infer``, and on a 2xx posts the true label to the same backend's
``/feedback`` — with the response's prediction token (``parameters.prediction_token``) when it
carried one, else by request id. Behind a gateway "the same backend" is the route, so the label
lands on whichever pod the route picks, as in production. A ``delay_fraction`` of the labels is
held back ``delay_seconds`` (labels arrive late in real life: after the pod that predicted is gone);
:meth:`TrafficSender.drain` stops predicting and waits until those have been sent too. A feedback
request that meets a transport error or a 502/503/504 is retried once, as a client would.

Safety: every run is bounded by ``max_requests`` *and* ``max_seconds`` (plus ``delay_seconds`` for
the held-back labels), an optional ``rate`` caps requests per second, and only loopback backends
are accepted.

Usage::

    sender = TrafficSender({"r1": stable.url, "r2": canary.url}, weights={"r1": 90, "r2": 10})
    result = sender.run(max_requests=500, max_seconds=30)
    print(result.requests["r2"], result.codes["r2"])

    # following live weights (e.g. read from an HTTPRoute), in the background:
    sender = TrafficSender(backends, weights=lambda: read_route_weights(), refresh_seconds=0.5)
    sender.start(max_requests=10_000, max_seconds=120, rate=50)
    ...
    result = sender.stop()
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from hack.loopback.procs import REPO

try:
    from examples.models import dataset
except ImportError:  # run outside pytest (which puts the repo root on sys.path)
    import sys

    # appended, never prepended: the root's ``operator/`` must not shadow the standard library module
    sys.path.append(str(REPO))
    from examples.models import dataset

Weights = Mapping[str, float]


@dataclass
class TrafficResult:
    """What a run sent, per backend name: requests, HTTP status codes, feedback posted."""

    requests: Counter[str] = field(default_factory=Counter)
    codes: dict[str, Counter[int]] = field(default_factory=dict)
    feedback: Counter[str] = field(default_factory=Counter)
    """Feedback requests answered 2xx, per backend."""
    transport_errors: Counter[str] = field(default_factory=Counter)
    feedback_codes: Counter[int] = field(default_factory=Counter)
    """Final status of every feedback request (0: transport error), after the one retry."""
    labels_sent: int = 0
    """Rows of ground truth sent (one per predicted row), whatever the answer."""
    labels_accepted: int = 0
    """Rows of ground truth in feedback answered 2xx."""
    with_token: int = 0
    """Feedback requests that named their prediction by token (the rest: by request id)."""
    delayed_sent: list[tuple[str, float]] = field(default_factory=list)
    """(request id, monotonic send time) of every held-back label that was sent."""
    delayed_dropped: int = 0
    """Held-back labels never sent (the run was stopped, not drained)."""
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def ok(self, backend: str) -> int:
        """2xx answers from ``backend``."""
        return sum(n for code, n in self.codes.get(backend, Counter()).items() if 200 <= code < 300)

    def errors(self, backend: str) -> int:
        """5xx answers from ``backend``."""
        return sum(n for code, n in self.codes.get(backend, Counter()).items() if code >= 500)


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"traffic may only go to loopback addresses, not {url!r}")


class _SmoothWeighted:
    """Nginx's smooth weighted round-robin: over any window the picks follow the weights exactly."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}

    def pick(self, weights: Weights) -> str | None:
        live = {k: float(w) for k, w in weights.items() if w > 0}
        if not live:
            return None
        total = sum(live.values())
        for key, weight in live.items():
            self.current[key] = self.current.get(key, 0.0) + weight
        best = max(live, key=lambda k: (self.current[k], k))
        self.current[best] -= total
        for key in list(self.current):
            if key not in live:
                del self.current[key]
        return best


class TrafficSender:
    """Sends labelled requests to named backends (``name -> base URL``) split by ``weights``.

    ``weights`` is a mapping or a callable returning one (re-read every ``refresh_seconds``);
    default: equal weights. A backend with weight 0 gets nothing; when all weights are 0 the sender
    idles (still bounded by ``max_seconds``). ``feedback`` posts the true label of every 2xx answer
    to the backend that answered (its token if the answer had one, else its request id), a
    ``delay_fraction`` of them ``delay_seconds`` later. Each sender has its own request-id prefix,
    so feedback never joins to another run's predictions. ``concurrency`` > 1 uses that many worker threads (useful
    for slow models); the split stays weighted because picks are made under one lock.
    """

    def __init__(
        self,
        backends: Mapping[str, str],
        *,
        weights: Weights | Callable[[], Weights] | None = None,
        model_name: str = "fraud",
        seed: int = 1,
        batch_size: int = 1,
        feedback: bool = True,
        concurrency: int = 1,
        timeout: float = 10.0,
        refresh_seconds: float = 1.0,
        concept: str = "current",
        delay_fraction: float = 0.0,
        delay_seconds: float = 0.0,
        headers: Mapping[str, str] | None = None,
        scale: Mapping[str, float] | None = None,
    ) -> None:
        if not backends:
            raise ValueError("at least one backend is needed")
        for url in backends.values():
            _check_loopback(url)
        self.backends = {name: url.rstrip("/") for name, url in backends.items()}
        self._weights = weights if weights is not None else dict.fromkeys(backends, 1.0)
        self.model_name = model_name
        self.seed = seed
        self.batch_size = batch_size
        self.feedback = feedback
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.refresh_seconds = refresh_seconds
        self.concept = concept  # "legacy" sends drifted data (dataset.CONCEPTS)
        if not 0.0 <= delay_fraction <= 1.0 or delay_seconds < 0:
            raise ValueError("delay_fraction must be within 0..1 and delay_seconds >= 0")
        self.delay_fraction = delay_fraction
        self.delay_seconds = delay_seconds
        self.headers = dict(headers or {})  # on every request, e.g. a tester's canary-route header
        self.scale = dict(scale or {})  # numeric features multiplied by name: shifted (drifted) inputs
        self.id_prefix = f"t{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._result: TrafficResult | None = None

    def _current_weights(self, cache: dict[str, object]) -> Weights:
        if not callable(self._weights):
            return self._weights
        now = time.monotonic()
        if "at" not in cache or now - float(cache["at"]) >= self.refresh_seconds:  # type: ignore[arg-type]
            cache["weights"], cache["at"] = dict(self._weights()), now
        return cache["weights"]  # type: ignore[return-value]

    def run(self, *, max_requests: int, max_seconds: float, rate: float | None = None) -> TrafficResult:
        """Send until ``max_requests`` were sent or ``max_seconds`` passed (or :meth:`stop`/:meth:`drain`),
        then send the held-back labels as they come due (at most ``delay_seconds`` more); blocking."""
        if max_requests < 0 or max_seconds <= 0:
            raise ValueError("max_requests must be >= 0 and max_seconds > 0")
        result = TrafficResult(codes={name: Counter() for name in self.backends})
        rows: Iterator[dataset.LabelledRequest] = dataset.labelled_requests(
            max_requests * self.batch_size,
            seed=self.seed,
            batch_size=self.batch_size,
            id_prefix=self.id_prefix,
            concept=self.concept,
            scale=self.scale,
        )
        picker, cache = _SmoothWeighted(), {}
        started = time.monotonic()
        deadline = started + max_seconds
        final = deadline + self.delay_seconds + 1.0
        gap = 1.0 / rate if rate else 0.0
        state: dict[str, Any] = {"next": started, "exhausted": False}
        held: list[tuple[float, int, str, dict[str, Any], str, int]] = []  # heap of held-back labels

        def predicting(now: float) -> bool:
            return (not self._draining.is_set() and not state["exhausted"] and now < deadline
                    and result.total < max_requests)  # fmt: skip

        def next_job() -> tuple[Any, ...] | None:
            while not self._stop.is_set():
                with self._lock:
                    now = time.monotonic()
                    if held and held[0][0] <= now:
                        _, _, backend, body, rid, labels = heapq.heappop(held)
                        return ("feedback", backend, body, rid, labels)
                    if not predicting(now) and (not held or now >= final):
                        return None
                    waits = [held[0][0] - now] if held else []
                    if predicting(now):
                        if now < state["next"]:
                            waits.append(state["next"] - now)
                        else:
                            backend = picker.pick(self._current_weights(cache))
                            request = next(rows, None) if backend is not None else None
                            if backend is None:
                                waits.append(0.05)
                            elif request is None:
                                state["exhausted"] = True
                            else:
                                result.requests[backend] += 1
                                state["next"] = max(state["next"] + gap, now) if gap else now
                                return ("infer", backend, request)
                    wait = min(waits) if waits else 0.0
                time.sleep(max(0.0, min(wait, 0.25, final - time.monotonic())))
            return None

        def hold(backend: str, body: dict[str, Any], rid: str, labels: int) -> None:
            with self._lock:
                heapq.heappush(held, (time.monotonic() + self.delay_seconds, len(result.delayed_sent) + len(held),
                                      backend, body, rid, labels))  # fmt: skip

        def worker() -> None:
            session = requests.Session()
            session.headers.update(self.headers)
            try:
                while (job := next_job()) is not None:
                    if job[0] == "infer":
                        self._send(session, job[1], job[2], result, hold)
                    else:
                        self._send_feedback(session, *job[1:], result, delayed=True)
            finally:
                session.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max_seconds + self.delay_seconds + 2 * self.timeout + 5)
        with self._lock:
            result.delayed_dropped = len(held)
        result.seconds = time.monotonic() - started
        return result

    def _send(
        self,
        session: requests.Session,
        backend: str,
        request: dataset.LabelledRequest,
        result: TrafficResult,
        hold: Callable[[str, dict[str, Any], str, int], None],
    ) -> None:
        base = self.backends[backend]
        try:
            answer = session.post(f"{base}/v2/models/{self.model_name}/infer", json=request.body, timeout=self.timeout)
        except requests.RequestException:
            with self._lock:
                result.transport_errors[backend] += 1
            return
        with self._lock:
            result.codes[backend][answer.status_code] += 1
        if not self.feedback or not 200 <= answer.status_code < 300:
            return
        body = dataset.feedback_body(request.id, request.labels)
        token = _token(answer)
        if token is not None:
            body = {"token": token, "truth": body["truth"]}
        with self._lock:
            delayed = self.delay_fraction > 0 and self._rng.random() < self.delay_fraction
        if delayed:
            hold(backend, body, request.id, len(request.labels))
        else:
            self._send_feedback(session, backend, body, request.id, len(request.labels), result, delayed=False)

    def _send_feedback(
        self,
        session: requests.Session,
        backend: str,
        body: dict[str, Any],
        request_id: str,
        labels: int,
        result: TrafficResult,
        *,
        delayed: bool,
    ) -> None:
        """POST one label (retried once on a transport error or 502/503/504) and account for it."""
        url = f"{self.backends[backend]}/v2/models/{self.model_name}/feedback"
        sent_at = time.monotonic()
        status = 0
        for attempt in range(2):
            try:
                status = session.post(url, json=body, timeout=self.timeout).status_code
            except requests.RequestException:
                status = 0
            if status not in (0, 502, 503, 504) or attempt:
                break
            time.sleep(0.2)
        with self._lock:
            result.feedback_codes[status] += 1
            result.labels_sent += labels
            result.with_token += "token" in body
            if status == 0:
                result.transport_errors[backend] += 1
            if 200 <= status < 300:
                result.feedback[backend] += 1
                result.labels_accepted += labels
            if delayed:
                result.delayed_sent.append((request_id, sent_at))

    def start(self, *, max_requests: int, max_seconds: float, rate: float | None = None) -> None:
        """Run in a background thread; :meth:`stop` ends it early and returns the result."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("traffic is already running")
        self._stop.clear()
        self._draining.clear()

        def body() -> None:
            self._result = self.run(max_requests=max_requests, max_seconds=max_seconds, rate=rate)

        self._thread = threading.Thread(target=body, name="traffic", daemon=True)
        self._thread.start()

    def drain(self, timeout: float | None = None) -> TrafficResult:
        """Stop predicting, send every held-back label when it is due, and return what was sent."""
        self._draining.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout if timeout is not None else self.delay_seconds + 2 * self.timeout + 5)
        return self.stop()

    def stop(self, timeout: float | None = None) -> TrafficResult:
        """Stop a background run (idempotent; held-back labels not yet due are dropped) and return
        what it sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout if timeout is not None else 2 * self.timeout + 5)
        return self._result or TrafficResult()

    def __enter__(self) -> TrafficSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _token(answer: requests.Response) -> str | None:
    """The prediction token of an infer answer (``parameters.prediction_token``), if it has one."""
    try:
        parameters = answer.json().get("parameters")
    except ValueError:
        return None
    token = parameters.get("prediction_token") if isinstance(parameters, dict) else None
    return token if isinstance(token, str) else None
