"""A revision changes with what is served and with nothing else."""

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.revision import revision_hash

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
