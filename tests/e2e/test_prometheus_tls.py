"""Gates against a Prometheus that demands TLS with a client certificate and basic auth.

The Prometheus is real and secured by its own web config (``--web.config.file``): a server
certificate from a test CA, ``RequireAndVerifyClientCert`` against the same CA, and a bcrypt-hashed
basic-auth user. The credentials reach the gates the two ways the operator gets them: from Secrets a
ModelDeployment names (``spec.analysis.prometheus``), and from files (the operator's defaults, a
mounted Secret). One custom gate on a constant query tells whether Prometheus answered; every
failure must be a blind gate whose message says what to fix and carries no secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from modelrollout.analysis import run_analysis
from modelrollout.api.types import AnalysisResult, ModelDeploymentSpec, ModelDeploymentStatus, PrometheusSpec
from modelrollout.metrics.connection import CredentialsError, PrometheusConnection, PrometheusDefaults, from_spec
from modelrollout.metrics.provider import PrometheusProvider, open_provider

from hack.loopback.certs import Issued, issue, make_ca
from hack.loopback.prometheus import Prometheus, WebSecurity

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

NAMESPACE = "ml"
PASSWORD = "correct horse battery staple"
GATE = {"name": "answers", "template": "custom", "query": "vector(0.25)", "max": 0.5}
STATUS = ModelDeploymentStatus(phase="Progressing", stableRevision="r1", canaryRevision="r2", currentStep=0)


@dataclass
class Secured:
    prometheus: Prometheus
    ca: Issued
    client: Issued
    stranger: Issued  # a client certificate from a CA the server does not trust
    secrets: dict[str, dict[str, bytes]]

    def read(self, namespace: str, name: str) -> dict[str, bytes]:
        assert namespace == NAMESPACE
        if name not in self.secrets:
            raise CredentialsError(f"Secret {namespace}/{name} not found")
        return self.secrets[name]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    pki = tmp_path_factory.mktemp("pki")
    ca = make_ca(pki)
    server = issue(ca, pki, "prometheus")
    client = issue(ca, pki, "modelrollout-operator", client=True)
    stranger = issue(make_ca(pki / "other", "other-ca"), pki, "stranger", client=True)
    web = WebSecurity(server=server, ca=ca.cert, client_ca=ca.cert, client=client, users={"gates": PASSWORD})
    secrets = {
        "prom-basic": {"username": b"gates", "password": PASSWORD.encode()},
        "prom-tls": {
            "ca.crt": ca.cert.read_bytes(),
            "tls.crt": client.cert.read_bytes(),
            "tls.key": client.key.read_bytes(),
        },
        "prom-stranger": {"tls.crt": stranger.cert.read_bytes(), "tls.key": stranger.key.read_bytes()},
    }
    with Prometheus(tmp_path_factory.mktemp("prometheus"), web=web) as prometheus:
        yield Secured(prometheus, ca, client, stranger, secrets)


def prometheus_spec(address: str, **fields: Any) -> dict[str, Any]:
    return {"address": address, "timeoutSeconds": 5, **fields}


BASIC = {"username": {"name": "prom-basic", "key": "username"}, "password": {"name": "prom-basic", "key": "password"}}
CLIENT_CERT = {"cert": {"name": "prom-tls", "key": "tls.crt"}, "key": {"name": "prom-tls", "key": "tls.key"}}
TRUST = {"ca": {"name": "prom-tls", "key": "ca.crt"}}


def check(secured: Secured, prometheus: dict[str, Any]) -> AnalysisResult:
    """One gate check as the operator runs it: credentials resolved, provider opened, gates run."""
    spec = ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud", "uri": "https://models.example/fraud.onnx"},
            "traffic": {"none": {}},
            "analysis": {"prometheus": prometheus, "metrics": [GATE]},
        }
    )
    assert spec.analysis.prometheus is not None
    connection: PrometheusConnection | CredentialsError
    try:
        connection = from_spec(spec.analysis.prometheus, NAMESPACE, secured.read)
    except CredentialsError as exc:
        connection = exc
    with open_provider(connection) as provider:
        return run_analysis(spec, STATUS, "r2", NAMESPACE, "fraud", datetime.now(UTC), provider=provider)


def blind_because(result: AnalysisResult) -> str:
    assert result.verdict == "Inconclusive", result
    (gate,) = result.metrics
    assert gate.reason == "QueryError"
    assert PASSWORD not in gate.message and "PRIVATE KEY" not in gate.message
    return gate.message


def test_basic_auth_and_a_client_certificate_from_secrets_reach_the_gates(secured: Secured) -> None:
    address = secured.prometheus.url
    assert address.startswith("https://")
    result = check(secured, prometheus_spec(address, basicAuth=BASIC, tls=TRUST | CLIENT_CERT))
    assert result.verdict == "Pass", result
    assert result.metrics[0].value == 0.25


def test_a_wrong_password_is_refused(secured: Secured) -> None:
    secured.secrets["prom-wrong"] = {"username": b"gates", "password": b"tr0ub4dor&3"}
    wrong = {
        "username": {"name": "prom-wrong", "key": "username"},
        "password": {"name": "prom-wrong", "key": "password"},
    }
    message = blind_because(
        check(secured, prometheus_spec(secured.prometheus.url, basicAuth=wrong, tls=TRUST | CLIENT_CERT))
    )
    assert f"Prometheus at {secured.prometheus.url} refused the credentials (HTTP 401: Unauthorized)" in message
    assert "tr0ub4dor" not in message


def test_no_client_certificate_fails_the_handshake(secured: Secured) -> None:
    message = blind_because(check(secured, prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=TRUST)))
    assert f"TLS with Prometheus at {secured.prometheus.url} failed (" in message


def test_a_client_certificate_from_another_ca_fails_the_handshake(secured: Secured) -> None:
    stranger = {"cert": {"name": "prom-stranger", "key": "tls.crt"}, "key": {"name": "prom-stranger", "key": "tls.key"}}
    message = blind_because(
        check(secured, prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=TRUST | stranger))
    )
    assert f"TLS with Prometheus at {secured.prometheus.url} failed (" in message


def test_a_server_not_signed_by_the_trusted_cas_is_refused(secured: Secured) -> None:
    """Without ``ca`` the system's CAs are trusted, and they did not sign the test server."""
    message = blind_because(check(secured, prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=CLIENT_CERT)))
    assert "certificate verify failed" in message


