"""The Argo CD health check, run the way Argo CD runs it: Lua 5.1, base + table libraries only.

Argo CD evaluates ``resource.customizations.health.<group>_<kind>`` with gopher-lua (Lua 5.1) and
opens only the base, table and package libraries plus an ``os`` reduced to ``time``/``date``. A
script that calls ``string.format`` or ``("x"):sub()`` works in a stock interpreter and fails in
Argo CD, so the sandbox below removes exactly what Argo CD does not have — including the string
metatable that makes method calls on strings work.

The cases live in ``testdata/argocd/health_test.yaml`` in Argo CD's own format, so the check can be
upstreamed to argo-cd's ``resource_customizations`` unchanged.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51
from modelrollout.api.types import PHASES, ModelDeploymentSpec, ModelDeploymentStatus
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "deploy" / "argocd" / "health.lua"
TESTDATA = Path(__file__).parent / "testdata" / "argocd"
CASES = yaml.safe_load((TESTDATA / "health_test.yaml").read_text())["tests"]
ARGOCD_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

SANDBOX = """
debug.setmetatable("", nil)       -- no string methods without the string library
string, math, io, debug, python = nil, nil, nil, nil, nil
local time, date = os.time, os.date
os = {time = time, date = date}   -- Argo CD's OpenSafeOs
"""


def argocd_runtime() -> Any:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    lua.execute(SANDBOX)
    return lua


def to_lua(lua: Any, value: Any) -> Any:
    """JSON-ish Python → Lua tables (1-based arrays), as Argo CD converts unstructured objects."""
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def health(obj: dict[str, Any], script: str | None = None) -> dict[str, Any]:
    lua = argocd_runtime()
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(script if script is not None else HEALTH_LUA.read_text())
    return dict(result.items())


def load_case(case: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load((TESTDATA / case["inputPath"]).read_text())


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"].removesuffix(".yaml") for c in CASES])
def test_health_case(case: dict[str, Any]) -> None:
    assert health(load_case(case)) == case["healthStatus"]


def test_sandbox_is_as_strict_as_argocd() -> None:
    """Guard the guard: if these ran, the sandbox would not catch a script using missing libraries."""
    lua = argocd_runtime()
    for snippet in (
        'return ("x"):upper()',
        'return string.format("%d", 1)',
        "return math.floor(1.5)",
        'return io.open("/etc/passwd")',
        "return os.getenv('HOME')",
        "return os.execute('true')",
    ):
        with pytest.raises(lua51.LuaError):
            lua.execute(snippet)
    assert lua.execute("return table.concat({'a', 'b'}, ',') .. tostring(25) .. os.date('!%Y', 0)") == "a,b251970"


def test_every_phase_and_health_status_is_covered() -> None:
    phases = {load_case(c).get("status", {}).get("phase") for c in CASES}
    missing = set(PHASES) - phases
    assert not missing, f"add testdata for phases {sorted(missing)}"
    statuses = {c["healthStatus"]["status"] for c in CASES}
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= statuses
    assert statuses <= ARGOCD_HEALTH_STATUSES
    names = {c["inputPath"] for c in CASES}
    assert {"paused-spec.yaml", "paused-phase.yaml", "generation-behind.yaml", "no-status.yaml"} <= names
    on_disk = {p.name for p in TESTDATA.glob("*.yaml")} - {"health_test.yaml"}
    assert on_disk == names, "every testdata file must be listed in health_test.yaml"


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"].removesuffix(".yaml") for c in CASES])
def test_testdata_matches_the_api(case: dict[str, Any]) -> None:
    """Testdata objects are ones the operator could really write, so the check tracks the real API."""
    obj = load_case(case)
    ModelDeploymentSpec.model_validate(obj["spec"])
    if "status" not in obj:
        return
    if case["healthStatus"]["status"] == "Unknown":
        with pytest.raises(ValidationError):
            ModelDeploymentStatus.model_validate(obj["status"])
    else:
        ModelDeploymentStatus.model_validate(obj["status"])


def test_paused_wins_over_phase_but_not_over_stale_generation() -> None:
    obj = load_case({"inputPath": "succeeded.yaml"})
    obj["spec"]["paused"] = True
    assert health(obj)["status"] == "Suspended"
    obj["metadata"]["generation"] = 4
    assert health(obj)["status"] == "Progressing"


def test_missing_optional_fields_do_not_crash() -> None:
    """Argo CD shows a Lua error as health Unknown with a stack trace; never let partial objects do that."""
    bare = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment", "metadata": {}, "spec": {}}
    for status in (
        {},
        {"phase": "Progressing"},
        {"phase": "Paused"},
        {"phase": "Baking"},
        {"conditions": []},
    ):
        result = health({**bare, "status": status})
        assert result["status"] in ARGOCD_HEALTH_STATUSES
        assert result["message"]


def test_docs_embed_the_same_script() -> None:
    """docs/argocd.md shows the argocd-cm snippet; it must be the shipped script, byte for byte."""
    doc = (ROOT / "docs" / "argocd.md").read_text()
    indented = textwrap.indent(HEALTH_LUA.read_text(), "    ")
    assert "resource.customizations.health.modelrollout.io_ModelDeployment: |\n" + indented in doc
