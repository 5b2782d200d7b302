"""The Deployment and Service builders produce what the cluster and the restricted profile expect."""

import pytest
from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.workloads import build_deployment, build_service
from pydantic import ValidationError

OWNER = {
    "apiVersion": "modelrollout.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"},
}


def deployment(**serving):
    s = ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "https://m/a.onnx", "sha256": "b" * 64}, "traffic": {"none": {}},
         "serving": serving}
    )  # fmt: skip
    return build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 3, 120)


def test_deployment_shape():
    d = deployment(resources={"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}, startupTimeoutSeconds=300)
    assert d["metadata"]["name"] == "fraud-abc123"
    assert d["metadata"]["ownerReferences"][0]["controller"] is True
    assert d["spec"]["replicas"] == 3 and d["spec"]["progressDeadlineSeconds"] == 120
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["modelrollout.io/revision"] == "abc123" and labels["modelrollout.io/deployment"] == "fraud"
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert "--model-uri=https://m/a.onnx" in c["args"] and f"--sha256={'b' * 64}" in c["args"]
    assert "--revision=abc123" in c["args"] and "--model-name=fraud" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 300
    assert c["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_user_pod_labels_cannot_override_selector_labels():
    d = deployment(podLabels={"modelrollout.io/revision": "evil", "team": "risk"})
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert labels["modelrollout.io/revision"] == "abc123" and labels["team"] == "risk"


def test_service_selects_one_revision():
    s = build_service(OWNER, "fraud", "abc123", "stable")
    assert s["spec"]["selector"] == {
        "modelrollout.io/deployment": "fraud",
        "modelrollout.io/revision": "abc123",
    }
    assert s["spec"]["ports"][0]["targetPort"] == "http"


def test_every_revision_mounts_the_feedback_key_read_only_and_passes_it():
    from modelrollout.workloads import build_feedback_key_secret

    pod = deployment()["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--feedback-key-file=/var/run/modelrollout/feedback/key" in c["args"]
    assert "--deployment=ml/fraud" in c["args"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "feedback-key")
    assert mount == {"name": "feedback-key", "mountPath": "/var/run/modelrollout/feedback", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "feedback-key")
    assert volume["secret"]["secretName"] == "fraud-feedback-key"
    assert volume["secret"]["defaultMode"] == 0o440, "readable by the pod's group (fsGroup), nobody else"
    secret = build_feedback_key_secret(OWNER, b"\x01" * 32)
    assert secret["metadata"]["name"] == volume["secret"]["secretName"]
    assert secret["metadata"]["namespace"] == "ml" and secret["immutable"] is True
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert secret["data"] == {"key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}


def test_latency_bucket_edges_follow_the_slow_request_gates() -> None:
    from modelrollout.metrics.templates import le_label
    from modelrollout.workloads import DEFAULT_LATENCY_BUCKETS, latency_buckets
    from modelserver.config import DEFAULT_LATENCY_BUCKETS as SERVER_DEFAULTS
    from modelserver.config import _buckets

    assert DEFAULT_LATENCY_BUCKETS == SERVER_DEFAULTS
    assert latency_buckets([]) is None
    text = latency_buckets([250, 33, 123.4567])
    assert text is not None
    edges = _buckets(text)  # exactly what the server will parse
    assert set(DEFAULT_LATENCY_BUCKETS) < set(edges)
    from prometheus_client.utils import floatToGoString

    assert {le_label(ms) for ms in (250, 33, 123.4567)} <= {floatToGoString(e) for e in edges}


def test_an_s3_model_gets_its_store_and_credentials_by_reference():
    s = ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "s3://models/fraud/a.onnx",
                   "storage": {"secretName": "store", "endpoint": "http://minio.storage:9000", "region": "eu-west-1"}},
         "traffic": {"none": {}}, "serving": {"env": [{"name": "A", "value": "b"}]}}
    )  # fmt: skip
    c = build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 1, 120)["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e for e in c["env"]}
    assert "--model-uri=s3://models/fraud/a.onnx" in c["args"]
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio.storage:9000"
    assert env["AWS_REGION"]["value"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "store", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert env["AWS_SESSION_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "store", "key": "AWS_SESSION_TOKEN", "optional": True
    }  # fmt: skip
    assert env["A"]["value"] == "b"
    assert not any(e.get("value") and "store" in str(e["value"]) for e in c["env"])


def test_a_gs_model_gets_its_endpoint_and_hmac_keys_by_optional_reference() -> None:
    def container(storage: dict | None) -> dict:
        model = {"name": "fraud", "uri": "gs://models_eu/fraud/a.onnx", **({"storage": storage} if storage else {})}
        s = ModelDeploymentSpec.model_validate(
            {"model": model, "traffic": {"none": {}}, "serving": {"serviceAccountName": "fraud-wi"}}
        )
        return build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 1, 120)["spec"]["template"]["spec"]

    pod = container({"secretName": "gcs-hmac", "endpoint": "https://storage.example.internal"})
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert "--model-uri=gs://models_eu/fraud/a.onnx" in pod["containers"][0]["args"]
    assert env["GCS_ENDPOINT"]["value"] == "https://storage.example.internal"
    for key in ("GCS_HMAC_ACCESS_KEY_ID", "GCS_HMAC_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "gcs-hmac", "key": key, "optional": True}}
    assert "AWS_ENDPOINT_URL_S3" not in env and "AWS_REGION" not in env and "AWS_SESSION_TOKEN" not in env
    workload_identity = container(None)  # the ServiceAccount is the credential: no storage, no Secret
    assert workload_identity["serviceAccountName"] == "fraud-wi"
    assert not any(e["name"].startswith(("GCS_", "AWS_")) for e in workload_identity["containers"][0]["env"])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"uri": "gs://models/fraud/a.onnx", "storage": {"region": "europe-west1"}}, "region is for s3:// URIs"),
        ({"uri": "https://m/a.onnx", "storage": {"endpoint": "http://x"}}, "storage is for s3://, gs://, azure://"),
        ({"uri": "oci://r.example.com/m:v1", "storage": {"endpoint": "http://x"}}, "endpoint is for s3://, gs://"),
        ({"uri": "gs://models/"}, "uri"),
        ({"uri": "gs://-models/a.onnx"}, "uri"),
        ({"uri": "s3://models/a.onnx", "metadataUri": "gs://models"}, "metadataUri"),
    ],
)
def test_gs_storage_is_validated_like_the_crd(model: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelDeploymentSpec.model_validate({"model": {"name": "fraud", **model}, "traffic": {"none": {}}})
    ok = {"uri": "gs://models/fraud/a.onnx", "metadataUri": "gs://models/fraud/metadata.json",
          "storage": {"secretName": "gcs-hmac", "endpoint": "https://storage.googleapis.com"}}  # fmt: skip
    ModelDeploymentSpec.model_validate({"model": {"name": "fraud", **ok}, "traffic": {"none": {}}})


def test_an_azure_model_gets_its_blob_endpoint_and_key_or_sas_by_optional_reference() -> None:
    def container(uri: str, storage: dict | None) -> dict:
        model = {"name": "fraud", "uri": uri, **({"storage": storage} if storage else {})}
        s = ModelDeploymentSpec.model_validate({"model": model, "traffic": {"none": {}}})
        return build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 1, 120)["spec"]["template"]["spec"][
            "containers"
        ][0]

    for uri in ("azure://modelstore/models/fraud/a.onnx", "abfss://models@modelstore.dfs.core.windows.net/a.onnx"):
        c = container(uri, {"secretName": "blob-creds", "endpoint": "http://azurite.storage:10000/modelstore"})
        env = {e["name"]: e for e in c["env"]}
        assert f"--model-uri={uri}" in c["args"]
        assert env["AZURE_STORAGE_BLOB_ENDPOINT"]["value"] == "http://azurite.storage:10000/modelstore"
        for key in ("AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN"):
            assert env[key]["valueFrom"] == {"secretKeyRef": {"name": "blob-creds", "key": key, "optional": True}}
        assert not any(name.startswith(("AWS_", "GCS_")) for name in env)
    public = container("azure://modelstore/models/fraud/a.onnx", None)
    assert not any(e["name"].startswith("AZURE_") for e in public["env"])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"uri": "azure://modelstore/models/a.onnx", "storage": {"region": "westeurope"}}, "region is for s3:// URIs"),
        ({"uri": "azure://modelstore/models/a.onnx", "storage": {"plainHTTP": True}}, "plainHTTP is for oci://"),
        ({"uri": "https://m/a.onnx", "storage": {"secretName": "x"}}, "storage is for s3://, gs://, azure://, abfs"),
        ({"uri": "azure://modelstore/models/"}, "uri"),
        ({"uri": "azure://modelstore/a.onnx"}, "uri"),  # no container
        ({"uri": "azure://Model_Store/models/a.onnx"}, "uri"),  # not an account name
        ({"uri": "abfss://modelstore.dfs.core.windows.net/models/a.onnx"}, "uri"),  # no container@
    ],
)
def test_azure_storage_is_validated_like_the_crd(model: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelDeploymentSpec.model_validate({"model": {"name": "fraud", **model}, "traffic": {"none": {}}})
    for uri in ("azure://modelstore/models/fraud/a.onnx", "abfs://models@modelstore.dfs.core.windows.net/a.onnx"):
        storage = {"secretName": "blob-creds", "endpoint": "https://modelstore.blob.core.windows.net"}
        ok = {"uri": uri, "storage": storage}
        ModelDeploymentSpec.model_validate({"model": {"name": "fraud", **ok}, "traffic": {"none": {}}})


def test_cuda_is_asked_for_with_a_gpu_and_refused_without() -> None:
    gpu = deployment(executionProvider="CUDA", resources={"limits": {"nvidia.com/gpu": 1, "memory": "4Gi"}})
    c = gpu["spec"]["template"]["spec"]["containers"][0]
    assert "--execution-provider=cuda" in c["args"] and c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert not any(
        a.startswith("--execution-provider") for a in deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    with pytest.raises(ValidationError, match=r"CUDA needs a GPU"):
        deployment(executionProvider="CUDA")


def test_a_pvc_model_is_a_file_on_its_claim_mounted_read_only() -> None:
    s = ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "pvc://models-ro/fraud/v3/model.onnx"}, "traffic": {"none": {}}}
    )
    pod = build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 1, 120)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "--model-uri=file:///var/run/modelrollout/model/fraud/v3/model.onnx" in c["args"]
    assert {"name": "model-store", "persistentVolumeClaim": {"claimName": "models-ro", "readOnly": True}} in pod[
        "volumes"
    ]
    assert {"name": "model-store", "mountPath": "/var/run/modelrollout/model", "readOnly": True} in c["volumeMounts"]
    with pytest.raises(ValidationError, match="model-store"):
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "fraud", "uri": "https://m/a.onnx"}, "traffic": {"none": {}},
             "serving": {"volumes": [{"name": "model-store", "emptyDir": {}}]}}
        )  # fmt: skip


