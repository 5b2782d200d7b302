"""spec.notifications against the real API server and the real operator: admission of the list, and
a first revision's Events arriving at a loopback webhook (inline URL and one read from a Secret)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import yaml

from hack.loopback.cluster import Cluster, wait_until
from hack.loopback.procs import LoopbackHTTPServer, send

pytestmark = pytest.mark.cluster


class Webhook(LoopbackHTTPServer):
    """Takes every POST with 200 and keeps (path, JSON body)."""

    name = "webhook"

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with outer.lock:
                    outer.received.append((self.path, body))
                send(self, 200, b"ok", "text/plain")

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def reasons(self, path: str) -> list[str]:
        with self.lock:
            return [b["modelrollout"]["reason"] for p, b in self.received if p == path]

    def body(self, path: str, reason: str) -> dict[str, Any]:
        with self.lock:
            return next(b for p, b in self.received if p == path and b["modelrollout"]["reason"] == reason)


def manifest(notifications: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"name": "fraud", "uri": "https://models.example.com/a.onnx"},
            "serving": {"replicas": 1, "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}},
            "traffic": {"none": {}},
            "progressDeadlineSeconds": 60,
            "notifications": notifications,
        },
    }


def test_a_first_revision_is_announced_to_its_webhooks(cluster: Cluster, operator, namespace):
    with Webhook() as hook:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook"},
            "data": {"url": base64.b64encode(f"{hook.url}/from-secret\n".encode()).decode()},
        }
        cluster.apply(secret, namespace)
        from_secret = {"secretKeyRef": {"name": "hook", "key": "url"}}
        targets = [
            {"name": "t", "url": f"{hook.url}/hook"},
            {"name": "s", "urlFrom": from_secret, "events": ["PhaseSucceeded"]},
        ]
        cluster.apply(manifest(targets), namespace)
        wait_until(
            lambda: "PhaseSucceeded" in hook.reasons("/hook") and hook.reasons("/from-secret"),
            15,
            what="the PhaseSucceeded notifications",
        )
        obj = cluster.get("mdep", "fraud", namespace) or {}
        rev = obj["status"]["stableRevision"]

        reasons = hook.reasons("/hook")
        assert reasons[0] == "RevisionCreated", reasons
        assert reasons[-1] == "PhaseSucceeded" and len(set(reasons)) == len(reasons), reasons
        assert hook.reasons("/from-secret") == ["PhaseSucceeded"]
        for path in ("/hook", "/from-secret"):
            body = hook.body(path, "PhaseSucceeded")
            assert body["text"] == f"{namespace}/fraud: PhaseSucceeded: revision {rev} is stable"
            fields = body["modelrollout"]
            keys = ("namespace", "name", "type", "phase", "stableRevision", "canaryRevision")
            assert {k: fields[k] for k in keys} == {
                "namespace": namespace, "name": "fraud", "type": "Normal", "phase": "Succeeded",
                "stableRevision": rev, "canaryRevision": None,
            }  # fmt: skip
        created = hook.body("/hook", "RevisionCreated")["modelrollout"]
        assert created["message"] == f"revision {rev} serving https://models.example.com/a.onnx"
        log = operator.log_path.read_text()
        assert f"{namespace}/fraud notification 's' (PhaseSucceeded) sent" in log
        assert hook.url not in log, "webhook URLs are secrets: logs name the target"


@pytest.mark.parametrize(
    ("case", "notifications", "expected"),
    [
        ("no url", [{"name": "a"}], ["spec.notifications[0].url", "set exactly one of url and urlFrom"]),
        ("two names alike", [{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}],
         ["spec.notifications", "notification names must be unique"]),
        ("not http", [{"name": "a", "url": "ftp://x"}], ["spec.notifications[0].url"]),
        ("a reason with a space", [{"name": "a", "url": "https://x", "events": ["rolled back"]}],
         ["spec.notifications[0].events[0]"]),
        ("nine targets", [{"name": f"n{i}", "url": "https://x"} for i in range(9)], ["spec.notifications"]),
    ],
)  # fmt: skip
def test_invalid_notifications_are_rejected_naming_the_field(cluster, namespace, case, notifications, expected):
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest(notifications)),
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0, f"{case}: accepted"
    for fragment in expected:
        assert fragment in proc.stderr, f"{case}: {fragment!r} not in {proc.stderr}"


def test_valid_notifications_are_accepted(cluster, namespace):
    targets = [
        {"name": "slack", "urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}},
         "events": ["RolledBack", "Promoted", "Drifted", "RetrainingFailed", "WatchFailed*"]},
        {"name": "in-cluster", "url": "http://receiver.ml.svc:8080/hook"},
    ]  # fmt: skip
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest(targets))
    )
    assert "created (server dry run)" in proc.stdout
