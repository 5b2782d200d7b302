"""Prometheus credentials: the spec's validation, their resolution from Secrets and files, and that
no secret ever shows in a repr or an error."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from modelrollout import config
from modelrollout.api.types import PrometheusSpec
from modelrollout.metrics.connection import CredentialsError, PrometheusDefaults, from_spec
from pydantic import ValidationError

TOKEN = "s3cr3t-token"
REF = {"name": "prom", "key": "token"}


def reader(secrets: dict[str, dict[str, bytes]]):
    def read(namespace: str, name: str) -> dict[str, bytes]:
        if name not in secrets:
            raise CredentialsError(f"Secret {namespace}/{name} not found")
        return secrets[name]

    return read


def spec(**fields: object) -> PrometheusSpec:
    return PrometheusSpec.model_validate({"address": "https://prom:9090", **fields})


def test_a_bearer_token_and_headers_become_request_headers() -> None:
    connection = from_spec(
        spec(authorization={"credentials": REF}, headers=[{"name": "X-Scope-OrgID", "value": "ml"}]),
        "ml",
        reader({"prom": {"token": f"  {TOKEN}\n".encode()}}),
    )
    assert connection.headers == {"X-Scope-OrgID": "ml", "Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(connection)
    assert "authorization" in repr(connection)


def test_another_token_scheme_is_sent_as_given() -> None:
    connection = from_spec(
        spec(authorization={"type": "Token", "credentials": REF}), "ml", reader({"prom": {"token": b"abc"}})
    )
    assert connection.headers["Authorization"] == "Token abc"


def test_basic_auth_and_tls_material_are_read_from_their_secrets_once_each() -> None:
    reads: list[str] = []
    secrets = {
        "basic": {"user": b"gates", "password": b"pw"},
        "tls": {"ca.crt": b"CA", "tls.crt": b"CERT", "tls.key": b"KEY"},
    }

    def read(namespace: str, name: str) -> dict[str, bytes]:
        reads.append(name)
        return secrets[name]

    connection = from_spec(
        spec(
            basicAuth={"username": {"name": "basic", "key": "user"}, "password": {"name": "basic", "key": "password"}},
            tls={
                "ca": {"name": "tls", "key": "ca.crt"},
                "cert": {"name": "tls", "key": "tls.crt"},
                "key": {"name": "tls", "key": "tls.key"},
            },
        ),
        "ml",
        read,
    )
    assert reads == ["basic", "tls"]
    assert connection.basic_auth == ("gates", "pw")
    assert (connection.ca_pem, connection.cert_pem, connection.key_pem) == (b"CA", b"CERT", b"KEY")
    assert "pw" not in repr(connection) and "KEY" not in repr(connection)


@pytest.mark.parametrize(
    ("secrets", "message"),
    [
        ({}, "Secret ml/prom not found"),
        (
            {"prom": {"other": b"x"}},
            "Secret ml/prom has no key 'token' (spec.analysis.prometheus.authorization.credentials.key); "
            "keys present: other",
        ),
        ({"prom": {"token": b"\xff\xfe"}}, "Secret ml/prom key 'token' is not UTF-8 text"),
        ({"prom": {"token": b"  \n"}}, "Secret ml/prom key 'token' is empty or holds control characters"),
        ({"prom": {"token": b"a\nb"}}, "is empty or holds control characters"),
    ],
)
def test_an_unusable_secret_is_reported_with_its_field(secrets: dict, message: str) -> None:
    with pytest.raises(CredentialsError) as raised:
        from_spec(spec(authorization={"credentials": REF}), "ml", reader(secrets))
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"authorization": {"credentials": REF}, "basicAuth": {"username": REF, "password": REF}}, "set one of"),
        ({"address": "http://prom:9090", "tls": {"ca": REF}}, "tls needs an https:// address"),
        ({"tls": {"cert": REF}}, "cert and key go together"),
        ({"tls": {"ca": REF, "insecureSkipVerify": True}}, "ca is ignored when insecureSkipVerify"),
        ({"authorization": {"type": "Basic", "credentials": REF}}, "use basicAuth for Basic credentials"),
        ({"headers": [{"name": "authorization", "value": "x"}]}, "set by the operator"),
        ({"headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]}, "must be unique"),
        ({"headers": [{"name": "X-A", "value": "line\nbreak"}]}, "headers.0.value"),
        ({"authorization": {"credentials": {"name": "Prom", "key": "t"}}}, "authorization.credentials.name"),
    ],
)
def test_the_parser_refuses_what_admission_refuses(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        spec(**fields)
    assert message in str(raised.value)


def test_the_operator_defaults_come_from_flags_and_files(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(
        [
            "--prometheus-address=https://prom:9090",
            f"--prometheus-bearer-token-file={token}",
            "--prometheus-header=X-Scope-OrgID=ml",
            "--prometheus-timeout-seconds=3",
        ]
    )
    defaults = config.from_arguments(args).prometheus
    connection = defaults.connection()
    assert connection.address == "https://prom:9090"
    assert connection.timeout_seconds == 3
    assert connection.headers == {"X-Scope-OrgID": "ml", "Authorization": f"Bearer {TOKEN}"}
    token.write_text("rotated")
    assert defaults.connection().headers["Authorization"] == "Bearer rotated"


def test_a_missing_default_credential_file_says_where_to_look(tmp_path: Path) -> None:
    defaults = PrometheusDefaults(address="http://prom:9090", bearer_token_file=str(tmp_path / "nope"))
    with pytest.raises(CredentialsError, match=r"operator\.prometheusAuth"):
        defaults.connection()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prometheus-cert-file=/c"], "go together"),
        (["--prometheus-basic-auth-username=u"], "go together"),
        (["--prometheus-bearer-token-file=/t", "--prometheus-basic-auth-username=u",
          "--prometheus-basic-auth-password-file=/p"], "set one of"),
        (["--prometheus-header=Authorization=Bearer x"], "--prometheus-bearer-token-file"),
        (["--prometheus-header=novalue"], "expected NAME=VALUE"),
    ],
)  # fmt: skip
def test_inconsistent_default_flags_are_refused_at_start(flags: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    with pytest.raises(ValueError, match=message):
        config.from_arguments(parser.parse_args(flags))
