"""The two AWS services a pod's ServiceAccount identity goes through, on loopback: STS
``AssumeRoleWithWebIdentity`` (IRSA) and an EKS Pod Identity agent's credentials endpoint.

Why a stand-in: there is no STS or Pod Identity agent to run here (the real ones validate tokens
against the cluster's OIDC issuer and IAM). What the model server must get right is the client side
of both documented exchanges: the form STS expects (action, version, role, session name, token
read from the projected token file), the ``Authorization`` header the agent expects, the XML or
JSON answer, the expiry, and the errors. So this answers exactly those wire formats, checks the
token and the role against the ones it was given (``token`` is assignable, to play a rotation), and
hands out the real object store's keys as the temporary credentials; the store (versitygw) then
checks every signature made with them. It counts the exchanges.

versitygw 1.8 has a real STS, but its JWKS fetch refuses loopback and private addresses (an SSRF
guard with no switch), so it cannot verify a token from an issuer on this machine; and it refuses a
session token it did not mint itself (``InvalidToken``). So with ``session_tokens=False`` (what the
end-to-end tests use) the answer carries no ``SessionToken``/``Token``; with True, ``session-<n>``.
"""

from __future__ import annotations

import hmac
import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from xml.sax.saxutils import escape

from hack.loopback.procs import LoopbackHTTPServer, send

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
POD_IDENTITY_PATH = "/v1/credentials"


class AwsIdentity(LoopbackHTTPServer):
    """``with AwsIdentity(role, token, (key, secret)) as aws:`` -> ``aws.sts_url``, ``aws.pod_identity_url``."""

    name = "aws-identity"

    def __init__(
        self,
        role: str,
        token: str,
        keys: tuple[str, str],
        lifetime: timedelta = timedelta(hours=1),
        session_tokens: bool = True,
    ) -> None:
        self.role, self.token, self.keys, self.lifetime = role, token, keys, lifetime
        self.session_tokens = session_tokens
        self.exchanges = 0
        self.refused = 0

    @property
    def sts_url(self) -> str:
        return self.url

    @property
    def pod_identity_url(self) -> str:
        return self.url + POD_IDENTITY_PATH

    def _valid(self, token: str) -> bool:
        return hmac.compare_digest(token.strip().encode(), self.token.encode())

    def _expiration(self) -> str:
        return (datetime.now(UTC) + self.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")

    def sts(self, form: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) of one STS request."""
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return self._sts_error(400, "InvalidAction", "only AssumeRoleWithWebIdentity 2011-06-15")
        if not form.get("RoleSessionName"):
            return self._sts_error(400, "MissingParameter", "RoleSessionName is required")
        if not self._valid(form.get("WebIdentityToken", "")):
            return self._sts_error(400, "InvalidIdentityToken", "the token is not valid")
        if form.get("RoleArn") != self.role:
            return self._sts_error(403, "AccessDenied", "not authorized to perform sts:AssumeRoleWithWebIdentity")
        self.exchanges += 1
        key, secret = self.keys
        body = (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}"><AssumeRoleWithWebIdentityResult><Credentials>'
            f"<AccessKeyId>{escape(key)}</AccessKeyId><SecretAccessKey>{escape(secret)}</SecretAccessKey>"
            f"{self._session_xml()}<Expiration>{self._expiration()}</Expiration>"
            "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        )
        return 200, "text/xml", body.encode()

    def _session_xml(self) -> str:
        return f"<SessionToken>session-{self.exchanges}</SessionToken>" if self.session_tokens else ""

    def _sts_error(self, status: int, code: str, message: str) -> tuple[int, str, bytes]:
        self.refused += 1
        body = (
            f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error></ErrorResponse>"
        )
        return status, "text/xml", body.encode()

    def pod_identity(self, authorization: str | None) -> tuple[int, str, bytes]:
        if not self._valid(authorization or ""):
            self.refused += 1
            return 401, "application/json", json.dumps({"code": "AccessDeniedException"}).encode()
        self.exchanges += 1
        key, secret = self.keys
        answer = {"AccessKeyId": key, "SecretAccessKey": secret, "AccountId": "000000000000",
                  "Expiration": self._expiration()}  # fmt: skip
        if self.session_tokens:
            answer["Token"] = f"session-{self.exchanges}"
        return 200, "application/json", json.dumps(answer).encode()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        identity = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != POD_IDENTITY_PATH:
                    send(self, 404, b"not found\n", "text/plain")
                    return
                status, kind, body = identity.pod_identity(self.headers.get("Authorization"))
                send(self, status, body, kind)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                status, kind, body = identity.sts(form)
                send(self, status, body, kind)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
