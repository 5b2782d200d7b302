"""Generate the ModelDeployment CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema: every
node typed, no $ref, no anyOf for optionals, no ``additionalProperties: false`` next to
``properties``, boolean ``exclusiveMinimum``. This module translates one into the other and adds
the CRD envelope (status subresource, printer columns, root CEL rules).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from modelrollout.api import types as t

_DROP_KEYS = {"title"}
_ROOT_RULES = [
    {
        "rule": "self.metadata.name.size() <= 40",
        "message": "metadata.name must be at most 40 characters (Deployments are named <name>-<revision>)",
    }
]

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stable", "type": "string", "jsonPath": ".status.stableRevision"},
    {"name": "Canary", "type": "string", "jsonPath": ".status.canaryRevision"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.uri", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $ref and unwrap Optional (anyOf with null), recursively."""
    if isinstance(node, list):
        return [_resolve(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = dict(target)
        merged.update(node)  # field-level description wins over the model docstring
        node = merged
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**_resolve(inner, defs), **node}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            node.pop("anyOf")
        elif len(options) == 1:
            node.pop("anyOf")
            node = {**_resolve(options[0], defs), **node}
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any) -> Any:
    """Rewrite JSON Schema keywords the API server rejects or treats differently."""
    if isinstance(node, list):
        return [_structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "default" and (value is None or isinstance(value, dict | list)):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {name: _structural(v) for name, v in value.items()}
            continue
        out[key] = _structural(value)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    elif "type" not in out and "properties" in out:
        out["type"] = "object"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["properties"] = {}
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of one pydantic model."""
    raw = model.model_json_schema(mode="serialization")
    defs = raw.pop("$defs", {})
    return _structural(_resolve(raw, defs))


def crd() -> dict[str, Any]:
    """The full CustomResourceDefinition object."""
    root = {
        "type": "object",
        "description": "A model served by revision and rolled out step by step, gated by Prometheus.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(t.ModelDeploymentSpec),
            "status": openapi_schema(t.ModelDeploymentStatus),
        },
        "x-kubernetes-validations": _ROOT_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{t.PLURAL}.{t.GROUP}"},
        "spec": {
            "group": t.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": t.KIND,
                "listKind": f"{t.KIND}List",
                "plural": t.PLURAL,
                "singular": t.SINGULAR,
                "shortNames": t.SHORT_NAMES,
                "categories": ["all", "modelrollout"],
            },
            "versions": [
                {
                    "name": t.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    """The CRD as YAML, byte-for-byte what `make crds` writes."""
    header = "# Generated by `make crds` from operator/modelrollout/api/types.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
