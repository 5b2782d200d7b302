"""The operator against the real API server, controller-manager and kwok: first reconcile and beyond."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest
import yaml

from hack.loopback.cluster import TESTENV, Cluster, wait_until

pytestmark = pytest.mark.cluster


def manifest(name: str = "fraud", uri: str = "https://models.example.com/a.onnx", **spec: Any) -> dict:
    base = {
        "model": {"name": "fraud", "uri": uri},
        "serving": {"replicas": 2, "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}},
        "traffic": {"none": {}},
        "strategy": {"canary": {"steps": [50, 100], "stepDuration": "1s"}},
        "bake": {"duration": "0s"},
        "progressDeadlineSeconds": 60,
    }
    base.update(spec)
    return {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": base}  # fmt: skip


def mdep(cluster: Cluster, ns: str, name: str = "fraud") -> dict:
    return cluster.get("mdep", name, ns) or {}


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def wait_phase(cluster: Cluster, ns: str, phase: str, name: str = "fraud", timeout: float = 60) -> dict:
    def check():
        obj = mdep(cluster, ns, name)
        st = obj.get("status", {})
        return (
            obj if st.get("phase") == phase and st.get("observedGeneration") == obj["metadata"]["generation"] else None
        )

    return wait_until(check, timeout, what=f"{ns}/{name} phase {phase}")


def deployments(cluster: Cluster, ns: str) -> list[dict]:
    out = cluster.kubectl("get", "deploy", "-n", ns, "-l", "modelrollout.io/deployment", "-o", "json").stdout
    return json.loads(out)["items"]


def events(cluster: Cluster, ns: str, name: str = "fraud") -> list[dict]:
    out = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return json.loads(out)["items"]


def test_first_revision_creates_serving_children_and_becomes_ready(cluster, operator, namespace):
    cluster.apply(manifest(), namespace)
    obj = wait_phase(cluster, namespace, "Succeeded")
    rev = obj["status"]["stableRevision"]
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Degraded")["status"] == "False"
    assert [h["revision"] for h in obj["status"]["history"]] == [rev]
    assert not obj["metadata"].get("finalizers"), "no finalizer: deleting must work while the operator is down"

    dep = cluster.get("deploy", f"fraud-{rev}", namespace)
    assert dep is not None
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelDeployment", "fraud", obj["metadata"]["uid"], True)  # fmt: skip
    assert dep["metadata"]["labels"]["modelrollout.io/revision"] == rev
    available = next(c for c in dep["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True" and dep["status"]["availableReplicas"] == 2

    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert f"--revision={rev}" in c["args"] and "--model-uri=https://models.example.com/a.onnx" in c["args"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert (
        sc["capabilities"]["drop"] == ["ALL"] and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    )
    full = json.loads(cluster.kubectl("get", "deploy", f"fraud-{rev}", "-n", namespace, "-o", "json",
                                      "--show-managed-fields").stdout)  # fmt: skip
    managers = {m["manager"] for m in full["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"modelrollout"}

    svc = cluster.get("svc", "fraud", namespace)
    # traffic.none: the Service spans every revision, so the replica ratio is the traffic split.
    assert svc["spec"]["selector"] == {"modelrollout.io/deployment": "fraud"}
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    reasons = {e["reason"] for e in events(cluster, namespace)}
    assert {"RevisionCreated", "PhaseSucceeded"} <= reasons


def test_printer_columns_show_real_values(cluster, operator, namespace):
    cluster.apply(manifest(), namespace)
    obj = wait_phase(cluster, namespace, "Succeeded")
    header, line = cluster.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()[:2]
    names = header.split()
    assert names == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "AGE"]
    starts = [header.index(n) for n in names] + [None]
    row = dict(zip(names, (line[a:b].strip() for a, b in itertools.pairwise(starts)), strict=True))
    assert row["NAME"] == "fraud" and row["PHASE"] == "Succeeded"
    assert row["STABLE"] == obj["status"]["stableRevision"]
    assert row["CANARY"] == "" and row["WEIGHT"] == "0" and row["AGE"].endswith("s")
    wide = cluster.kubectl("get", "mdep", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "MODEL" in wide[0] and "https://models.example.com/a.onnx" in wide[1]


def test_analysis_change_makes_no_revision_but_model_change_rolls_out(cluster, operator, namespace):
    cluster.apply(manifest(), namespace)
    first = wait_phase(cluster, namespace, "Succeeded")
    rev1 = first["status"]["stableRevision"]

    tuned = manifest(analysis={"interval": "5s", "failureLimit": 3})
    tuned["spec"]["serving"]["replicas"] = 3  # scaling is not a new revision either
    cluster.apply(tuned, namespace)
    obj = wait_phase(cluster, namespace, "Succeeded")
    assert obj["status"]["stableRevision"] == rev1 and len(obj["status"]["history"]) == 1
    assert [d["metadata"]["name"] for d in deployments(cluster, namespace)] == [f"fraud-{rev1}"]
    wait_until(lambda: cluster.get("deploy", f"fraud-{rev1}", namespace)["spec"]["replicas"] == 3, 30,
               what="stable scaled to 3")  # fmt: skip

    cluster.apply(manifest(uri="https://models.example.com/b.onnx"), namespace)

    def new_revision_seen():
        st = mdep(cluster, namespace).get("status", {})
        return st.get("canaryRevision") or (st.get("stableRevision") != rev1 and st.get("stableRevision"))

    rev2 = wait_until(new_revision_seen, 30, what="a new revision")
    assert rev2 != rev1
    done = wait_phase(cluster, namespace, "Succeeded", timeout=60)
    assert done["status"]["stableRevision"] == rev2
    assert [h["revision"] for h in done["status"]["history"]] == [rev1, rev2]
    canary_svc = cluster.get("svc", "fraud-canary", namespace)  # kept between rollouts, on the stable revision
    assert canary_svc["spec"]["selector"]["modelrollout.io/revision"] == rev2
    wait_until(lambda: cluster.get("deploy", f"fraud-{rev1}", namespace)["spec"]["replicas"] == 0, 30,
               what="old revision scaled to zero")  # fmt: skip


def test_a_new_model_mid_rollout_supersedes_the_canary(cluster, operator, namespace):
    """A spec change while a canary is at its first step: that canary's rollout ends as Superseded,
    its Deployment is scaled to zero, and the new revision rolls out from the same stable."""
    cluster.apply(manifest(), namespace)
    rev1 = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    held = {"canary": {"steps": [25, 50, 100], "stepDuration": "10m"}}  # stays at 25 % until superseded
    cluster.apply(manifest(uri="https://models.example.com/b.onnx", strategy=held), namespace)
    wait_until(lambda: mdep(cluster, namespace)["status"].get("canaryWeight") == 25, 30, what="the first step")
    rev2 = mdep(cluster, namespace)["status"]["canaryRevision"]

    cluster.apply(manifest(uri="https://models.example.com/c.onnx"), namespace)
    done = wait_phase(cluster, namespace, "Succeeded")
    rev3 = done["status"]["stableRevision"]
    assert rev3 not in (rev1, rev2)
    assert [(h["revision"], h["phase"]) for h in done["status"]["history"]] == [
        (rev1, "Superseded"), (rev2, "Superseded"), (rev3, "Succeeded")]  # fmt: skip
    superseded = next(h for h in done["status"]["history"] if h["revision"] == rev2)
    assert rev3 in superseded["reason"], superseded
    for old in (rev1, rev2):
        wait_until(lambda old=old: cluster.get("deploy", f"fraud-{old}", namespace)["spec"]["replicas"] == 0, 30,
                   what=f"{old} scaled to zero")  # fmt: skip
    reasons = [e["reason"] for e in events(cluster, namespace)]
    assert reasons.count("Promoted") == 1, reasons


def test_the_operator_prunes_the_old_providers_routes_once_after_a_switch(cluster, operator, upstream_crds, namespace):
    """Gateway API -> Istio with no new revision: the VirtualService is written, then the HTTPRoute
    goes, and status says whose routes are kept. A later model change prunes nothing more."""
    gateway = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
    cluster.apply(manifest(traffic=gateway), namespace)
    assert wait_phase(cluster, namespace, "Succeeded")["status"]["routesProvider"] == "gatewayAPI"
    assert cluster.get("httproute", "fraud", namespace) is not None
    cluster.apply(manifest(traffic={"istio": {"hosts": ["fraud.example.com"]}}), namespace)
    wait_until(lambda: cluster.get("httproute", "fraud", namespace) is None, 30, what="the HTTPRoute pruned")
    assert cluster.get("virtualservice", "fraud", namespace) is not None
    assert wait_phase(cluster, namespace, "Succeeded")["status"]["routesProvider"] == "istio"


def test_deleting_the_modeldeployment_garbage_collects_children(cluster, operator, namespace):
    cluster.apply(manifest(), namespace)
    wait_phase(cluster, namespace, "Succeeded")
    assert deployments(cluster, namespace) and cluster.get("svc", "fraud", namespace)
    cluster.kubectl("delete", "mdep", "fraud", "-n", namespace)
    wait_until(lambda: not deployments(cluster, namespace), 60, what="Deployments garbage-collected")
    wait_until(lambda: cluster.get("svc", "fraud", namespace) is None, 60, what="Service garbage-collected")
    pods = lambda: json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]  # noqa: E731
    wait_until(lambda: not pods(), 60, what="pods garbage-collected")


def test_feedback_key_secret_is_created_once_shared_by_revisions_and_collected(cluster, operator, namespace):
    import base64

    cluster.apply(manifest(), namespace)
    first = wait_phase(cluster, namespace, "Succeeded")
    secret = cluster.get("secret", "fraud-feedback-key", namespace)
    assert secret["type"] == "Opaque" and secret["immutable"] is True
    assert len(base64.b64decode(secret["data"]["key"])) == 32
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("ModelDeployment", first["metadata"]["uid"])

    cluster.apply(manifest(uri="https://models.example.com/b.onnx"), namespace)
    wait_until(lambda: len(mdep(cluster, namespace).get("status", {}).get("history", [])) == 2, 30, what="revision 2")
    wait_phase(cluster, namespace, "Succeeded")
    again = cluster.get("secret", "fraud-feedback-key", namespace)
    assert again["data"] == secret["data"], "never rotated by a reconcile or a new revision"
    assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]
    for dep in deployments(cluster, namespace):
        pod = dep["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "feedback-key")
        assert volume["secret"]["secretName"] == "fraud-feedback-key"
        args = pod["containers"][0]["args"]
        assert "--feedback-key-file=/var/run/modelrollout/feedback/key" in args
        assert f"--deployment={namespace}/fraud" in args
    edit = cluster.kubectl("patch", "secret", "fraud-feedback-key", "-n", namespace, "--type=merge",
                           "-p", '{"data": {"key": "AAAA"}}', check=False)  # fmt: skip
    assert edit.returncode != 0 and "immutable" in edit.stderr, "an accidental edit is refused"

    cluster.kubectl("delete", "mdep", "fraud", "-n", namespace)
    wait_until(lambda: cluster.get("secret", "fraud-feedback-key", namespace) is None, 60,
               what="key Secret garbage-collected")  # fmt: skip


def test_unready_pods_trip_the_progress_deadline(cluster, operator, namespace):
    stuck = manifest(progressDeadlineSeconds=10)
    stuck["spec"]["serving"]["podLabels"] = {"modelrollout.io/simulate": "unready"}
    cluster.apply(stuck, namespace)
    obj = wait_phase(cluster, namespace, "Failed", timeout=60)
    degraded = condition(obj, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ProgressDeadlineExceeded"
    assert condition(obj, "Ready")["status"] == "False"
    assert obj["status"]["history"][0]["phase"] == "Failed"
    warnings = [e for e in events(cluster, namespace) if e["reason"] == "ProgressDeadlineExceeded"]
    assert warnings and warnings[0]["type"] == "Warning" and sum(e.get("count", 1) for e in warnings) == 1
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    assert all(c["status"] == "False" for p in pods for c in p["status"]["conditions"] if c["type"] == "Ready")
    # No hot loop: the status is stable once the deadline has been reported.
    rv = obj["metadata"]["resourceVersion"]
    time.sleep(3)
    assert mdep(cluster, namespace)["metadata"]["resourceVersion"] == rv


def test_examples_are_accepted_by_the_api_server(cluster, namespace):
    from hack.loopback.procs import REPO

    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc))


def test_a_write_the_cluster_refuses_becomes_a_condition_not_a_crash(cluster, operator, upstream_crds, namespace):
    """Our schema accepts a path the Gateway API CRD's own CEL refuses: the operator must say so and go on."""
    bad = manifest(traffic={"gatewayAPI": {"parentRefs": [{"name": "gw"}], "path": "/v2//fraud"}})
    cluster.apply(bad, namespace)

    def failed() -> dict | None:
        obj = mdep(cluster, namespace)
        cond = condition(obj, "Degraded")
        return obj if cond.get("reason") == "ApplyFailed" and cond.get("status") == "True" else None

    obj = wait_until(failed, 60, what="Degraded=ApplyFailed")
    assert "422" in condition(obj, "Degraded")["message"] and "HTTPRoute" in condition(obj, "Degraded")["message"]
    time.sleep(4)  # several ticks: the same error must not post more Events or rewrite status
    warnings = [e for e in events(cluster, namespace) if e["reason"] == "ApplyFailed"]
    assert sum(e.get("count", 1) for e in warnings) == 1
    assert operator.proc.poll() is None, "the operator must survive a refused write"
    cluster.apply(manifest(traffic={"gatewayAPI": {"parentRefs": [{"name": "gw"}], "path": "/v2/fraud"}}), namespace)
    healed = wait_phase(cluster, namespace, "Succeeded")
    assert condition(healed, "Degraded")["status"] == "False"


