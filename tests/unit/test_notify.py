"""Notifications (modelrollout.notify) against a real loopback HTTP receiver: the payload, which
Events go where, retries and what stops them, the bounded queue, URLs from Secrets, and that a
webhook URL never reaches the logs."""

from __future__ import annotations

import ast
import json
import logging
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from modelrollout import engine
from modelrollout.api import types as t
from modelrollout.notify import Notifier, payload
from prometheus_client import CollectorRegistry

from hack.loopback.procs import LoopbackHTTPServer, free_port, send, wait_for

TOKEN = "T000/B000/XXXsecretTOKEN"
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class Receiver(LoopbackHTTPServer):
    """A webhook: records each POST; answers from ``answers`` in turn ((status, headers, body)), then 200."""

    name = "webhook"

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]] | None = None, delay: float = 0.0):
        self.answers = list(answers or [])
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def hook(self) -> str:
        return f"{self.url}/services/{TOKEN}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body),
                                           "at": time.monotonic()})  # fmt: skip
                    status, headers, text = outer.answers.pop(0) if outer.answers else (200, {}, b"ok")
                time.sleep(outer.delay)
                send(self, status, text, "text/plain", **headers)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def reasons(self) -> list[str]:
        with self.lock:
            return [r["body"]["modelrollout"]["reason"] for r in self.requests]


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def notifier(registry: CollectorRegistry, **kwargs: Any) -> Notifier:
    return Notifier(registry, **{"backoff": 0.01, "max_backoff": 0.05, "timeout": 2.0, **kwargs})


def count(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("modelrollout_notifications_total", {"result": result}) or 0.0


def target(name: str = "ml-team", url: str | None = None, **kwargs: Any) -> t.NotificationSpec:
    return t.NotificationSpec.model_validate({"name": name, **({"url": url} if url else {}), **kwargs})


def status(**kwargs: Any) -> t.ModelDeploymentStatus:
    return t.ModelDeploymentStatus.model_validate(kwargs)


@pytest.fixture
def running(registry):
    started: list[Notifier] = []

    def make(**kwargs: Any) -> Notifier:
        n = notifier(registry, **kwargs)
        n.start()
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()


def settled(registry: CollectorRegistry, total: float) -> bool:
    return sum(count(registry, r) for r in ("sent", "failed")) >= total


# --------------------------------------------------------------------------------------- payload


def test_payload_is_slack_text_plus_the_facts(receiver, registry, running):
    n = running()
    st = status(phase="RolledBack", stableRevision="abc123", canaryRevision=None)
    message = "revision def456 rolled back to abc123: GateFailedErrorRate: 0.2 > 0.02 & <more>"
    queued = n.notify("ml", "fraud", [target(url=receiver.hook)], "Warning", "RolledBack", message, st, NOW)
    assert queued == 1
    wait_for(lambda: settled(registry, 1), 5, "the delivery")
    (request,) = receiver.requests
    assert request["path"] == f"/services/{TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "text": "ml/fraud: RolledBack: revision def456 rolled back to abc123: GateFailedErrorRate: 0.2 &gt; 0.02 "
        "&amp; &lt;more&gt;",
        "modelrollout": {
            "namespace": "ml",
            "name": "fraud",
            "reason": "RolledBack",
            "type": "Warning",
            "message": "revision def456 rolled back to abc123: GateFailedErrorRate: 0.2 > 0.02 & <more>",
            "phase": "RolledBack",
            "stableRevision": "abc123",
            "canaryRevision": None,
            "time": "2024-05-01T12:00:00Z",
        },
    }
    assert count(registry, "sent") == 1 and count(registry, "failed") == 0


def test_payload_without_a_status():
    body = payload("ml", "fraud", "Normal", "RevisionCreated", "revision r1", None, NOW)["modelrollout"]
    assert (body["phase"], body["stableRevision"], body["canaryRevision"]) == (None, None, None)


# -------------------------------------------------------------------------------------- filtering


