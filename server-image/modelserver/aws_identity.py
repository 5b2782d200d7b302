"""AWS credentials from the pod's ServiceAccount: IRSA's web-identity token and EKS Pod Identity.

Why: on EKS, static keys in a Secret are what platform teams forbid; a pod gets its AWS identity
from its ServiceAccount instead, and the EKS webhook or agent puts the same environment variables
into every pod that every AWS SDK reads:

- **IRSA** (IAM roles for service accounts): ``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` (a
  projected ServiceAccount token, rotated by the kubelet). The token is exchanged with STS
  ``AssumeRoleWithWebIdentity`` (an unsigned request: the token is the credential) for temporary
  keys; ``AWS_ROLE_SESSION_NAME`` names the session, ``AWS_ENDPOINT_URL_STS`` replaces the regional
  endpoint ``https://sts.<region>.amazonaws.com``.
- **EKS Pod Identity** (and ECS task roles): ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (or ``..._RELATIVE_URI``
  under ``http://169.254.170.2``) answers temporary keys as JSON to a GET carrying
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``'s content (or ``AWS_CONTAINER_AUTHORIZATION_TOKEN``).

Static keys (``AWS_ACCESS_KEY_ID``) win over both, as in the SDKs' chain. Keys are cached until five
minutes before they expire, so the model, its metadata and its data files cost one exchange; the
token file is read again for each exchange, since the kubelet rotates it. Tokens and keys never
appear in a message: errors name the variable to check and the service's error code.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from . import __version__
from .errors import LoadError
from .s3 import S3Config

STS_VERSION = "2011-06-15"
ECS_HOST = "http://169.254.170.2"
REFRESH_MARGIN_SECONDS = 300.0
_MAX_ANSWER = 64 * 1024


@dataclass(frozen=True, repr=False)
class TemporaryKeys:
    access_key: str
    secret_key: str
    session_token: str | None
    expires_at: float | None
    """Unix time; None: never expires (as the endpoint says)."""

    def fresh(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at - REFRESH_MARGIN_SECONDS


_cache: dict[tuple[str, ...], TemporaryKeys] = {}
_lock = threading.Lock()


def with_pod_identity(config: S3Config, timeout: float, env: Mapping[str, str] | None = None) -> S3Config:
    """``config`` signed with the pod's identity when it has no static keys and the pod has one;
    otherwise ``config`` unchanged (static keys, or anonymous access to a public bucket)."""
    env = os.environ if env is None else env
    if config.access_key:
        return config
    source = _source(env, config.region)
    if source is None:
        return config
    with _lock:
        keys = _cache.get(source)
        if keys is None or not keys.fresh(time.time()):
            keys = _exchange(source, env, timeout)
            _cache[source] = keys
    return replace(config, access_key=keys.access_key, secret_key=keys.secret_key, session_token=keys.session_token)


def forget() -> None:
    """Drop cached keys (tests; a refused request is not retried with keys the store refused)."""
    with _lock:
        _cache.clear()


def _source(env: Mapping[str, str], region: str) -> tuple[str, ...] | None:
    """Which identity the environment gives, as a cache key: (kind, endpoint, role)."""
    full, relative = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"), env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if full or relative:
        return ("container", full or f"{ECS_HOST}{relative}")
    role, token_file = env.get("AWS_ROLE_ARN"), env.get("AWS_WEB_IDENTITY_TOKEN_FILE")
    if role and token_file:
        endpoint = (env.get("AWS_ENDPOINT_URL_STS") or f"https://sts.{region}.amazonaws.com").rstrip("/")
        return ("web-identity", endpoint, role)
    if role or token_file:
        missing = "AWS_WEB_IDENTITY_TOKEN_FILE" if role else "AWS_ROLE_ARN"
        raise LoadError(f"AWS web identity is incomplete: {missing} is not set (the EKS webhook sets both)")
    return None


def _exchange(source: tuple[str, ...], env: Mapping[str, str], timeout: float) -> TemporaryKeys:
    if source[0] == "container":
        return _container_keys(source[1], env, timeout)
    return _web_identity_keys(source[1], source[2], env, timeout)


def _web_identity_keys(endpoint: str, role: str, env: Mapping[str, str], timeout: float) -> TemporaryKeys:
    token_file = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    token = _read_token(token_file, "AWS_WEB_IDENTITY_TOKEN_FILE")
    session = env.get("AWS_ROLE_SESSION_NAME") or f"modelserver-{int(time.time())}"
    form = urllib.parse.urlencode({"Action": "AssumeRoleWithWebIdentity", "Version": STS_VERSION, "RoleArn": role,
                                   "RoleSessionName": session, "WebIdentityToken": token}).encode()  # fmt: skip
    request = urllib.request.Request(
        f"{endpoint}/", form, _headers({"Content-Type": "application/x-www-form-urlencoded"})
    )
    body = _call(
        request, timeout, f"STS AssumeRoleWithWebIdentity for {role} (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)"
    )
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise LoadError(f"STS AssumeRoleWithWebIdentity for {role} answered something that is not XML") from None
    found = {_local(e.tag): (e.text or "").strip() for e in root.iter()}
    if not found.get("AccessKeyId") or not found.get("SecretAccessKey"):
        raise LoadError(f"STS AssumeRoleWithWebIdentity for {role} answered no credentials")
    return TemporaryKeys(found["AccessKeyId"], found["SecretAccessKey"], found.get("SessionToken") or None,
                         _expiry(found.get("Expiration")))  # fmt: skip


def _container_keys(url: str, env: Mapping[str, str], timeout: float) -> TemporaryKeys:
    headers = {}
    token_file = env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        headers["Authorization"] = _read_token(token_file, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    elif env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"):
        headers["Authorization"] = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"].strip()
    what = f"the container credentials endpoint {url} (AWS_CONTAINER_CREDENTIALS_FULL_URI, its authorization token)"
    body = _call(urllib.request.Request(url, headers=_headers(headers)), timeout, what)
    try:
        answer = json.loads(body)
        return TemporaryKeys(str(answer["AccessKeyId"]), str(answer["SecretAccessKey"]),
                             answer.get("Token") or None, _expiry(answer.get("Expiration")))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        raise LoadError(f"{what} answered no credentials") from None


def _call(request: urllib.request.Request, timeout: float, what: str) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read(_MAX_ANSWER)
    except urllib.error.HTTPError as exc:
        raise LoadError(
            f"{what} refused the exchange: HTTP {exc.code} {_error_code(exc.read(_MAX_ANSWER)) or exc.reason}"
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise LoadError(f"{what} could not be reached: {reason}") from None


def _read_token(path: str, variable: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise LoadError(f"cannot read {variable} {path}: {exc.strerror}") from None
    if not token:
        raise LoadError(f"{variable} {path} is empty")
    return token


def _headers(extra: dict[str, str]) -> dict[str, str]:
    return {"User-Agent": f"modelserver/{__version__}", **extra}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _error_code(body: bytes) -> str:
    """STS's ``<Code>`` (XML) or a JSON ``code``/``Code``, if any."""
    try:
        return next((e.text or "" for e in ET.fromstring(body).iter() if _local(e.tag) == "Code"), "")
    except ET.ParseError:
        pass
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    return str(answer.get("Code") or answer.get("code") or "") if isinstance(answer, dict) else ""


def _expiry(value: object) -> float | None:
    """ISO 8601 (``2026-12-05T16:00:00Z``) or epoch seconds -> Unix time; None when absent."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC).timestamp()
    except ValueError:
        return None
