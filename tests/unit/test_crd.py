"""The checked-in CRD is exactly what the pydantic models generate, and it is structural."""

from pathlib import Path

import yaml
from modelrollout.api import crd

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_generated():
    checked_in = (REPO / "crds/modeldeployment.yaml").read_text()
    assert checked_in == crd.render(), "crds/ is stale: run `make crds` and commit the result"


def _walk(node, path="$"):
    yield path, node
    for key in ("properties",):
        for name, child in (node.get(key) or {}).items():
            yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural():
    schema = yaml.safe_load(crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert node.get("additionalProperties") is not False, path


def test_every_default_satisfies_its_own_schema():
    """The API server refuses a CRD whose defaults break its patterns or bounds (a "7d" default under
    a pattern without days once made every cluster test fail): check them here, in a second."""
    import re

    schema = yaml.safe_load(crd.render())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        if "default" not in node or node["default"] is None:
            continue
        value = node["default"]
        if "pattern" in node and isinstance(value, str):
            assert re.fullmatch(node["pattern"], value), f"{path}: default {value!r} does not match {node['pattern']}"
        if "enum" in node:
            assert value in node["enum"], f"{path}: default {value!r} not in {node['enum']}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert value >= node.get("minimum", value) and value <= node.get("maximum", value), path


def test_printer_columns_and_status_subresource():
    version = yaml.safe_load(crd.render())["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert {"Phase", "Stable", "Canary", "Weight", "Age"} <= set(names)
    assert version["subresources"] == {"status": {}}


def test_cel_rules_present_for_rules_the_schema_cannot_express():
    text = crd.render()
    for needle in ("isSorted()", "exactly one traffic provider", "min must be <= max", "duration(self)"):
        assert needle in text, needle