def test_insecure_skip_verify_trusts_any_server(secured: Secured) -> None:
    tls = CLIENT_CERT | {"insecureSkipVerify": True}
    assert check(secured, prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=tls)).verdict == "Pass"


def test_a_missing_secret_is_named(secured: Secured) -> None:
    tls = {"ca": {"name": "prom-ca", "key": "ca.crt"}}
    message = blind_because(check(secured, prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=tls)))
    assert f"Prometheus credentials: Secret {NAMESPACE}/prom-ca not found" in message


def test_the_operator_defaults_read_mounted_files_at_every_check(secured: Secured, tmp_path: Path) -> None:
    """The chart mounts a Secret and passes file paths; a rotated password is read at the next check."""
    password = tmp_path / "password"
    password.write_text("stale\n")
    defaults = PrometheusDefaults(
        address=secured.prometheus.url,
        basic_auth_username="gates",
        basic_auth_password_file=str(password),
        ca_file=str(secured.ca.cert),
        cert_file=str(secured.client.cert),
        key_file=str(secured.client.key),
    )
    with PrometheusProvider(defaults.connection()) as provider:
        refused = provider.query("vector(1)")
    assert refused.error is not None and "refused the credentials (HTTP 401" in refused.error
    password.write_text(PASSWORD + "\n")
    with PrometheusProvider(defaults.connection()) as provider:
        answered = provider.query("vector(1)")
    assert answered.value == 1.0, answered


def test_key_files_live_only_as_long_as_the_check(secured: Secured) -> None:
    spec = PrometheusSpec.model_validate(
        prometheus_spec(secured.prometheus.url, basicAuth=BASIC, tls=TRUST | CLIENT_CERT)
    )
    provider = PrometheusProvider(from_spec(spec, NAMESPACE, secured.read))
    key_file = Path(provider._session.cert[1])  # type: ignore[index]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert oct(key_file.parent.stat().st_mode & 0o777) == "0o700"
    assert provider.query("vector(1)").value == 1.0
    provider.close()
    assert not key_file.exists() and not key_file.parent.exists()
