"""Rollout hooks (spec.hooks) against the real API server and the real operator, with a loopback
webhook that answers as each test says: a PreRollout hook that fails twice then passes, Step hooks in
every step, a ConfirmPromotion hook that refuses until approved (the rollout waits, never rolls
back), a PostRollout hook told once; and a PreRollout hook that keeps failing rolls the candidate
back before it takes any traffic."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from hack.loopback.cluster import Cluster, wait_until
from hack.loopback.procs import LoopbackHTTPServer, send

pytestmark = pytest.mark.cluster


class Hooks(LoopbackHTTPServer):
    """Answers POST /<path> with ``codes[path]`` (a list is used up one code per call, its last kept),
    and keeps (path, body) of every call."""

    name = "hooks"

    def __init__(self, codes: dict[str, int | list[int]]) -> None:
        self.codes = {k: list(v) if isinstance(v, list) else [v] for k, v in codes.items()}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def set(self, path: str, code: int) -> None:
        with self.lock:
            self.codes[path] = [code]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                path = self.path.strip("/")
                with outer.lock:
                    outer.calls.append((path, body))
                    codes = outer.codes.get(path, [404])
                    code = codes.pop(0) if len(codes) > 1 else codes[0]
                send(self, code, b"ok" if code < 300 else b"not yet", "text/plain")

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for p, b in self.calls if p == path]


def manifest(uri: str, hooks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": {"name": "fraud", "uri": uri},
            "serving": {"replicas": 1},
            "traffic": {"none": {}},
            "strategy": {"canary": {"steps": [50, 100], "stepDuration": "2s", "scaleDownDelay": "0s"}},
            "analysis": {"interval": "1s"},
            "bake": {"duration": "0s"},
            "progressDeadlineSeconds": 60,
            "hooks": hooks,
        },
    }


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    return (cluster.get("mdep", "fraud", namespace) or {}).get("status", {})


def test_hooks_hold_confirm_and_tell_a_rollout(cluster: Cluster, operator, namespace):
    codes: dict[str, int | list[int]] = {"pre": [503, 503, 200], "step": 200, "confirm": 403, "post": 200}
    with Hooks(codes) as web:
        declared = [
            {"name": "offline-eval", "type": "PreRollout", "url": f"{web.url}/pre", "failureLimit": 5,
             "metadata": {"suite": "holdout-v3"}},
            {"name": "load-test", "type": "Step", "url": f"{web.url}/step"},
            {"name": "approval", "type": "ConfirmPromotion", "url": f"{web.url}/confirm", "failureLimit": 1},
            {"name": "announce", "type": "PostRollout", "url": f"{web.url}/post"},
        ]  # fmt: skip
        cluster.apply(manifest("https://models.example.com/a.onnx", declared), namespace)
        first = wait_until(lambda: (s := status(cluster, namespace)).get("phase") == "Succeeded" and s, 60,
                           what="the first revision")["stableRevision"]  # fmt: skip
        assert web.calls == [], "no hook is called for a first revision"

        cluster.apply(manifest("https://models.example.com/b.onnx", declared), namespace)
        st = wait_until(lambda: (s := status(cluster, namespace)).get("awaitingConfirmation") and s, 90,
                        what="the candidate through its steps, waiting for approval")  # fmt: skip
        candidate = st["canaryRevision"]
        pre = web.bodies("pre")
        assert len(pre) == 3 and all(b["revision"] == candidate and b["step"] is None for b in pre), pre
        assert pre[0]["metadata"] == {"suite": "holdout-v3"} and pre[0]["stableRevision"] == first
        assert pre[0]["model"] == {"name": "fraud", "uri": "https://models.example.com/b.onnx"}
        assert {b["step"] for b in web.bodies("step")} == {0, 1}, "a Step hook in every step"
        # Refused approvals hold the promotion; with failureLimit 1 they still never roll back.
        wait_until(lambda: len(web.bodies("confirm")) >= 3, 30, what="approval asked again")
        st = status(cluster, namespace)
        assert st["phase"] == "Progressing" and st["canaryRevision"] == candidate, st
        assert "waits for ConfirmPromotion hooks: approval (HTTP 403: not yet" in st["message"], st["message"]

        web.set("confirm", 200)
        st = wait_until(lambda: (s := status(cluster, namespace)).get("phase") == "Succeeded"
                        and s.get("stableRevision") == candidate and s, 60, what="the promotion")  # fmt: skip
        post = wait_until(lambda: web.bodies("post"), 30, what="the PostRollout call")
        assert [b["revision"] for b in post] == [candidate] and post[0]["type"] == "PostRollout"
        hooks = {h["name"]: h for h in st["hooks"]}
        assert hooks["approval"]["passed"] and hooks["offline-eval"]["passed"], hooks

        # A PreRollout hook that keeps failing: rolled back before any traffic, by name.
        web.set("pre", 500)
        cluster.apply(manifest("https://models.example.com/c.onnx", declared), namespace)
        st = wait_until(lambda: (s := status(cluster, namespace)).get("phase") == "RolledBack" and s, 90,
                        what="the candidate rolled back by its PreRollout hook")  # fmt: skip
        assert st["rollbackReason"] == "HookFailedOfflineEval" and st["stableRevision"] == candidate, st
        assert "PreRollout hook offline-eval failed 5 calls in a row: HTTP 500: not yet" in st["message"], st
        failed = st["failedRevisions"][-1]
        assert all(b["step"] is None for b in web.bodies("step") if b["revision"] == failed), "never a step"
        assert not [b for b in web.bodies("step") if b["revision"] == failed]
