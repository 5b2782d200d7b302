"""Vendor the Kubernetes schemas that ``spec.serving`` embeds (affinity, tolerations, volumes, HPA metrics).

The ModelDeployment CRD takes these pod-spec fields in exactly the Kubernetes shape, the way
controller-gen embeds core types in a Go operator's CRD. The schemas come from a real API server's
``/openapi/v3/api/v1`` (the one ``hack/cluster-up.sh`` runs, pinned in ``hack/versions.env``),
rewritten to what a CRD accepts:

- ``$ref``/``allOf`` inlined; ``IntOrString`` and ``Quantity`` become ``x-kubernetes-int-or-string``
  (Quantity with the same pattern as ``resources``);
- ``default`` and the list/map/patch markers dropped: a CRD may not carry defaults that pod
  validation adds later, and list-map keys must be required in a CRD (they are not in core);
- descriptions cut to their first paragraph, so the CRD stays small enough for a client-side
  ``kubectl apply`` while ``kubectl explain`` still says what each field is.

Writes ``operator/modelrollout/api/k8s_schemas.json``; ``tests/integration/test_pod_spec.py`` fails
when the vendored file and the running API server's schemas differ. Usage (``make k8s-schemas``):
``KUBECONFIG=... python hack/k8s_schemas.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from modelrollout.api.k8s import OUTPUT, QUANTITY, VENDORED

from hack.loopback.cluster import BIN

# Where each group/version's schemas are served, and the prefix of their definitions there.
SOURCES = {
    "core/v1": ("/openapi/v3/api/v1", "io.k8s.api.core.v1."),
    "autoscaling/v2": ("/openapi/v3/apis/autoscaling/v2", "io.k8s.api.autoscaling.v2."),
}
_DROP = {
    "default",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-patch-merge-key",
    "x-kubernetes-patch-strategy",
    "x-kubernetes-map-type",
    "x-kubernetes-unions",
}


def _kubectl(kubeconfig: str, *args: str) -> str:
    cmd = [str(BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _first_paragraph(text: str) -> str:
    return text.split("\n\n", 1)[0].strip()


def convert(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """One schema node as a CRD takes it (see the module docstring)."""
    if isinstance(node, list):
        return [convert(x, defs, seen) for x in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node.pop("allOf")[0], **node}
    if "$ref" in node:
        name = node.pop("$ref").split("/")[-1]
        if name in seen:
            raise ValueError(f"recursive schema {' -> '.join(seen)} -> {name}")
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            described = {"description": _first_paragraph(node["description"])} if "description" in node else {}
            return {**QUANTITY, **described}
        target = convert(defs[name], defs, (*seen, name))
        node = {**target, **{k: convert(v, defs, seen) for k, v in node.items()}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "description":
            out[key] = _first_paragraph(value)
        elif key == "properties":
            out[key] = {name: convert(v, defs, seen) for name, v in value.items()}
        else:
            out[key] = convert(value, defs, seen)
    if out.get("format") == "int-or-string":
        out = {k: v for k, v in out.items() if k not in ("format", "oneOf", "type")}
        out["x-kubernetes-int-or-string"] = True
    return out


# Bounds pod validation enforces anyway (a volume name is a DNS label), stated in the schema so the
# CEL rules on spec.serving that read them stay within the API server's cost budget.
TIGHTEN = {
    ("Volume", "name"): {"maxLength": 63},
    ("VolumeMount", "name"): {"maxLength": 63},
    ("VolumeMount", "mountPath"): {"maxLength": 1024},
}


def build(kubeconfig: str) -> dict[str, Any]:
    """The vendored document, from the API server ``kubeconfig`` points at."""
    version = json.loads(_kubectl(kubeconfig, "version", "-o", "json"))["serverVersion"]["gitVersion"]
    schemas = {}
    for group_version, (path, prefix) in SOURCES.items():
        defs = json.loads(_kubectl(kubeconfig, "get", "--raw", path))["components"]["schemas"]
        for name in (n for n, gv in VENDORED.items() if gv == group_version):
            schemas[name] = convert(defs[prefix + name], defs, (prefix + name,))
    for (kind, field), bounds in TIGHTEN.items():
        schemas[kind]["properties"][field].update(bounds)
    paths = ", ".join(path for path, _ in SOURCES.values())
    return {"source": f"kube-apiserver {version} {paths}, rewritten by hack/k8s_schemas.py", "schemas": schemas}


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = render(build(os.environ["KUBECONFIG"]))
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT} ({len(text)} bytes)")
