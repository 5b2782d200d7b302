"""How the operator reaches one Prometheus: address, timeout and credentials, resolved for one check.

Why credentials are resolved at every check instead of once at start: they live in Secrets (a
ModelDeployment's ``spec.analysis.prometheus``) or in files mounted from one (the operator's
defaults), and both rotate. Reading them for each check means a rotated token is used from the next
check on and a revoked one shows at once, with no restart and no cache to invalidate; one Secret
GET per check is small next to the queries the check makes.

Secrets never leave this module in text: :class:`PrometheusConnection`'s ``repr`` names only which
kinds of credentials it carries, and every :class:`CredentialsError` names the Secret, the key and
the field of the spec, never a value.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from modelrollout.api.types import PrometheusSpec, SecretKeyRef

SPEC_FIELD = "spec.analysis.prometheus"


class CredentialsError(Exception):
    """A credential could not be read; the message names the Secret or file, the field and the fix."""


SecretReader = Callable[[str, str], Mapping[str, bytes]]
"""``(namespace, name) -> data`` of a Secret (values decoded); raises :class:`CredentialsError`."""


@dataclass(frozen=True, repr=False)
class PrometheusConnection:
    """Everything a query needs to reach one Prometheus; the credentials are values, not references."""

    address: str
    timeout_seconds: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)  # the Authorization header included
    basic_auth: tuple[str, str] | None = None
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    insecure_skip_verify: bool = False

    def __repr__(self) -> str:
        kinds = [
            kind
            for kind, present in (
                ("authorization", any(k.lower() == "authorization" for k in self.headers)),
                ("basic-auth", self.basic_auth is not None),
                ("ca", self.ca_pem is not None),
                ("client-certificate", self.cert_pem is not None),
                ("insecure-skip-verify", self.insecure_skip_verify),
            )
            if present
        ]
        return f"PrometheusConnection({self.address!r}, credentials={kinds})"

    def session(self) -> TlsSession:
        """A requests session that sends these credentials; close it to remove its key files."""
        return TlsSession(self)


class TlsSession(requests.Session):
    """A ``requests.Session`` with this connection's basic auth and TLS material.

    Why files: ``requests`` (urllib3) takes a CA bundle and a client certificate only as paths, so
    PEM from a Secret is written to a directory only this process can read (0700, files 0600) and
    removed by :meth:`close`.
    """

    def __init__(self, connection: PrometheusConnection) -> None:
        super().__init__()
        self._dir: str | None = None
        if connection.basic_auth is not None:
            self.auth = connection.basic_auth
        if connection.insecure_skip_verify:
            self.verify = False
        elif connection.ca_pem is not None:
            self.verify = self._write("ca.pem", connection.ca_pem)
        if connection.cert_pem is not None and connection.key_pem is not None:
            self.cert = (self._write("cert.pem", connection.cert_pem), self._write("key.pem", connection.key_pem))

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        """Proxies from the environment still apply, but ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``)
        must not replace the CA this connection names, as ``requests`` lets it for a session's own
        ``verify`` (psf/requests#3829)."""
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is not True and (verify is None or verify is True):
            settings["verify"] = self.verify
        return settings

    def _write(self, name: str, data: bytes) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="modelrollout-prom-")
        path = os.path.join(self._dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def close(self) -> None:
        super().close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def from_spec(spec: PrometheusSpec, namespace: str, read_secret: SecretReader) -> PrometheusConnection:
    """The connection ``spec`` describes, its Secrets read from ``namespace`` (each Secret once)."""
    secrets: dict[str, Mapping[str, bytes]] = {}

    def value(ref: SecretKeyRef, path: str) -> bytes:
        if ref.name not in secrets:
            secrets[ref.name] = read_secret(namespace, ref.name)
        data = secrets[ref.name]
        if ref.key not in data:
            raise CredentialsError(
                f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({SPEC_FIELD}.{path}.key); "
                f"keys present: {', '.join(sorted(data)) or 'none'}"
            )
        return data[ref.key]

    def text(ref: SecretKeyRef, path: str) -> str:
        raw = value(ref, path)
        try:
            decoded = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise CredentialsError(
                f"Secret {namespace}/{ref.name} key {ref.key!r} is not UTF-8 text ({SPEC_FIELD}.{path})"
            ) from None
        if not decoded or not decoded.isprintable():
            raise CredentialsError(
                f"Secret {namespace}/{ref.name} key {ref.key!r} is empty or holds control characters "
                f"({SPEC_FIELD}.{path})"
            )
        return decoded

    headers = {h.name: h.value for h in spec.headers}
    if spec.authorization is not None:
        token = text(spec.authorization.credentials, "authorization.credentials")
        headers["Authorization"] = f"{spec.authorization.type} {token}"
    basic = None
    if spec.basicAuth is not None:
        basic = (
            text(spec.basicAuth.username, "basicAuth.username"),
            text(spec.basicAuth.password, "basicAuth.password"),
        )
    tls = spec.tls
    return PrometheusConnection(
        address=spec.address,
        timeout_seconds=float(spec.timeoutSeconds),
        headers=headers,
        basic_auth=basic,
        ca_pem=value(tls.ca, "tls.ca") if tls and tls.ca else None,
        cert_pem=value(tls.cert, "tls.cert") if tls and tls.cert else None,
        key_pem=value(tls.key, "tls.key") if tls and tls.key else None,
        insecure_skip_verify=bool(tls and tls.insecureSkipVerify),
    )


@dataclass(frozen=True)
class PrometheusDefaults:
    """The operator's own Prometheus, for ModelDeployments that do not name one.

    Credentials are file paths (the chart mounts a Secret), read at every check so a rotated Secret
    is picked up when the kubelet refreshes the mount.
    """

    address: str = ""
    timeout_seconds: float = 10.0
    authorization_type: str = "Bearer"
    bearer_token_file: str = ""
    basic_auth_username: str = ""
    basic_auth_password_file: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("--prometheus-cert-file and --prometheus-key-file go together")
        if self.bearer_token_file and (self.basic_auth_username or self.basic_auth_password_file):
            raise ValueError("set one of --prometheus-bearer-token-file and --prometheus-basic-auth-*")
        if bool(self.basic_auth_username) != bool(self.basic_auth_password_file):
            raise ValueError("--prometheus-basic-auth-username and --prometheus-basic-auth-password-file go together")

    def connection(self) -> PrometheusConnection:
        """The connection these defaults describe, with the credential files read now."""
        headers = dict(self.headers)
        if self.bearer_token_file:
            headers["Authorization"] = f"{self.authorization_type} {_read_text(self.bearer_token_file)}"
        basic = None
        if self.basic_auth_username:
            basic = (self.basic_auth_username, _read_text(self.basic_auth_password_file))
        return PrometheusConnection(
            address=self.address,
            timeout_seconds=self.timeout_seconds,
            headers=headers,
            basic_auth=basic,
            ca_pem=_read(self.ca_file) if self.ca_file else None,
            cert_pem=_read(self.cert_file) if self.cert_file else None,
            key_pem=_read(self.key_file) if self.key_file else None,
            insecure_skip_verify=self.insecure_skip_verify,
        )


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CredentialsError(
            f"cannot read the operator's Prometheus credential file {path}: {exc.strerror} "
            "(check the chart's operator.prometheusAuth and the Secret it mounts)"
        ) from None


def _read_text(path: str) -> str:
    text = _read(path).decode("utf-8", "replace").strip()
    if not text or not text.isprintable():
        raise CredentialsError(f"the operator's Prometheus credential file {path} is empty or holds control characters")
    return text
