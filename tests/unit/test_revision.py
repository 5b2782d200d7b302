"""A revision changes with what is served and with nothing else."""

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.revision import revision_hash, unsigned_uri

BASE = {"model": {"name": "fraud", "uri": "https://m/a.onnx"}, "traffic": {"none": {}}}


def rev(spec: dict, image: str = "img:1") -> str:
    s = ModelDeploymentSpec.model_validate(spec)
    return revision_hash(s.model, s.serving, image)


def test_stable_and_short():
    assert rev(BASE) == rev(BASE)
    assert len(rev(BASE)) == 10 and all(c in "0123456789abcdef" for c in rev(BASE))


def test_model_image_and_pod_template_changes_make_a_new_revision():
    assert rev({**BASE, "model": {"name": "fraud", "uri": "https://m/b.onnx"}}) != rev(BASE)
    assert rev({**BASE, "model": {**BASE["model"], "sha256": "a" * 64}}) != rev(BASE)
    assert rev(BASE, image="img:2") != rev(BASE)
    assert rev({**BASE, "serving": {"resources": {"limits": {"memory": "1Gi"}}}}) != rev(BASE)
    assert rev({**BASE, "serving": {"warmup": {"requests": 99}}}) != rev(BASE)


def test_other_edits_do_not():
    assert rev({**BASE, "serving": {"replicas": 7}}) == rev(BASE)
    assert rev({**BASE, "analysis": {"interval": "5s"}}) == rev(BASE)
    assert rev({**BASE, "bake": {"duration": "1h"}, "progressDeadlineSeconds": 60}) == rev(BASE)
    assert rev({**BASE, "strategy": {"canary": {"steps": [50, 100]}}}) == rev(BASE)


def test_revisions_made_before_the_pod_spec_fields_keep_their_hash():
    """Hashes computed before serving gained its pod-spec fields: an operator upgrade must not start
    a rollout of every running model."""
    assert rev(BASE) == "4dd78d199c"
    served = {"env": [{"name": "A", "value": "b"}], "podLabels": {"a": "b"}, "resources": {"limits": {"memory": "1Gi"}}}
    assert rev({**BASE, "serving": served}) == "9561d08bcf"
    assert rev({**BASE, "model": {**BASE["model"], "sha256": "a" * 64}}) == "868208d1be"
    assert rev({**BASE, "serving": {"terminationGracePeriodSeconds": 30, "tolerations": []}}) == "4dd78d199c"


def test_each_pod_spec_field_makes_a_new_revision():
    fields = {
        "serviceAccountName": "models",
        "automountServiceAccountToken": True,
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
        "priorityClassName": "high",
        "imagePullSecrets": [{"name": "registry"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "envFrom": [{"secretRef": {"name": "creds"}}],
        "terminationGracePeriodSeconds": 60,
        "drainSeconds": 10,
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    hashes = {name: rev({**BASE, "serving": {name: value}}) for name, value in fields.items()}
    assert len(set(hashes.values()) | {rev(BASE)}) == len(fields) + 1, hashes


def test_how_an_s3_model_is_reached_is_not_part_of_the_revision():
    """Rotating or renaming the credentials' Secret, or moving the endpoint, reaches the same bytes."""
    s3 = {**BASE, "model": {"name": "fraud", "uri": "s3://models/fraud/a.onnx", "sha256": "a" * 64}}
    stored = {**s3, "model": {**s3["model"], "storage": {"secretName": "store", "endpoint": "http://minio:9000"}}}
    moved = {**s3, "model": {**s3["model"], "storage": {"secretName": "store-v2", "region": "eu-west-1"}}}
    assert rev(s3) == rev(stored) == rev(moved)
    assert rev({**s3, "model": {**s3["model"], "uri": "s3://models/fraud/b.onnx"}}) != rev(s3)


def test_re_signing_a_pre_signed_url_is_no_new_revision():
    signed = (
        "https://bucket.s3.amazonaws.com/fraud/a.onnx?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={}&X-Amz-Signature={}"
    )
    first = {**BASE, "model": {"name": "fraud", "uri": signed.format("20260101T000000Z", "aaa")}}
    again = {**BASE, "model": {"name": "fraud", "uri": signed.format("20260102T000000Z", "bbb")}}
    sas = {**BASE, "model": {"name": "fraud", "uri": "https://acct.blob.core.windows.net/m/a.onnx?sv=2024&se=x&sig=zz"}}
    assert (
        rev(first) == rev(again) == rev({**BASE, "model": {"name": "fraud", "uri": signed.split("?", maxsplit=1)[0]}})
    )
    assert rev(sas) == rev({**BASE, "model": {"name": "fraud", "uri": "https://acct.blob.core.windows.net/m/a.onnx"}})
    versioned = {**BASE, "model": {"name": "fraud", "uri": "https://m/a.onnx?versionId=7"}}
    assert rev(versioned) != rev({**BASE, "model": {"name": "fraud", "uri": "https://m/a.onnx?versionId=8"}})
    assert unsigned_uri(signed.format("d", "s")) == "https://bucket.s3.amazonaws.com/fraud/a.onnx"


def test_a_metadata_uri_is_part_of_the_revision_and_absent_leaves_old_hashes():
    assert rev(BASE) == "4dd78d199c"
    with_metadata = {**BASE, "model": {**BASE["model"], "metadataUri": "https://m/metadata.json"}}
    assert rev(with_metadata) != rev(BASE)
