"""The pod-spec fields of ``spec.serving`` against the real API server: every one rendered into the
revision's Deployment (which the API server then validates as any pod template), invalid values
refused at admission naming the field (and by the operator's parser, naming the same field), and a
value only pod validation refuses reported in the ModelDeployment's status instead of crashing."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from modelrollout.api import types as t
from pydantic import ValidationError

from hack import k8s_schemas
from hack.loopback.cluster import wait_until
from tests.integration.test_operator import condition, manifest, mdep, wait_phase

pytestmark = pytest.mark.cluster

POD_SPEC = {
    "serviceAccountName": "models",
    "automountServiceAccountToken": True,
    "priorityClassName": "modelrollout-test-serving",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"modelrollout.io/deployment": "fraud"}},
                    },
                }
            ]
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"modelrollout.io/deployment": "fraud"}},
        }
    ],
    "imagePullSecrets": [{"name": "registry-creds"}],
    "volumes": [
        {"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "store-creds", "secret": {"secretName": "store-creds", "optional": True}},
    ],
    "volumeMounts": [
        {"name": "cache", "mountPath": "/var/cache/models"},
        {"name": "store-creds", "mountPath": "/var/run/secrets/store", "readOnly": True},
    ],
    "env": [
        {"name": "PLAIN", "value": "1"},
        {"name": "STORE_KEY", "valueFrom": {"secretKeyRef": {"name": "store-creds", "key": "key", "optional": True}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "model-settings", "optional": True}}],
    "terminationGracePeriodSeconds": 45,
}


def serving_manifest(**serving) -> dict:
    body = manifest()
    body["spec"]["serving"].update(copy.deepcopy(serving))
    return body


@pytest.fixture
def priority_class(cluster):
    """The PriorityClass POD_SPEC names (cluster-scoped: removed after the test)."""
    name = POD_SPEC["priorityClassName"]
    cluster.kubectl("create", "priorityclass", name, "--value=1000", check=False)
    yield name
    cluster.kubectl("delete", "priorityclass", name, "--ignore-not-found", check=False)


def test_every_pod_spec_field_reaches_the_revision_deployment(cluster, operator, namespace, priority_class):
    """The pods exist too: the ServiceAccount and Priority admission plugins took the fields."""
    cluster.kubectl("create", "serviceaccount", POD_SPEC["serviceAccountName"], "-n", namespace)
    cluster.apply(serving_manifest(**POD_SPEC), namespace)
    rev = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    pod = cluster.get("deploy", f"fraud-{rev}", namespace)["spec"]["template"]["spec"]
    for field in ("serviceAccountName", "automountServiceAccountToken", "priorityClassName", "nodeSelector",
                  "tolerations", "affinity", "topologySpreadConstraints", "imagePullSecrets",
                  "terminationGracePeriodSeconds"):  # fmt: skip
        assert pod[field] == POD_SPEC[field], (field, pod.get(field))
    # The operator's own volumes, mounts and variables stay, the user's come after them.
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "feedback-key", "cache", "store-creds"]
    assert pod["volumes"][2:][1]["secret"]["secretName"] == "store-creds"
    (container,) = pod["containers"]
    assert [m["mountPath"] for m in container["volumeMounts"]][2:] == ["/var/cache/models", "/var/run/secrets/store"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PLAIN"]["value"] == "1" and env["TMPDIR"]["value"] == "/tmp"
    assert env["STORE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "store-creds", "key": "key", "optional": True}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert container["envFrom"] == POD_SPEC["envFrom"]
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"modelrollout.io/revision={rev}",
                                      "-o", "json").stdout)["items"]  # fmt: skip
    assert len(pods) == 2 and all(p["spec"]["priority"] == 1000 for p in pods), [p["spec"] for p in pods]


def test_a_pod_spec_only_pod_validation_refuses_is_reported_not_crashed_on(cluster, operator, namespace):
    """The CRD embeds core/v1's schemas, not pod validation: a toleration with operator Exists and
    a value passes admission, and the API server refuses the Deployment. That refusal, in the API
    server's words naming the pod-template field, is the Degraded condition; fixing the spec heals."""
    bad = [{"key": "gpu", "operator": "Exists", "value": "yes"}]
    cluster.apply(serving_manifest(tolerations=bad), namespace)

    def refused():
        degraded = condition(mdep(cluster, namespace), "Degraded")
        return degraded if degraded.get("reason") == "ApplyFailed" else None

    degraded = wait_until(refused, 30, what="Degraded ApplyFailed")
    assert "spec.template.spec.tolerations[0].operator" in degraded["message"], degraded["message"]
    cluster.apply(serving_manifest(tolerations=[{"key": "gpu", "operator": "Exists"}]), namespace)
    obj = wait_phase(cluster, namespace, "Succeeded")
    assert condition(obj, "Degraded")["status"] == "False"