def test_events_select_reasons_and_a_trailing_star_a_prefix(receiver, registry, running):
    n = running()
    picky = target("picky", receiver.hook + "/picky", events=["Promoted", "WatchFailed*", "Drifted"])
    everything = target("all", receiver.hook + "/all")
    sent = ["PhaseProgressing", "Promoted", "WatchFailedErrorRate", "WatchRecovered", "Drifted", "DriftCleared"]
    for reason in sent:
        n.notify("ml", "fraud", [picky, everything], "Normal", reason, "m", None, NOW)
    wait_for(lambda: settled(registry, 9), 5, "the deliveries")
    by_path = {p: [r["body"]["modelrollout"]["reason"] for r in receiver.requests if r["path"].endswith(p)]
               for p in ("/picky", "/all")}  # fmt: skip
    assert by_path == {"/picky": ["Promoted", "WatchFailedErrorRate", "Drifted"], "/all": sent}


def test_no_target_wants_it_queues_nothing(registry):
    n = notifier(registry)
    assert n.notify("ml", "fraud", [target(url="https://x/y", events=["Promoted"])], "Normal", "Drifted", "m") == 0
    assert n.notify("ml", "fraud", [], "Normal", "Drifted", "m") == 0
    assert n.pending() == 0


# ---------------------------------------------------------------------------------------- retries


def test_a_5xx_is_retried_with_backoff_until_it_is_taken(registry, running):
    with Receiver([(500, {}, b"oops"), (503, {}, b"busy")]) as r:
        n = running(backoff=0.1, max_backoff=1.0)
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        assert len(r.requests) == 3
        gaps = [b["at"] - a["at"] for a, b in zip(r.requests, r.requests[1:], strict=False)]
        assert gaps[0] >= 0.08 and gaps[1] >= 0.16, gaps  # 0.1 s, then 0.2 s, +-20%
    assert count(registry, "sent") == 1 and count(registry, "failed") == 0


