"""``oci://`` models: one file of an OCI artifact (as ORAS pushes them) in any OCI registry.

``oci://<registry>/<repository>[:<tag>|@sha256:<digest>][#<file>]`` names an artifact whose layers
carry their file names in the ``org.opencontainers.image.title`` annotation (what ``oras push``
writes); the model is the layer named by ``#<file>``, or the artifact's only ``.onnx`` layer, and
``metadata.json`` is the layer of that name, if any. Why OCI: teams that ship containers already run
a registry with access control, replication and immutable digests; a model pinned by digest is
as immutable as an image.

The registry protocol is the OCI distribution spec: the manifest, then the blob, whose sha256 must
be its digest (a registry or a mirror cannot hand over other bytes). Credentials come the way every
container tool reads them: ``$DOCKER_CONFIG/config.json`` (a ``kubernetes.io/dockerconfigjson``
Secret, which the operator mounts from ``model.storage.secretName``), per registry host. A
registry's 401 challenge is answered with HTTP basic auth (``Basic`` realms) or by fetching a token
from its ``Bearer`` realm with those credentials (anonymous when there are none). A blob redirected
to another host (a storage bucket) is fetched there without the registry's credentials.
``OCI_PLAIN_HTTP=true`` talks plain HTTP (a registry inside the cluster without TLS).
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LoadError

TITLE = "org.opencontainers.image.title"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_REFERENCE = re.compile(
    r"^oci://(?P<host>[^/\s]+)/(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127})|@(?P<digest>sha256:[a-f0-9]{64}))?(?:#(?P<file>[^\s#]+))?$"
)


@dataclass(frozen=True)
class Reference:
    """A parsed ``oci://`` URI."""

    host: str
    repository: str
    reference: str  # a tag or a digest
    file: str | None

    def with_file(self, name: str) -> str:
        ref = f"@{self.reference}" if self.reference.startswith("sha256:") else f":{self.reference}"
        return f"oci://{self.host}/{self.repository}{ref}#{name}"


def parse(uri: str) -> Reference:
    match = _REFERENCE.match(uri)
    if match is None:
        raise LoadError(
            f"{uri!r} is not oci://<registry>/<repository>[:<tag>|@sha256:<digest>][#<file>] "
            "(lowercase repository path components)"
        )
    reference = match["digest"] or match["tag"] or "latest"
    return Reference(match["host"], match["repo"], reference, match["file"])


def sibling(uri: str, name: str) -> str:
    """The URI of the artifact's layer called ``name`` (where ``metadata.json`` lives)."""
    return parse(uri).with_file(name)


def registry_credentials(host: str, env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """``(user, password)`` for ``host`` from ``$DOCKER_CONFIG/config.json`` (``auths``), if any."""
    env = dict(os.environ) if env is None else env
    directory = env.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    try:
        config = json.loads((Path(directory) / "config.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LoadError(f"cannot read the registry credentials in {directory}/config.json: {exc}") from None
    auths = config.get("auths") or {}
    for key in (host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"):
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        if entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="...",service="...",scope="..."`` -> ``("bearer", {...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class _NoCrossHostAuth(urllib.request.HTTPRedirectHandler):
    """Follow a redirect, but never carry the registry's Authorization to another host (a storage
    bucket that serves the blob would refuse a request with two kinds of credentials, and must not
    see the registry's)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


class Registry:
    """One registry host: requests with the credentials its challenge asks for."""

    def __init__(self, host: str, timeout: float, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        plain = (env.get("OCI_PLAIN_HTTP") or "").lower() in ("1", "true", "yes")
        self.base = f"{'http' if plain else 'https'}://{host}"
        self.host = host
        self.timeout = timeout
        self.credentials = registry_credentials(host, env)
        self.authorization: str | None = None
        self.opener = urllib.request.build_opener(_NoCrossHostAuth)

    def get(self, path: str, accept: str | None = None) -> Any:
        """GET ``path`` of the registry; answers a 401 challenge once. Returns the open response."""
        url = self.base + path
        for attempt in range(2):
            headers = {"Accept": accept} if accept else {}
            if self.authorization:
                headers["Authorization"] = self.authorization
            try:
                return self.opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code != 401 or attempt:
                    raise
                self.authorization = self._answer(exc.headers.get("WWW-Authenticate") or "")
        raise AssertionError("unreachable")

    def _answer(self, challenge: str) -> str:
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None:
                raise LoadError(
                    f"registry {self.host} wants credentials and none are configured for it "
                    "($DOCKER_CONFIG/config.json: model.storage.secretName, a kubernetes.io/dockerconfigjson Secret)"
                )
            user, password = self.credentials
            return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if scheme == "bearer" and params.get("realm"):
            return "Bearer " + self._token(params)
        raise LoadError(f"registry {self.host} asks for an authentication scheme not supported: {challenge[:100]!r}")

    def _token(self, params: dict[str, str]) -> str:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
        headers = {}
        if self.credentials is not None:
            user, password = self.credentials
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        request = urllib.request.Request(f"{params['realm']}?{query}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise LoadError(
                f"registry {self.host}: its token service refused the credentials (HTTP {exc.code})"
            ) from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise LoadError(f"registry {self.host}: its token service answered without a token")
        return str(token)


def layer_for(manifest: dict[str, Any], ref: Reference, uri: str) -> dict[str, Any]:
    """The layer of ``manifest`` the URI names (by its title), or its only ``.onnx`` layer."""
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)]
    titled = {str((layer.get("annotations") or {}).get(TITLE, "")): layer for layer in layers}
    if ref.file is not None:
        if ref.file not in titled:
            from .loader import NotFoundError

            raise NotFoundError(f"{uri}: the artifact has no file {ref.file!r} (files: {', '.join(sorted(titled))})")
        return titled[ref.file]
    models = [name for name in titled if name.endswith(".onnx")]
    if len(models) != 1:
        raise LoadError(
            f"{uri}: the artifact has {len(models)} .onnx files ({', '.join(models) or 'none'}): name one with #<file>"
        )
    return titled[models[0]]
