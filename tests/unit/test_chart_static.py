"""The Helm chart without a cluster: CRD in sync, values schema, and RBAC derived from the code.

The RBAC check reads the operator's source (not the CLI's: that runs as the user) and collects every
Kubernetes call it makes — typed client methods such as ``patch_namespaced_deployment``, custom
object calls with their group and plural, kopf handler decorators and ``kopf.event`` — and compares
them with the chart's rules in both directions: every call must be allowed (or the operator breaks
in a real cluster) and every allowed verb must be used by some call or by kopf itself (or the role
is not least-privilege). Rules for traffic routers whose code has not landed yet are tolerated until
the first call on their API group appears; from then on they are held to the same standard.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest
import yaml
from modelrollout.api import types as api_types

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelrollout"
OPERATOR = ROOT / "operator" / "modelrollout"
NOT_OPERATOR = {"cli.py"}  # runs with the user's credentials, not the ServiceAccount's

Perm = tuple[str, str, str]  # (apiGroup, resource, verb)

# Typed-client resource names (snake_case, as in the method names) and their API group.
TYPED_RESOURCES = {
    "deployment": ("apps", "deployments"),
    "replica_set": ("apps", "replicasets"),
    "service": ("", "services"),
    "pod": ("", "pods"),
    "event": ("", "events"),
    "config_map": ("", "configmaps"),
    "secret": ("", "secrets"),
    "namespace": ("", "namespaces"),
    "ingress": ("networking.k8s.io", "ingresses"),
    "lease": ("coordination.k8s.io", "leases"),
}
VERBS = {
    "list": "list",
    "read": "get",
    "create": "create",
    "patch": "patch",
    "replace": "update",
    "delete": "delete",
    "delete_collection": "deletecollection",
}
TYPED_CALL = re.compile(
    r"^(?P<verb>list|read|create|patch|replace|delete_collection|delete)_(?:namespaced_)?"
    r"(?P<resource>[a-z_]+?)(?P<status>_status)?(?:_for_all_namespaces)?(?:_with_http_info)?$"
)
CUSTOM_CALL = re.compile(
    r"^(?P<verb>list|get|create|patch|replace|delete_collection|delete)_(?:namespaced|cluster)_custom_object"
    r"(?P<status>_status)?$"
)
# What kopf does on its own for every resource it watches (list + watch), for resources with change
# handlers, timers or daemons (patch: annotations and finalizers), and for kopf.event (create events).
KOPF_WATCH = ("list", "watch")

# Router rules granted ahead of their code (see the module docstring).
PLANNED_GROUPS = {"gateway.networking.k8s.io", "networking.istio.io", "networking.k8s.io"}


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "literal"`` assignments, to resolve group/plural arguments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def _all_constants() -> dict[str, str]:
    """Module-level string constants of every operator module (for names imported from elsewhere)."""
    out: dict[str, str] = {}
    for path in sorted(OPERATOR.rglob("*.py")):
        out.update(_constants(ast.parse(path.read_text())))
    return out


def _resolve(node: ast.expr, constants: dict[str, str], where: str) -> str:
    """A literal, a constant of this module, or a constant imported (``APPLY``, ``t.GROUP``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.Attribute) and isinstance(getattr(api_types, node.attr, None), str):
        return getattr(api_types, node.attr)
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    shared = _all_constants()
    if name in shared:
        return shared[name]
    raise AssertionError(f"{where}: cannot resolve {ast.unparse(node)}; use a literal or a module constant")


def _is_apply(call: ast.Call, constants: dict[str, str], where: str) -> bool:
    """A patch sent as application/apply-patch+yaml (server-side apply)."""
    for kw in call.keywords:
        if kw.arg in ("_content_type", "content_type"):
            return "apply-patch" in _resolve(kw.value, constants, where)
    return False


def _call_args(call: ast.Call, names: tuple[str, ...]) -> dict[str, ast.expr]:
    args = dict(zip(names, call.args, strict=False))
    args.update({k.arg: k.value for k in call.keywords if k.arg in names})
    return args


REST_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def _rest_permission(call: ast.Call, constants: dict[str, str], where: str) -> Perm:
    """``rest(api, "VERB", deployments_path(ns[, name]))``, ``jobs_path(ns[, name])`` or
    ``core_path(ns, "plural"[, name])``: a GET without a name lists; a PATCH as apply-patch also
    creates (yielded by the caller)."""
    method, path = call.args[1], call.args[2]
    assert isinstance(method, ast.Constant) and isinstance(path, ast.Call) and isinstance(path.func, ast.Name), (
        f"{where}: rest() takes a literal method and an inline deployments_path()/core_path() call"
    )
    if path.func.id == "deployments_path":
        (group, plural), named = ("apps", "deployments"), len(path.args) > 1
    elif path.func.id == "jobs_path":
        (group, plural), named = ("batch", "jobs"), len(path.args) > 1
    else:
        assert path.func.id == "core_path", f"{where}: unknown path helper {path.func.id}"
        (group, plural), named = ("", _resolve(path.args[1], constants, where)), len(path.args) > 2
    verb = "list" if method.value == "GET" and not named else REST_VERBS[method.value]
    return group, plural, verb


