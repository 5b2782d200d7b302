"""Notifications: a ModelDeployment's Events, POSTed as JSON to the webhooks in ``spec.notifications``.

The reconcile only enqueues (:meth:`Notifier.notify` never blocks and never raises); one worker
thread delivers, one notification at a time, in the order they were decided. Each delivery is a
POST with a timeout, retried on connection errors, timeouts, 429 and 5xx with exponential backoff
and jitter (a 429's ``Retry-After`` is honoured when it fits the delivery's budget), never on other
answers, and given up after ``attempts`` tries or ``deadline`` seconds, whichever comes first: a
receiver that is down delays the notifications behind it by at most that long. A full queue drops
its oldest notification. Every outcome is counted in ``modelrollout_notifications_total{result}``
(``sent``, ``failed``, ``dropped``).

Webhook URLs are secrets (Slack's and Teams' carry their token in the path): logs name the target
(``<namespace>/<name> notification <target>``), never its URL, and a ``urlFrom`` Secret is read at
delivery (cached for ``secret_ttl`` seconds), so a rotated URL is used within that time.

Best effort, at most once: the queue lives in memory, so notifications still queued when the
operator stops are lost, and a decision is notified once, when its status is written (handlers).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import json
import logging
import queue
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter

from modelrollout.api import types as t

log = logging.getLogger(__name__)

RESULTS = ("sent", "failed", "dropped")
SecretReader = Callable[[str, str], Mapping[str, bytes] | None]


@dataclass(frozen=True)
class Delivery:
    """One notification to one target."""

    namespace: str
    name: str  # the ModelDeployment's
    target: str  # spec.notifications[].name
    url: str | None
    secret: t.SecretKeyRef | None
    reason: str
    body: bytes

    @property
    def label(self) -> str:
        """How logs name the target: never by its URL."""
        return f"{self.namespace}/{self.name} notification {self.target!r} ({self.reason})"


def payload(
    namespace: str,
    name: str,
    type_: str,
    reason: str,
    message: str,
    status: t.ModelDeploymentStatus | None,
    now: datetime,
) -> dict[str, Any]:
    """The JSON body: Slack's ``text`` (with Slack's three control characters escaped) and the same
    facts as fields for any other receiver (Slack ignores fields it does not know)."""
    text = f"{namespace}/{name}: {reason}: {message}"
    return {
        "text": text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
        "modelrollout": {
            "namespace": namespace,
            "name": name,
            "reason": reason,
            "type": type_,
            "message": message,
            "phase": str(status.phase) if status is not None and status.phase is not None else None,
            "stableRevision": status.stableRevision if status is not None else None,
            "canaryRevision": status.canaryRevision if status is not None else None,
            "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: a redirected POST would lose its body (or go
    somewhere nobody named). The 3xx is a failed delivery, like any other 4xx."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Notifier:
    """The notification queue and its worker thread; one per operator, in the Runtime.

    ``read_secret(namespace, name)`` returns a Secret's decoded data or None (``Kube.read_secret``).
    ``backoff`` is the first retry's wait, doubled per retry (with +-20% jitter) up to ``max_backoff``.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        read_secret: SecretReader | None = None,
        *,
        queue_size: int = 256,
        timeout: float = 5.0,
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 16.0,
        deadline: float = 60.0,
        secret_ttl: float = 30.0,
        user_agent: str = "modelrollout",
    ) -> None:
        if queue_size < 1 or attempts < 1 or timeout <= 0 or deadline <= 0:
            raise ValueError("queue_size and attempts must be at least 1, timeout and deadline positive")
        self.read_secret = read_secret
        self.timeout, self.attempts, self.deadline = timeout, attempts, deadline
        self.backoff, self.max_backoff, self.secret_ttl = backoff, max_backoff, secret_ttl
        self.user_agent = user_agent
        self.total = Counter(
            "modelrollout_notifications_total",
            "Notifications to spec.notifications webhooks, by result: sent, failed (refused, or still "
            "failing after the retries), dropped (the queue was full).",
            ["result"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        for result in RESULTS:
            self.total.labels(result)
        self._queue: queue.Queue[Delivery] = queue.Queue(maxsize=queue_size)
        self._put = threading.Lock()  # producers only: between a drop and a put nobody else adds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opener = urllib.request.build_opener(_NoRedirect())
        self._urls: dict[tuple[str, str, str], tuple[str, float]] = {}  # Secret key -> (URL, expiry)

    # ---------------------------------------------------------------------------- the reconcile's side

    def notify(
        self,
        namespace: str,
        name: str,
        targets: Sequence[t.NotificationSpec],
        type_: str,
        reason: str,
        message: str,
        status: t.ModelDeploymentStatus | None = None,
        now: datetime | None = None,
    ) -> int:
        """Queue one Event for each target that wants its reason; how many were queued. Never blocks:
        a full queue drops its oldest notification (counted as dropped)."""
        wanted = [target for target in targets if target.wants(reason)]
        if not wanted:
            return 0
        body = json.dumps(payload(namespace, name, type_, reason, message, status, now or datetime.now(UTC)))
        for target in wanted:
            ref = target.urlFrom.secretKeyRef if target.urlFrom is not None else None
            self._enqueue(Delivery(namespace, name, target.name, target.url, ref, reason, body.encode()))
        return len(wanted)

    def _enqueue(self, delivery: Delivery) -> None:
        with self._put:
            try:
                self._queue.put_nowait(delivery)
                return
            except queue.Full:
                pass
            with contextlib.suppress(queue.Empty):
                dropped = self._queue.get_nowait()
                self.total.labels("dropped").inc()
                log.warning("%s dropped: the notification queue is full", dropped.label)
            self._queue.put_nowait(delivery)  # only the worker takes meanwhile: there is room

    # ------------------------------------------------------------------------------------- the worker

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="notifications", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the worker: a delivery waiting for its next try gives up; what is queued is lost."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delivery = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                ok = self.deliver(delivery)
            except Exception as exc:  # the worker outlives any one delivery
                # No traceback: its frames' messages could hold the URL.
                log.error("%s failed: unexpected %s", delivery.label, type(exc).__name__)
                ok = False
            self.total.labels("sent" if ok else "failed").inc()

    def deliver(self, delivery: Delivery) -> bool:
        """POST one notification, retrying as the module says; whether the receiver took it."""
        started = time.monotonic()
        url = self._url(delivery)
        if url is None:
            return False
        detail, tries = "", 0
        for attempt in range(1, self.attempts + 1):
            remaining = self.deadline - (time.monotonic() - started)
            if remaining <= 0:
                break
            tries = attempt
            code, retry_after, detail = self._post(url, delivery.body, min(self.timeout, remaining))
            if 200 <= code < 300:
                log.info("%s sent (HTTP %d)", delivery.label, code)
                return True
            if code and code != 429 and code < 500:
                log.warning("%s refused, not retried: %s", delivery.label, detail)
                return False
            if attempt == self.attempts:
                break
            wait = self._wait(attempt)
            if code == 429 and retry_after is not None:
                wait = retry_after
            if time.monotonic() - started + wait > self.deadline:
                log.warning("%s: %s; the next try (in %.1fs) would pass the %gs budget: given up",
                            delivery.label, detail, wait, self.deadline)  # fmt: skip
                return False
            log.info("%s: %s; try %d/%d in %.1fs", delivery.label, detail, attempt + 1, self.attempts, wait)
            if self._stop.wait(wait):
                log.warning("%s: not sent: the operator is stopping", delivery.label)
                return False
        log.warning("%s failed after %d tries: %s", delivery.label, tries, detail)
        return False

    def call_once(self, delivery: Delivery, timeout: float) -> tuple[bool, str]:
        """One POST without retries, for rollout hooks (the engine's interval is their retry): whether
        the receiver answered 2xx, and what happened (HTTP status and the start of a refusal, never
        the URL)."""
        url = self._url(delivery)
        if url is None:
            return False, "no URL: its Secret could not be read (the operator's log says why)"
        code, _, detail = self._post(url, delivery.body, timeout)
        return 200 <= code < 300, detail

    def _wait(self, attempt: int) -> float:
        """Before try ``attempt + 1``: backoff doubled per retry, capped, +-20% jitter."""
        return min(self.backoff * 2 ** (attempt - 1), self.max_backoff) * random.uniform(0.8, 1.2)

    def _post(self, url: str, body: bytes, timeout: float) -> tuple[int, float | None, str]:
        """One POST: (HTTP status or 0 for no answer, a 429's Retry-After in seconds, what happened).
        What happened never includes the URL."""
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": self.user_agent},
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(4096)
                return response.status, None, f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            snippet = ""
            with contextlib.suppress(Exception):
                snippet = " ".join(exc.read(512).decode("utf-8", "replace").split())[:200]
            retry_after = _retry_after(exc.headers.get("Retry-After")) if exc.code == 429 else None
            return exc.code, retry_after, _redact(f"HTTP {exc.code}" + (f": {snippet}" if snippet else ""), url)
        except urllib.error.URLError as exc:
            reason = exc.reason
            text = str(reason) if isinstance(reason, OSError | str) else type(reason).__name__
            return 0, None, _redact(f"no answer: {text}", url)
        except (TimeoutError, ConnectionError) as exc:
            return 0, None, _redact(f"no answer: {type(exc).__name__}: {exc}", url)
        except (OSError, http.client.HTTPException) as exc:  # InvalidURL and friends quote the URL: name only
            return 0, None, f"no answer: {type(exc).__name__}"

    # ----------------------------------------------------------------------------------- the URL

    def _url(self, delivery: Delivery) -> str | None:
        """The target's URL: as written, or read from its Secret now (cached ``secret_ttl`` seconds)."""
        if delivery.secret is None:
            return delivery.url
        ref, ns = delivery.secret, delivery.namespace
        key = (ns, ref.name, ref.key)
        cached = self._urls.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        where = f"Secret {ns}/{ref.name} key {ref.key!r}"
        problem = None
        data: Mapping[str, bytes] | None = None
        if self.read_secret is None:
            problem = "no Secret reader configured"
        else:
            try:
                data = self.read_secret(ns, ref.name)
            except ApiException as exc:
                problem = (
                    f"the operator may not read Secret {ns}/{ref.name}: grant it get on secrets (the chart's "
                    "rbac.readSecrets)"
                    if exc.status == 403
                    else f"reading Secret {ns}/{ref.name} failed: HTTP {exc.status} {exc.reason}"
                )
            except Exception as exc:  # a failed read is a failed delivery, nothing more
                problem = f"reading Secret {ns}/{ref.name} failed: {type(exc).__name__}"
        url = None
        if problem is None:
            raw = data.get(ref.key) if data is not None else None
            if data is None:
                problem = f"Secret {ns}/{ref.name} not found"
            elif raw is None:
                problem = f"{where} not found"
            else:
                try:
                    url = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    problem = f"{where} is not UTF-8 text"
                else:
                    if not _http_url(url):
                        problem, url = f"{where} is not an http:// or https:// URL", None
        if url is None:
            log.warning("%s failed: %s", delivery.label, problem)
            return None
        self._urls[key] = (url, time.monotonic() + self.secret_ttl)
        return url


def _http_url(url: str) -> bool:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not any(c.isspace() for c in url)


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _redact(text: str, url: str) -> str:
    """Belt and braces: what a receiver or a socket error said, without the URL should it appear."""
    return text.replace(url, "<url>") if url else text
