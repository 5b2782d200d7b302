"""Kubernetes types that ``spec.serving`` takes as they are (affinity, tolerations, volumes, HPA metrics, ...).

Their schemas are vendored from a real API server by ``hack/k8s_schemas.py`` into
``k8s_schemas.json``. The same schema is both what the CRD embeds (so admission names the field a
value is wrong in) and what the operator checks when it parses a spec (:func:`KubeObject`), with
the API server's semantics for a CRD: every node typed, unknown fields refused (the API server
prunes them; the operator's parser, like the rest of the API, refuses them), ``int-or-string``
taking either, ``enum`` enforced, ``null`` refused (the API server drops it). What only pod
validation knows (a label selector's syntax, a volume with two sources) is checked when the
operator writes the Deployment; that refusal becomes the ModelDeployment's ``Degraded`` condition.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

OUTPUT = Path(__file__).with_name("k8s_schemas.json")

# The definitions vendored, by their short name, and the group/version they come from.
VENDORED = {
    "Affinity": "core/v1",
    "EnvFromSource": "core/v1",
    "EnvVarSource": "core/v1",
    "LocalObjectReference": "core/v1",
    "Toleration": "core/v1",
    "TopologySpreadConstraint": "core/v1",
    "Volume": "core/v1",
    "VolumeMount": "core/v1",
    "MetricSpec": "autoscaling/v2",
    "HorizontalPodAutoscalerBehavior": "autoscaling/v2",
}

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
QUANTITY: dict[str, Any] = {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """The vendored CRD schema of core/v1 ``name``."""
    return json.loads(OUTPUT.read_text())["schemas"][name]


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def problems(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Where ``value`` breaks ``node``, one ``path: message`` per problem (empty: it conforms)."""
    where = path or "value"
    if node.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, int | str):
            return [f"{where}: must be an integer or a string"]
        if isinstance(value, str) and "pattern" in node and not re.search(node["pattern"], value):
            return [f"{where}: {value!r} does not match {node['pattern']}"]
        return []
    kind = node.get("type")
    if value is None or kind not in _TYPES or not isinstance(value, _TYPES[kind]):
        return [f"{where}: must be of type {kind}"]
    if kind in ("integer", "number") and isinstance(value, bool):
        return [f"{where}: must be of type {kind}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{where}: must be one of {', '.join(map(str, node['enum']))}"]
    found: list[str] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += problems(node.get("items") or {}, item, f"{path}[{i}]")
    elif isinstance(value, dict):
        props, extra = node.get("properties") or {}, node.get("additionalProperties")
        for missing in sorted(set(node.get("required") or ()) - set(value)):
            found.append(f"{path + '.' if path else ''}{missing}: required")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                found += problems(props[key], item, sub)
            elif isinstance(extra, dict):
                found += problems(extra, item, sub)
            elif not node.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{sub}: unknown field")
    return found


def _checker(name: str) -> Any:
    def check(value: Any) -> Any:
        if found := problems(schema(name), value):
            raise ValueError("; ".join(found[:5]))
        return value

    return check


def KubeObject(name: str) -> Any:  # noqa: N802 - reads as a type in field annotations
    """A field holding core/v1 ``name`` as-is: the vendored schema in the CRD, the same check here."""
    return Annotated[dict[str, Any], WithJsonSchema(schema(name)), AfterValidator(_checker(name))]
