"""Publish the real request/response contract in ``/openapi.json``.

Why: handlers read raw bodies (see :mod:`modelserver.app`), so FastAPI cannot infer the schemas.
Each route declares its documented responses here, request bodies point at component schemas
generated from :mod:`modelserver.schemas`, and :func:`install_openapi` adds those components. Infer
also documents the binary tensor data extension (:mod:`modelserver.binary`): an
``application/octet-stream`` body and answer, and the ``Inference-Header-Content-Length`` header
that gives the length of their JSON part.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from . import schemas
from .binary import HEADER, OCTET_STREAM

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _json(name: str | tuple[str, ...], description: str) -> dict[str, Any]:
    """A JSON response of component ``name`` (or any of several components)."""
    schema = _ref(name) if isinstance(name, str) else {"anyOf": [_ref(n) for n in name]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERR_400 = {"400": _json("Error", "Malformed request; the message names the offending field")}
_ERR_404 = {"404": _json("Error", "Unknown model or version")}
_ERR_503 = {"503": _json("Error", "Not loaded or not ready; includes state and reason")}

_BYTES: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
_BINARY_REQUEST = (
    f"A JSON `InferRequest`, or (binary tensor data extension) a JSON `InferRequest` of `{HEADER}` bytes "
    "followed by the raw bytes of each input that has `parameters.binary_data_size` instead of `data`, in "
    "the order of `inputs`: little-endian, row-major; BOOL one byte 0/1; BYTES elements a 4-byte "
    "little-endian length and the UTF-8 bytes."
)
_BINARY_PARAMETER: dict[str, Any] = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": "Length in bytes of the body's JSON part when binary tensor data follows it.",
    "schema": {"type": "integer", "minimum": 1},
}
_BINARY_HEADERS: dict[str, Any] = {
    HEADER: {
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
        "description": "Present when outputs follow as binary tensor data (`parameters.binary_data` or "
        "`parameters.binary_data_output`): the length of the JSON `InferResponse` before them; each such "
        "output has `parameters.binary_data_size` instead of `data`.",
    }
}

_ROUTES: dict[str, dict[str, Any]] = {
    "server_metadata": {"summary": "Server metadata", "ok": ("ServerMetadataResponse", "Server metadata")},
    "server_live": {"summary": "Liveness", "ok": ("LiveResponse", "The process is alive")},
    "server_ready": {"summary": "Readiness", "ok": ("ReadyResponse", "Loaded, warmed up and self-checked"),
                     "errors": _ERR_503},
    "model_metadata": {"summary": "Model metadata", "ok": ("ModelMetadataResponse", "Model metadata"),
                       "errors": {**_ERR_404, **_ERR_503}},
    "model_ready": {"summary": "Model readiness", "ok": ("ReadyResponse", "The model is ready"),
                    "errors": {**_ERR_404, **_ERR_503}},
    "infer": {"summary": "Inference", "ok": ("InferResponse", "Predictions"), "body": "InferRequest", "binary": True,
              "errors": {**_ERR_400, **_ERR_404, **_ERR_503,
                         "413": _json("Error", "Request body too large"),
                         "500": _json("Error", "The model produced non-finite output (a model fault)")}},
    "feedback": {"summary": "Ground-truth feedback",
                 "ok": (("FeedbackResult", "FeedbackBatchResponse"),
                        "Counted (single form), or one result per item (batch form)"),
                 "body": "FeedbackRequest",
                 "errors": {**_ERR_400, "404": _json("Error", "Unknown model or version, or unmatched id"),
                            "403": _json("Error", "Token not signed with this ModelDeployment's key, or "
                                                  "issued for another ModelDeployment"),
                            "409": _json("Error", "Token already counted by this pod (replay)"),
                            "410": _json("Error", "Token older than --feedback-token-ttl"),
                            **_ERR_503, "413": _json("Error", "Request body too large")}},
    "metrics": {"summary": "Prometheus metrics", "text": "Prometheus text exposition format"},
}  # fmt: skip


def route_docs(kind: str) -> dict[str, Any]:
    """Keyword arguments for ``@app.get/post`` documenting route ``kind``."""
    spec = _ROUTES[kind]
    responses: dict[str | int, Any] = {}
    if "text" in spec:
        responses["200"] = {
            "description": spec["text"],
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    else:
        responses["200"] = _json(*spec["ok"])
    responses.update(spec.get("errors", {}))
    extra: dict[str, Any] = {"responses": responses}
    if "body" in spec:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(spec["body"])}},
        }
    if spec.get("binary"):
        _document_binary(extra)
    return {"summary": spec["summary"], "openapi_extra": extra, "response_model": None}


def _document_binary(extra: dict[str, Any]) -> None:
    """Add the binary tensor data extension's body, header and answer to an operation (infer)."""
    extra["requestBody"]["description"] = _BINARY_REQUEST
    extra["requestBody"]["content"][OCTET_STREAM] = _BYTES
    extra["parameters"] = [_BINARY_PARAMETER]  # appended to the path parameters by FastAPI
    ok = extra["responses"]["200"]
    ok["content"] = {**ok["content"], OCTET_STREAM: _BYTES}
    ok["headers"] = _BINARY_HEADERS


def install_openapi(app: FastAPI) -> None:
    """Generate the schema once, adding the component schemas the routes refer to."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, defs = models_json_schema([(m, "validation") for m in schemas.COMPONENTS], ref_template=REF)
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs.get("$defs", {}))
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