def code_permissions() -> Iterator[tuple[Perm, str]]:
    """Every (group, resource, verb) the operator's code needs, with where it comes from."""
    for path in sorted(OPERATOR.rglob("*.py")):
        if path.name not in NOT_OPERATOR:
            yield from scan_source(path.read_text(), str(path.relative_to(ROOT)))


def scan_source(source: str, filename: str) -> Iterator[tuple[Perm, str]]:
    """The Kubernetes permissions one module's calls need."""
    tree = ast.parse(source)
    constants = _constants(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        where = f"{filename}:{node.lineno}"
        dotted = ast.unparse(func)
        if name == "rest":
            group, resource, verb = _rest_permission(node, constants, where)
            yield (group, resource, verb), where
            if verb == "patch" and _is_apply(node, constants, where):
                yield (group, resource, "create"), where
        elif m := CUSTOM_CALL.match(name):
            a = _call_args(node, ("group", "version", "namespace", "plural") if "namespaced" in name else
                           ("group", "version", "plural"))  # fmt: skip
            group, plural = _resolve(a["group"], constants, where), _resolve(a["plural"], constants, where)
            resource = plural + ("/status" if m["status"] else "")
            verb = {"get": "get", **VERBS}[m["verb"]]
            yield (group, resource, verb), where
            if verb == "patch" and not m["status"] and _is_apply(node, constants, where):
                yield (group, resource, "create"), where
        elif (m := TYPED_CALL.match(name)) and m["resource"] in TYPED_RESOURCES:
            group, plural = TYPED_RESOURCES[m["resource"]]
            yield (group, plural + ("/status" if m["status"] else ""), VERBS[m["verb"]]), where
            if m["verb"] == "patch" and _is_apply(node, constants, where):
                # Server-side apply creates the object when it is missing: the API server
                # then also checks the create verb.
                yield (group, plural, "create"), where
        elif dotted == "kopf.event":
            yield ("", "events", "create"), where
        elif dotted.startswith(("kopf.on.", "kopf.timer", "kopf.daemon", "kopf.index")):
            a = _call_args(node, ("group", "version", "plural"))
            if "plural" not in a:
                continue  # startup/cleanup/login handlers take no resource
            group = _resolve(a["group"], constants, where)
            plural = _resolve(a["plural"], constants, where)
            for verb in KOPF_WATCH:
                yield (group, plural, verb), where
            if not dotted.startswith(("kopf.on.event", "kopf.index", "kopf.on.probe")):
                # Change handlers, timers and daemons keep kopf's progress/diff-base annotations
                # and a finalizer on the object: kopf patches its metadata. Event handlers do not.
                yield (group, plural, "patch"), where


def chart_rules() -> set[Perm]:
    """Every (group, resource, verb) in the chart's rules, all routers and leader election enabled:
    the rules shared by every watched namespace and the Lease rules of the release namespace."""
    text = (CHART / "templates" / "_helpers.tpl").read_text()
    shared = text.split('{{- define "modelrollout.rules" -}}', 1)[1].split("{{- end }}\n{{- end }}", 1)[0]
    lease = text.split('{{- define "modelrollout.leaderElectionRules" -}}', 1)[1].split("{{- end }}", 1)[0]
    plain = "\n".join(line for line in (shared + lease).splitlines() if "{{" not in line)
    perms = set()
    for rule in yaml.safe_load(plain):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    perms.add((group, resource, verb))
    return perms


def test_chart_rbac_allows_every_call_the_operator_makes() -> None:
    rules = chart_rules()
    missing = {f"{p} needed by {where}" for p, where in code_permissions() if p not in rules}
    assert not missing, "add to charts/modelrollout/templates/_helpers.tpl:\n" + "\n".join(sorted(missing))


def test_chart_rbac_grants_nothing_the_operator_does_not_use() -> None:
    used = {p for p, _ in code_permissions()}
    used_groups = {g for g, _, _ in used}
    unused = {
        p for p in chart_rules() - used if not (p[0] in PLANNED_GROUPS and p[0] not in used_groups)
    }  # fmt: skip
    assert not unused, f"no code path uses {sorted(unused)}: drop them from the chart's rules"


def test_chart_rules_never_include_sensitive_access() -> None:
    text = (CHART / "templates").joinpath("_helpers.tpl").read_text() + (CHART / "templates" / "rbac.yaml").read_text()
    for word in ('"*"', "configmaps", "pods/exec", "escalate", "bind", "impersonate"):
        assert word not in text, f"the chart's RBAC must not mention {word}"


def test_secrets_are_created_or_read_by_name_only() -> None:
    """The prediction-token key Secret is created once and never read back; the only Secrets read
    are the ones a ModelDeployment names for its Prometheus, by name: nothing lists, watches or
    changes Secrets, and the chart can drop the read (rbac.readSecrets)."""
    secret_verbs = {verb for group, resource, verb in chart_rules() if (group, resource) == ("", "secrets")}
    assert secret_verbs == {"create", "get"}
    used = {verb for (group, resource, verb), _ in code_permissions() if (group, resource) == ("", "secrets")}
    assert used == {"create", "get"}, "the operator's code must only create Secrets and get them by name"
    readers = {where.split(":")[0] for (group, resource, verb), where in code_permissions() if resource == "secrets"}
    assert "operator/modelrollout/kube.py" in readers
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    guarded = helpers.split("{{- if .Values.rbac.readSecrets }}", 1)[1].split("{{- end }}", 1)[0]
    assert '"get"' in guarded and "secrets" in guarded


def test_rbac_scan_sees_the_known_calls() -> None:
    """Guard the guard: if the scan found nothing, the two tests above would pass vacuously."""
    used = {p for p, _ in code_permissions()}
    assert ("modelrollout.io", "modeldeployments/status", "patch") in used
    assert ("modelrollout.io", "modeldeployments", "watch") in used
    assert ("apps", "deployments", "patch") in used
    assert ("apps", "deployments", "watch") in used
    assert ("apps", "deployments", "create") in used  # server-side apply of a new revision
    assert ("", "secrets", "create") in used  # the prediction-token key
    assert ("batch", "jobs", "create") in used  # a retraining run
    assert ("coordination.k8s.io", "leases", "update") in used  # leader election


def test_rbac_scan_understands_router_style_calls() -> None:
    """Literal groups, module constants, constants imported from kube.py, lambdas and typed clients."""
    source = textwrap.dedent(
        """
        GROUP = "gateway.networking.k8s.io"
        class R:
            def ensure(self, ns, name, m, opts):
                get = lambda: self.custom.get_namespaced_custom_object(GROUP, "v1", ns, "httproutes", name)
                live = get_or_none(get)
                apply_unless_unchanged(m, live, lambda body: self.custom.patch_namespaced_custom_object(
                    GROUP, "v1", ns, "httproutes", name, body, field_manager="x", force=True, _content_type=APPLY))
                self.custom.patch_namespaced_custom_object("networking.istio.io", "v1", ns, "virtualservices", name, m)
                self.networking.delete_namespaced_ingress(name, ns, body=opts)

        @kopf.on.event("apps", "v1", "deployments")
        def watched(**_): ...

        @kopf.timer("example.io", "v1", "things", interval=5)
        def ticked(**_): ...
        """
    )
    assert {p for p, _ in scan_source(source, "router.py")} == {
        ("gateway.networking.k8s.io", "httproutes", "get"),
        ("gateway.networking.k8s.io", "httproutes", "patch"),
        ("gateway.networking.k8s.io", "httproutes", "create"),  # server-side apply may create
        ("networking.istio.io", "virtualservices", "patch"),  # a merge patch never creates
        ("networking.k8s.io", "ingresses", "delete"),
        ("apps", "deployments", "list"),
        ("apps", "deployments", "watch"),
        ("example.io", "things", "list"),
        ("example.io", "things", "watch"),
        ("example.io", "things", "patch"),  # a timer: kopf adds a finalizer
    }


def test_chart_crd_is_identical_to_generated_crd() -> None:
    """Helm installs charts/modelrollout/crds/; it must be exactly what `make crds` generates."""
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    repo_crds = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert chart_crds == repo_crds
    for name in repo_crds:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"charts/modelrollout/crds/{name} is stale: cp crds/{name} charts/modelrollout/crds/"
        )


@pytest.fixture(scope="module")
def validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(json.loads((CHART / "values.schema.json").read_text()))


def test_default_values_match_the_schema(validator: jsonschema_rs.Validator) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    errors = [e.message for e in validator.iter_errors(values)]
    assert not errors


@pytest.mark.parametrize(
    "patch",
    [
        {"watch": {"mode": "everywhere"}},
        {"watch": {"mode": "namespace", "namespaces": ["Not_A_Namespace"]}},
        {"operator": {"logLevel": "TRACE"}},
        {"operator": {"prometheusAddress": "prometheus:9090"}},
        {"metrics": {"port": 0}},
        {"rbac": {"routers": {"linkerd": True}}},
        {"typoKey": 1},
    ],
)
def test_schema_rejects_bad_values(validator: jsonschema_rs.Validator, patch: dict) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(base: dict, extra: dict) -> None:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                merge(base[k], v)
            else:
                base[k] = v

    merge(values, patch)
    assert not validator.is_valid(values)
