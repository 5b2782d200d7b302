"""The feedback endpoint's logic: validate ground truth, join it to its prediction, count it.

Why apart from the cache and the tokens: those are mechanisms; this module owns the request shapes
(single ``{"token" | "id", "truth"}`` or batch ``{"feedback": [...]}``), the truth normalisation
(class name or index), which outcome moves which counter and which HTTP status answers it.

Two ways to name the prediction:

- ``token``: the ``parameters.prediction_token`` of the infer response. Verified here (any pod of the
  ModelDeployment can), counted for the revision inside the token, remembered by nonce so a replay
  to this pod is not counted twice.
- ``id``: the request id, joined against this process's cache — works only on the pod that answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request
from .runtime import Runtime
from .tokens import TokenError


@dataclass(frozen=True)
class Item:
    """One label: ``kind`` says whether ``ref`` is a request id or a prediction token."""

    kind: str
    ref: str
    truth: Any
    where: str


def handle_feedback(payload: dict[str, Any], runtime: Runtime, max_batch: int) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)``; raises the single form's 4xx, or 400 for a malformed batch."""
    if not runtime.reader.is_classifier:
        raise bad_request("feedback needs a classifier: the model has no label or score output")
    if "feedback" in payload:
        items = payload["feedback"]
        if not isinstance(items, list) or not items:
            raise bad_request("feedback: expected a non-empty list of {token or id, truth} objects")
        if len(items) > max_batch:
            raise bad_request(f"feedback: {len(items)} items exceed the limit of {max_batch}")
        parsed = [_parse_item(item, f"feedback[{i}]") for i, item in enumerate(items)]
        results = [_apply(item, runtime) for item in parsed]
        matched = sum(1 for r in results if r["status"] == "matched")
        return 200, {"results": results, "matched": matched, "unmatched": len(results) - matched}
    result = _apply(_parse_item(payload, ""), runtime)
    if result["status"] != "matched":
        extra = {k: v for k, v in result.items() if k not in ("error", "code")}
        raise ApiError(result["code"], result["error"], **extra)
    return 200, result


def _parse_item(item: Any, where: str) -> Item:
    """Shape checks only; whether the token verifies or the id is cached is decided per item later."""
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise bad_request(f"{where or 'body'}: expected an object with token (or id) and truth")
    if "token" in item and "id" in item:
        raise bad_request(f"{where or 'body'}: give either token or id, not both")
    if "truth" not in item or item["truth"] is None:
        raise bad_request(f"{prefix}truth: required (a class name or index, or a list for a batch)")
    if "token" in item:
        token = item["token"]
        if not isinstance(token, str) or not token:
            raise bad_request(f"{prefix}token: expected the prediction_token string of the infer response")
        return Item("token", token, item["truth"], prefix + "truth")
    rid = item.get("id")
    if not isinstance(rid, str) or not rid:
        raise bad_request(
            f"{prefix}id: expected the prediction's token (recommended) or request id (a non-empty string)"
        )
    return Item("id", rid, item["truth"], prefix + "truth")


def _apply(item: Item, runtime: Runtime) -> dict[str, Any]:
    return _apply_token(item, runtime) if item.kind == "token" else _apply_id(item, runtime)


def _apply_id(item: Item, runtime: Runtime) -> dict[str, Any]:
    """The per-pod cache: only the pod that answered the request knows its id."""
    rid = item.ref
    status, predicted = runtime.cache.lookup(rid)
    if predicted is None:
        runtime.metrics.record_unmatched(status)
        why = "its prediction expired" if status == "expired" else "no cached prediction (unknown or already scored)"
        return {"id": rid, "status": status, "code": 404, "error": f"feedback for id {rid!r} not counted: {why}"}
    try:
        truths = _normalise(item.truth, len(predicted), runtime, item.where)
    except ApiError as exc:
        return {"id": rid, "status": "invalid", "code": 400, "error": exc.message}
    correct = _count(predicted, truths, runtime, None)
    runtime.cache.discard(rid)
    return {"id": rid, "status": "matched", "correct": correct, "incorrect": len(truths) - correct}


def _apply_token(item: Item, runtime: Runtime) -> dict[str, Any]:
    """Verify, refuse replays to this pod, then count for the token's revision."""
    where = item.where.removesuffix("truth") + "token"
    codec, replay = runtime.tokens, runtime.replay
    if codec is None or replay is None:
        runtime.metrics.record_unmatched("unsupported")
        message = f"{where}: this server verifies no tokens (started without --feedback-key-file); send the id"
        return {"status": "unsupported", "code": 400, "error": message}
    try:
        claims = codec.verify(item.ref, where)
    except TokenError as exc:
        runtime.metrics.record_unmatched(exc.reason)
        return {"status": exc.reason, "code": exc.status, "error": exc.message}
    if replay.seen(claims.nonce):
        runtime.metrics.record_unmatched("replayed")
        message = f"{where}: already counted (each prediction is scored once)"
        return {"status": "replayed", "code": 409, "revision": claims.revision, "error": message}
    try:
        truths = _normalise(item.truth, len(claims.classes), runtime, item.where)
    except ApiError as exc:  # not remembered: a corrected retry still counts
        return {"status": "invalid", "code": 400, "revision": claims.revision, "error": exc.message}
    correct = _count(claims.classes, truths, runtime, claims.revision)
    replay.remember(claims.nonce, codec.expires_at(claims))
    return {"status": "matched", "revision": claims.revision, "correct": correct, "incorrect": len(truths) - correct}


def _count(predicted: tuple[str, ...], truths: list[str], runtime: Runtime, revision: str | None) -> int:
    correct = sum(1 for p, t in zip(predicted, truths, strict=True) if p == t)
    runtime.metrics.record_feedback(correct, len(truths) - correct, revision)
    return correct


def _normalise(truth: Any, rows: int, runtime: Runtime, where: str) -> list[str]:
    values = truth if isinstance(truth, list) else [truth]
    if len(values) != rows:
        raise bad_request(f"{where}: the prediction has {rows} row(s), got {len(values)} label(s)")
    names: list[str] = []
    for i, value in enumerate(values):
        name = runtime.reader.class_for_truth(value)
        if name is None:
            classes = list(runtime.reader.class_names)
            hint = f"one of {classes} or an index below {len(classes)}" if classes else "a class label"
            at = f"{where}[{i}]" if isinstance(truth, list) else where
            raise bad_request(f"{at}: {str(value)[:60]!r} is not a known class; expected {hint}")
        names.append(name)
    return names
