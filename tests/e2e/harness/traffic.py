"""Bounded, labelled inference traffic with ground-truth feedback, split across backends by weight.

Why: the accuracy gate needs labels joined to predictions *by the revision that made them*, the
error-rate and latency gates need real requests, and the operator e2e needs the split to follow the
weights the operator wrote into its route objects. So each request is a row from
``examples/models/dataset.py`` with a known label; the sender picks a backend by weight (smooth
weighted round-robin: deterministic, exact proportions, no randomness to explain in a flaky test),
posts ``/v2/models/{name}/infer``, and on a 2xx posts the true label to the same backend's
``/feedback`` by request id.

Safety: every run is bounded by ``max_requests`` *and* ``max_seconds``, an optional ``rate`` caps
requests per second, and only loopback backends are accepted.

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

import ipaddress
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from tests.e2e.harness.procs import REPO

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
    transport_errors: Counter[str] = field(default_factory=Counter)
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
    to the backend that answered. Each sender has its own request-id prefix, so feedback never
    joins to another run's predictions. ``concurrency`` > 1 uses that many worker threads (useful
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
        self.id_prefix = f"t{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
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
        """Send until ``max_requests`` were sent or ``max_seconds`` passed (or :meth:`stop`); blocking."""
        if max_requests < 0 or max_seconds <= 0:
            raise ValueError("max_requests must be >= 0 and max_seconds > 0")
        result = TrafficResult(codes={name: Counter() for name in self.backends})
        rows: Iterator[dataset.LabelledRequest] = dataset.labelled_requests(
            max_requests * self.batch_size,
            seed=self.seed,
            batch_size=self.batch_size,
            id_prefix=self.id_prefix,
            concept=self.concept,
        )
        picker, cache = _SmoothWeighted(), {}
        started = time.monotonic()
        deadline = started + max_seconds
        gap = 1.0 / rate if rate else 0.0
        schedule = {"next": started}

        def next_job() -> tuple[str, dataset.LabelledRequest] | None:
            while not self._stop.is_set():
                with self._lock:
                    now = time.monotonic()
                    if now >= deadline or result.total >= max_requests:
                        return None
                    if now < schedule["next"]:
                        wait = schedule["next"] - now
                    else:
                        backend = picker.pick(self._current_weights(cache))
                        if backend is None:
                            wait = 0.05
                        else:
                            request = next(rows, None)
                            if request is None:
                                return None
                            result.requests[backend] += 1
                            schedule["next"] = max(schedule["next"] + gap, now) if gap else now
                            return backend, request
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            return None

        def worker() -> None:
            session = requests.Session()
            try:
                while (job := next_job()) is not None:
                    self._send(session, job[0], job[1], result)
            finally:
                session.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max_seconds + 2 * self.timeout + 5)
        result.seconds = time.monotonic() - started
        return result

    def _send(
        self, session: requests.Session, backend: str, request: dataset.LabelledRequest, result: TrafficResult
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
        try:
            sent = session.post(
                f"{base}/v2/models/{self.model_name}/feedback",
                json=dataset.feedback_body(request.id, request.labels),
                timeout=self.timeout,
            )
        except requests.RequestException:
            with self._lock:
                result.transport_errors[backend] += 1
            return
        if 200 <= sent.status_code < 300:
            with self._lock:
                result.feedback[backend] += 1

    def start(self, *, max_requests: int, max_seconds: float, rate: float | None = None) -> None:
        """Run in a background thread; :meth:`stop` ends it early and returns the result."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("traffic is already running")
        self._stop.clear()

        def body() -> None:
            self._result = self.run(max_requests=max_requests, max_seconds=max_seconds, rate=rate)

        self._thread = threading.Thread(target=body, name="traffic", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> TrafficResult:
        """Stop a background run (idempotent) and return what it sent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout if timeout is not None else 2 * self.timeout + 5)
        return self._result or TrafficResult()

    def __enter__(self) -> TrafficSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
