"""A GCE metadata server on loopback that hands out the default service account's access token.

Why: on GKE with Workload Identity (and on any GCE VM) a pod's Google credentials are a token from
``http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token``,
asked for with ``Metadata-Flavor: Google``. This answers that one path the way the real server does
(JSON ``access_token``/``expires_in``/``token_type``, the ``Metadata-Flavor: Google`` header on every
answer, 403 without the request header, 404 elsewhere), so the model server's token fetching and
caching meet real HTTP; pods find it through ``GCE_METADATA_HOST`` (:attr:`MetadataServer.host`).
It runs on threads in the test process, counts token requests, and :attr:`MetadataServer.token`
is assignable to play a rotation.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from hack.loopback.procs import LoopbackHTTPServer, send

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"


class MetadataServer(LoopbackHTTPServer):
    """``with MetadataServer("ya29.token") as metadata:`` -> ``env={"GCE_METADATA_HOST": metadata.host}``."""

    name = "gce-metadata"

    def __init__(self, token: str, expires_in: int = 3599) -> None:
        self.token, self.expires_in = token, expires_in
        self.requests = 0

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, as ``GCE_METADATA_HOST`` takes it."""
        return self.url.removeprefix("http://")

    def handler(self) -> type[BaseHTTPRequestHandler]:
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != TOKEN_PATH:
                    self._answer(404, b"Not Found\n", "text/plain")
                elif self.headers.get("Metadata-Flavor") != "Google":
                    self._answer(403, b"Missing Metadata-Flavor:Google header.\n", "text/plain")
                else:
                    metadata.requests += 1
                    body = {"access_token": metadata.token, "expires_in": metadata.expires_in, "token_type": "Bearer"}
                    self._answer(200, json.dumps(body).encode(), "application/json")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                send(self, status, body, kind, **{"Metadata-Flavor": "Google"})

            def log_message(self, *args: object) -> None:
                pass

        return Handler