def test_the_pods_declare_the_grpc_port_and_the_services_stay_http_only() -> None:
    c = deployment(grpcPort=9000)["spec"]["template"]["spec"]["containers"][0]
    assert "--grpc-port=9000" in c["args"]
    assert {"name": "grpc", "containerPort": 9000, "protocol": "TCP"} in c["ports"]
    assert [p["name"] for p in build_service(OWNER, "fraud", "abc123", "stable")["spec"]["ports"]] == ["http"]
    with pytest.raises(ValidationError, match="must differ from port"):
        deployment(grpcPort=8080)


def test_an_oci_model_gets_its_registry_credentials_as_a_docker_config() -> None:
    s = ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "oci://registry.example.com/models/fraud:v3",
                   "storage": {"secretName": "pull", "plainHTTP": True}}, "traffic": {"none": {}}}
    )  # fmt: skip
    pod = build_deployment(OWNER, "abc123", s.model, s.serving, "img:1", 1, 120)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["DOCKER_CONFIG"] == "/var/run/modelrollout/registry" and env["OCI_PLAIN_HTTP"] == "true"
    volume = next(v for v in pod["volumes"] if v["name"] == "registry-auth")
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
    assert {"name": "registry-auth", "mountPath": "/var/run/modelrollout/registry", "readOnly": True} in c[
        "volumeMounts"
    ]
    assert not any(e["name"].startswith("AWS_") for e in c["env"])
    with pytest.raises(ValidationError, match="region is for s3:// URIs"):
        ModelDeploymentSpec.model_validate(
            {"model": {"name": "fraud", "uri": "oci://r.example.com/m:v1", "storage": {"region": "eu-west-1"}},
             "traffic": {"none": {}}}
        )  # fmt: skip
