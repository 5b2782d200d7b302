"""The oci:// reference grammar, challenges and docker-config credentials (the registry protocol
itself is tested against a real registry in test_storage.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from modelserver.errors import LoadError
from modelserver.oci import Reference, parse, parse_challenge, registry_credentials, sibling

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("oci://ghcr.io/acme/models/fraud:v3", Reference("ghcr.io", "acme/models/fraud", "v3", None)),
        ("oci://127.0.0.1:5000/fraud", Reference("127.0.0.1:5000", "fraud", "latest", None)),
        (f"oci://r.example.com/fraud@{DIGEST}#model.onnx", Reference("r.example.com", "fraud", DIGEST, "model.onnx")),
    ],
)
def test_references_parse(uri: str, expected: Reference) -> None:
    assert parse(uri) == expected


@pytest.mark.parametrize("uri", ["oci://ghcr.io", "oci://ghcr.io/Acme/fraud:v1", "oci://r/fraud@sha256:abc"])
def test_bad_references_are_refused_with_the_grammar(uri: str) -> None:
    with pytest.raises(LoadError, match=r"is not oci://<registry>/<repository>"):
        parse(uri)


def test_metadata_is_the_artifacts_layer_of_that_name() -> None:
    assert sibling("oci://r.example.com/fraud:v1", "metadata.json") == "oci://r.example.com/fraud:v1#metadata.json"
    assert sibling(f"oci://r/fraud@{DIGEST}#m.onnx", "metadata.json") == f"oci://r/fraud@{DIGEST}#metadata.json"


def test_challenges_parse() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:m:pull"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                      "scope": "repository:m:pull"}  # fmt: skip
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


def test_credentials_come_from_the_docker_config_by_host(tmp_path: Path) -> None:
    auth = base64.b64encode(b"ci:s3cret").decode()
    config = {"auths": {"https://ghcr.io": {"auth": auth}, "r.example.com": {"username": "u", "password": "p"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert registry_credentials("ghcr.io", env) == ("ci", "s3cret")
    assert registry_credentials("r.example.com", env) == ("u", "p")
    assert registry_credentials("other.example.com", env) is None
    assert registry_credentials("ghcr.io", {"DOCKER_CONFIG": str(tmp_path / "missing")}) is None
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LoadError, match="cannot read the registry credentials"):
        registry_credentials("ghcr.io", env)