def test_a_terminating_namespace_is_not_an_error(cluster, operator, namespace):
    """Deleting a namespace removes its contents in no particular order: the operator may meet a live
    ModelDeployment whose namespace refuses new children. That must stay quiet, not be retried loudly."""
    cluster.apply(manifest(), namespace)
    wait_phase(cluster, namespace, "Succeeded")
    log = sorted(TESTENV.glob("operator-*.log"), key=lambda p: p.stat().st_mtime)[-1]
    mark = log.stat().st_size
    cluster.apply(manifest(uri="https://models.example.com/z.onnx"), namespace)
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=90s")
    new = log.read_text()[mark:]
    assert "Traceback" not in new and "forbidden" not in new.lower(), new[-3000:]


def test_hand_edits_to_children_are_put_back(cluster, operator, namespace):
    """The operator owns replicas, selectors and its Services: `kubectl scale`, a selector edit or a
    deleted Service is put back, each on its own (no other event nudges the operator; the resync is
    300 s, ten times the wait)."""
    cluster.apply(manifest(), namespace)
    rev = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    cluster.kubectl("patch", "svc", "fraud", "-n", namespace, "--type=merge", "-p",
                    '{"spec":{"selector":{"modelrollout.io/deployment":"someone-else"}}}')  # fmt: skip
    wait_until(lambda: cluster.get("svc", "fraud", namespace)["spec"]["selector"]
               == {"modelrollout.io/deployment": "fraud"}, 30, what="Service selector put back")  # fmt: skip
    cluster.kubectl("scale", "deploy", f"fraud-{rev}", "-n", namespace, "--replicas=5")
    wait_until(lambda: cluster.get("deploy", f"fraud-{rev}", namespace)["spec"]["replicas"] == 2, 30,
               what="replicas put back to 2")  # fmt: skip
    uid = cluster.get("svc", "fraud-canary", namespace)["metadata"]["uid"]
    cluster.kubectl("delete", "svc", "fraud-canary", "-n", namespace, "--wait=true")
    wait_until(lambda: (cluster.get("svc", "fraud-canary", namespace) or {}).get("metadata", {}).get("uid")
               not in (None, uid), 30, what="canary Service created again")  # fmt: skip
