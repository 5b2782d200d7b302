"""The feedback endpoint's logic: validate ground truth, join it to cached predictions, count it.

Why apart from the cache: the cache is a data structure; this module owns the request shapes
(single ``{"id", "truth"}`` or batch ``{"feedback": [...]}``), the truth normalisation (class
name or index) and which outcome moves which counter.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError, bad_request
from .runtime import Runtime


def handle_feedback(payload: dict[str, Any], runtime: Runtime, max_batch: int) -> tuple[int, dict[str, Any]]:
    """Return ``(status, body)``; raises 400 for malformed bodies, 404 for an unmatched single id."""
    if not runtime.reader.is_classifier:
        raise bad_request("feedback needs a classifier: the model has no label or score output")
    if "feedback" in payload:
        items = payload["feedback"]
        if not isinstance(items, list) or not items:
            raise bad_request("feedback: expected a non-empty list of {id, truth} objects")
        if len(items) > max_batch:
            raise bad_request(f"feedback: {len(items)} items exceed the limit of {max_batch}")
        parsed = [_parse_item(item, f"feedback[{i}]") for i, item in enumerate(items)]
        results = [_apply(rid, truth, runtime, where) for rid, truth, where in parsed]
        matched = sum(1 for r in results if r["status"] == "matched")
        return 200, {"results": results, "matched": matched, "unmatched": len(results) - matched}
    rid, truth, where = _parse_item(payload, "")
    result = _apply(rid, truth, runtime, where)
    if result["status"] in ("unknown", "expired"):
        raise ApiError(404, result["error"], id=rid, status=result["status"])
    if result["status"] == "invalid":
        raise bad_request(result["error"])
    return 200, result


def _parse_item(item: Any, where: str) -> tuple[str, Any, str]:
    prefix = f"{where}." if where else ""
    if not isinstance(item, dict):
        raise bad_request(f"{where or 'body'}: expected an object with id and truth")
    rid = item.get("id")
    if not isinstance(rid, str) or not rid:
        raise bad_request(f"{prefix}id: expected the request id (a non-empty string) of the prediction")
    if "truth" not in item or item["truth"] is None:
        raise bad_request(f"{prefix}truth: required (a class name or index, or a list for a batch)")
    return rid, item["truth"], prefix + "truth"


def _apply(rid: str, truth: Any, runtime: Runtime, where: str) -> dict[str, Any]:
    status, predicted = runtime.cache.lookup(rid)
    if predicted is None:
        runtime.metrics.record_unmatched(status)
        why = "its prediction expired" if status == "expired" else "no cached prediction (unknown or already scored)"
        return {"id": rid, "status": status, "error": f"feedback for id {rid!r} not counted: {why}"}
    try:
        truths = _normalise(truth, len(predicted), runtime, where)
    except ApiError as exc:
        return {"id": rid, "status": "invalid", "error": exc.message}
    correct = sum(1 for p, t in zip(predicted, truths, strict=True) if p == t)
    runtime.metrics.record_feedback(correct, len(truths) - correct)
    runtime.cache.discard(rid)
    return {"id": rid, "status": "matched", "correct": correct, "incorrect": len(truths) - correct}


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