def test_a_4xx_is_not_retried_and_its_answer_is_logged(registry, running, caplog):
    caplog.set_level(logging.DEBUG, logger="modelrollout.notify")
    with Receiver([(400, {}, b"invalid_payload\n")]) as r:
        n = running()
        n.notify("ml", "fraud", [target("slack", r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        time.sleep(0.1)
        assert len(r.requests) == 1
    assert count(registry, "failed") == 1 and count(registry, "sent") == 0
    assert "ml/fraud notification 'slack' (Promoted) refused, not retried: HTTP 400: invalid_payload" in caplog.text


def test_a_redirect_is_not_followed(registry, running):
    with Receiver([(307, {"Location": "http://127.0.0.1:1/elsewhere"}, b"")]) as r:
        n = running()
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        assert len(r.requests) == 1
    assert count(registry, "failed") == 1


def test_a_429_waits_as_long_as_retry_after_says(registry, running):
    with Receiver([(429, {"Retry-After": "1"}, b"slow down")]) as r:
        n = running(backoff=0.01)
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        assert len(r.requests) == 2
        assert r.requests[1]["at"] - r.requests[0]["at"] >= 0.95
    assert count(registry, "sent") == 1


def test_a_retry_after_beyond_the_budget_gives_up_at_once(registry, running, caplog):
    caplog.set_level(logging.INFO, logger="modelrollout.notify")
    with Receiver([(429, {"Retry-After": "3600"}, b"")]) as r:
        n = running(deadline=10)
        started = time.monotonic()
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        assert time.monotonic() - started < 2 and len(r.requests) == 1
    assert count(registry, "failed") == 1
    assert "would pass the 10s budget" in caplog.text


def test_no_answer_is_retried_then_failed_after_the_attempts(registry, running, caplog):
    caplog.set_level(logging.INFO, logger="modelrollout.notify")
    n = running(attempts=3)
    url = f"http://127.0.0.1:{free_port()}/services/{TOKEN}"  # nothing listens
    n.notify("ml", "fraud", [target("down", url)], "Normal", "Promoted", "m", None, NOW)
    wait_for(lambda: settled(registry, 1), 5, "the delivery")
    assert count(registry, "failed") == 1
    assert "failed after 3 tries: no answer" in caplog.text
    assert TOKEN not in caplog.text


def test_a_slow_receiver_times_out_and_the_delivery_keeps_its_budget(registry, running):
    with Receiver(delay=1.0) as r:
        n = running(timeout=0.2, deadline=0.5, attempts=5)
        started = time.monotonic()
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 1), 5, "the delivery")
        assert time.monotonic() - started < 1.5
    assert count(registry, "failed") == 1


# ------------------------------------------------------------------------------------------ queue


def test_a_full_queue_drops_the_oldest_and_counts_it(receiver, registry):
    n = notifier(registry, queue_size=2)  # not started: nothing is taken off the queue yet
    hook = [target(url=receiver.hook)]
    started = time.monotonic()
    for reason in ("RevisionCreated", "PhaseProgressing", "StepStarted", "Promoted"):
        n.notify("ml", "fraud", hook, "Normal", reason, "m", None, NOW)
    assert time.monotonic() - started < 0.5, "notify must never wait for the queue"
    assert count(registry, "dropped") == 2 and n.pending() == 2
    n.start()
    try:
        wait_for(lambda: settled(registry, 2), 5, "the deliveries")
    finally:
        n.stop()
    assert receiver.reasons() == ["StepStarted", "Promoted"]


def test_stop_ends_a_delivery_waiting_for_its_next_try(registry):
    with Receiver([(500, {}, b"")] * 10) as r:
        n = notifier(registry, backoff=30, max_backoff=30)
        n.start()
        n.notify("ml", "fraud", [target(url=r.hook)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: r.requests, 5, "the first try")
        started = time.monotonic()
        n.stop()
        assert time.monotonic() - started < 1.5
    assert count(registry, "failed") == 1


# ---------------------------------------------------------------------------------------- urlFrom


class FakeKube:
    """Kube.read_secret's contract: a Secret's decoded data, None when it is missing, ApiException otherwise."""

    def __init__(self, secrets: dict[tuple[str, str], dict[str, bytes]] | None = None, error: int | None = None):
        self.secrets = secrets or {}
        self.error = error
        self.reads: list[tuple[str, str]] = []

    def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        self.reads.append((namespace, name))
        if self.error is not None:
            raise ApiException(status=self.error, reason="Forbidden")
        return self.secrets.get((namespace, name))


def from_secret(name: str = "slack", key: str = "url", events: list[str] | None = None) -> t.NotificationSpec:
    spec: dict[str, Any] = {"name": "ml-team", "urlFrom": {"secretKeyRef": {"name": name, "key": key}}}
    return t.NotificationSpec.model_validate({**spec, **({"events": events} if events else {})})


def test_url_from_a_secret_is_read_at_delivery_and_cached_briefly(receiver, registry, running):
    kube = FakeKube({("ml", "slack"): {"url": (receiver.hook + "\n").encode()}})
    n = running(read_secret=kube.read_secret, secret_ttl=0.3)
    n.notify("ml", "fraud", [from_secret()], "Normal", "Promoted", "m", None, NOW)
    assert kube.reads == [], "read when delivered, not when queued"
    n.notify("ml", "fraud", [from_secret()], "Normal", "PhaseSucceeded", "m", None, NOW)
    wait_for(lambda: settled(registry, 2), 5, "the deliveries")
    assert receiver.reasons() == ["Promoted", "PhaseSucceeded"] and kube.reads == [("ml", "slack")]
    assert receiver.requests[0]["path"] == f"/services/{TOKEN}"  # the trailing newline trimmed
    time.sleep(0.35)
    n.notify("ml", "fraud", [from_secret()], "Normal", "Drifted", "m", None, NOW)
    wait_for(lambda: settled(registry, 3), 5, "the delivery")
    assert kube.reads == [("ml", "slack")] * 2, "read again once the cache expired"


@pytest.mark.parametrize(
    ("kube", "ref", "message"),
    [
        (FakeKube(), {}, "Secret ml/slack not found"),
        (FakeKube({("ml", "slack"): {"other": b"x"}}), {}, "Secret ml/slack key 'url' not found"),
        (FakeKube({("ml", "slack"): {"url": b"\xff\xfe"}}), {}, "Secret ml/slack key 'url' is not UTF-8 text"),
        (FakeKube({("ml", "slack"): {"url": b"hooks.example.com/x"}}), {}, "is not an http:// or https:// URL"),
        (FakeKube(error=403), {}, "grant it get on secrets (the chart's rbac.readSecrets)"),
        (FakeKube(error=500), {}, "reading Secret ml/slack failed: HTTP 500"),
    ],
)
def test_a_url_that_cannot_be_read_is_a_failed_delivery_saying_why(registry, running, caplog, kube, ref, message):
    caplog.set_level(logging.WARNING, logger="modelrollout.notify")
    n = running(read_secret=kube.read_secret)
    n.notify("ml", "fraud", [from_secret(**ref)], "Normal", "Promoted", "m", None, NOW)
    wait_for(lambda: settled(registry, 1), 5, "the delivery")
    assert count(registry, "failed") == 1
    assert "ml/fraud notification 'ml-team' (Promoted) failed: " in caplog.text and message in caplog.text


def test_the_url_never_reaches_the_logs(registry, running, caplog):
    caplog.set_level(logging.DEBUG)
    with Receiver([(500, {}, b"x"), (404, {}, b"no such hook"), (200, {}, b"ok")]) as r:
        kube = FakeKube({("ml", "slack"): {"url": r.hook.encode()}})
        n = running(read_secret=kube.read_secret)
        n.notify("ml", "fraud", [target("inline", r.hook)], "Normal", "Promoted", "m", None, NOW)
        n.notify("ml", "fraud", [from_secret()], "Normal", "Promoted", "m", None, NOW)
        dead = f"http://127.0.0.1:{free_port()}/services/{TOKEN}"
        n.notify("ml", "fraud", [target("dead", dead)], "Normal", "Promoted", "m", None, NOW)
        wait_for(lambda: settled(registry, 3), 10, "the deliveries")
    assert caplog.records, "something was logged"
    assert TOKEN not in caplog.text and "/services/" not in caplog.text


# ------------------------------------------------------------------------------------------- API


def test_the_documented_events_are_the_ones_the_engine_emits():
    """NOTIFICATION_EVENTS against every ``run.emit(type, reason, ...)`` in engine.py."""
    tree = ast.parse(Path(engine.__file__).read_text())
    literal, dynamic = set(), set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit"):
            continue
        reason = node.args[1]
        if isinstance(reason, ast.Constant):
            literal.add(reason.value)
        elif isinstance(reason, ast.Attribute) and isinstance(reason.value, ast.Name) and reason.value.id == "Reason":
            literal.add(t.Reason[reason.attr].value)
        else:
            dynamic.add(ast.unparse(reason))
    # The three whose reason is computed: Phase<phase>, WatchFailed<Gate>, and an abandoned canary's
    # history phase (always Superseded).
    assert dynamic == {"f'Phase{st.phase}'", "st.watchFailure", "phase"}
    expected = literal | {f"Phase{p}" for p in t.PHASES} | {"WatchFailed*", "Superseded"}
    assert set(t.NOTIFICATION_EVENTS) == expected


@pytest.mark.parametrize(
    ("targets", "fragment"),
    [
        ([{"name": "a"}], "set exactly one of url and urlFrom"),
        ([{"name": "a", "url": "https://x", "urlFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}], "one of url"),
        ([{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}], "notification names must be unique"),
        ([{"name": "a", "url": "ftp://x"}], "notifications.0.url"),
        ([{"name": "a", "url": "https://x", "events": []}], "notifications.0.events"),
        ([{"name": "a", "url": "https://x", "events": ["rolled back"]}], "notifications.0.events.0"),
        ([{"name": "A", "url": "https://x"}], "notifications.0.name"),
        ([{"name": f"n{i}", "url": "https://x"} for i in range(9)], "notifications"),
    ],
)
def test_invalid_notifications_name_the_field(targets, fragment):
    base = {"model": {"name": "fraud", "uri": "https://m/x.onnx"}, "traffic": {"none": {}}}
    with pytest.raises(ValueError, match="validation error") as err:
        t.ModelDeploymentSpec.model_validate({**base, "notifications": targets})
    assert fragment in str(err.value)


def test_events_default_to_all():
    assert target(url="https://x").wants("AnythingAtAll")
    assert not target(url="https://x", events=["Promoted"]).wants("PromotedManually")
    assert target(url="https://x", events=["Promoted*"]).wants("PromotedManually")
