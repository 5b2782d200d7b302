"""Rollout hooks, the I/O half: one POST per due hook, its answer as a :class:`HookResult` for the
engine (:mod:`modelrollout.hooks` decides when, and what a result means).

The body is JSON::

    {"name": "fraud", "namespace": "ml", "hook": "offline-eval", "type": "PreRollout",
     "revision": "4da33a8e4a", "stableRevision": "86a6bea3f2", "step": null, "weight": 0,
     "model": {"name": "fraud", "uri": "s3://models/fraud/v7.onnx"}, "metadata": {...}}

(``uri`` without a pre-signed URL's signature). A 2xx answer is a pass; any other status, or no answer
within the hook's ``timeoutSeconds``, a fail whose message names the status and the start of the
answer. The call goes through the notifier's HTTP client (the same URL-from-Secret rules, the URL
never logged), synchronously in the reconcile's worker thread: a hook that hangs delays only its
own ModelDeployment, by at most its timeout.
"""

from __future__ import annotations

import json
from datetime import datetime

from modelrollout.api import types as t
from modelrollout.hooks import HookCall
from modelrollout.notify import Delivery, Notifier
from modelrollout.revision import unsigned_uri


def body(call: HookCall, namespace: str, name: str, spec: t.ModelDeploymentSpec, weight: int) -> bytes:
    """The JSON a hook receives (the module docstring)."""
    return json.dumps(
        {
            "name": name,
            "namespace": namespace,
            "hook": call.hook.name,
            "type": call.hook.type,
            "revision": call.revision,
            "stableRevision": call.stable_revision,
            "step": call.step,
            "weight": weight,
            "model": {"name": spec.model.name, "uri": unsigned_uri(spec.model.uri)},
            "metadata": call.hook.metadata,
        }
    ).encode()


def call(
    notifier: Notifier | None,
    call: HookCall,
    namespace: str,
    name: str,
    spec: t.ModelDeploymentSpec,
    weight: int,
    now: datetime,
) -> t.HookResult:
    """Make one hook call and say how it went."""
    hook = call.hook
    if notifier is None:
        passed, message = False, "the operator runs without an HTTP client for hooks"
    else:
        secret = hook.urlFrom.secretKeyRef if hook.urlFrom else None
        payload = body(call, namespace, name, spec, weight)
        delivery = Delivery(namespace, name, f"hook {hook.name}", hook.url, secret, hook.type, payload)
        passed, message = notifier.call_once(delivery, float(hook.timeoutSeconds))
    return t.HookResult(
        name=hook.name,
        type=t.HookType(hook.type),
        revision=call.revision,
        step=call.step,
        passed=passed,
        message=message[:300],
        calledAt=now,
    )