def refused_everywhere(cluster, namespace: str, body: dict, field: str) -> list[tuple[str, str]]:
    """``body`` is refused by the API server (server-side dry run) with a message naming ``field``,
    and by the operator's parser; the parser's (location, message) pairs."""
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body), check=False
    )
    assert proc.returncode != 0 and f"{field}:" in proc.stderr, proc.stderr or proc.stdout
    with pytest.raises(ValidationError) as refused:
        t.ModelDeploymentSpec.model_validate(body["spec"])
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in refused.value.errors()]


INVALID = [
    ("toleration operator", {"tolerations": [{"key": "gpu", "operator": "Sometimes"}]},
     "spec.serving.tolerations[0].operator", "serving.tolerations.0", "Equal"),
    ("affinity of the wrong type", {"affinity": {"nodeAffinity": "zone-a"}},
     "spec.serving.affinity.nodeAffinity", "serving.affinity", "must be of type object"),
    ("spread without maxSkew",
     {"topologySpreadConstraints": [{"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]},
     "spec.serving.topologySpreadConstraints[0].maxSkew", "serving.topologySpreadConstraints.0", "maxSkew"),
    ("pull secret name not a string", {"imagePullSecrets": [{"name": 3}]},
     "spec.serving.imagePullSecrets[0].name", "serving.imagePullSecrets.0", "string"),
    ("service account name", {"serviceAccountName": "Models_SA"},
     "spec.serving.serviceAccountName", "serving.serviceAccountName", "match"),
    ("negative grace period", {"terminationGracePeriodSeconds": -1},
     "spec.serving.terminationGracePeriodSeconds", "serving.terminationGracePeriodSeconds", "greater than"),
    ("a volume named like the operator's", {"volumes": [{"name": "tmp", "emptyDir": {}}]},
     "spec.serving.volumes", "serving", "the operator's"),
    ("a mount of an undeclared volume", {"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
     "spec.serving.volumeMounts", "serving", "each must name one of spec.serving.volumes"),
    ("a mount over the operator's", {"volumes": [{"name": "c", "emptyDir": {}}],
                                     "volumeMounts": [{"name": "c", "mountPath": "/tmp/"}]},
     "spec.serving.volumeMounts", "serving", "the paths /tmp"),
    ("value and valueFrom", {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]},
     "spec.serving.env[0]", "serving.env.0", "value and valueFrom are exclusive"),
    ("a volume source of the wrong shape", {"volumes": [{"name": "c", "secret": "creds"}]},
     "spec.serving.volumes[0].secret", "serving.volumes.0", "must be of type object"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "serving", "field", "loc", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_pod_spec_fields_are_refused_at_admission_and_by_the_parser(
    cluster, namespace, case, serving, field, loc, words
):
    errors = refused_everywhere(cluster, namespace, serving_manifest(**serving), field)
    assert any(where == loc and words in msg for where, msg in errors), (case, errors)


def test_the_vendored_core_schemas_are_the_api_servers(cluster):
    """``k8s_schemas.json`` is what ``make k8s-schemas`` makes from this API server (same version as
    hack/versions.env): a Kubernetes bump that changes a pod-spec type fails here, not in a cluster."""
    built = json.loads(k8s_schemas.render(k8s_schemas.build(str(cluster.kubeconfig))))
    vendored = json.loads(k8s_schemas.OUTPUT.read_text())
    assert built["schemas"] == vendored["schemas"], "run `make k8s-schemas` and commit the result"
