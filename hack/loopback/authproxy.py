"""A bearer-token gate in front of a loopback server, the way managed Prometheus services sit behind one.

Why a proxy: Prometheus' own web config knows TLS and basic auth but not bearer tokens; managed
offerings (and kube-rbac-proxy, oauth2-proxy) put a token check in front of it. This one answers
401 with ``WWW-Authenticate: Bearer`` unless the request carries ``Authorization: Bearer <token>``
with the current :attr:`BearerProxy.token` (assignable, to play a rotation), and otherwise forwards
the request (method, path, query, body) to ``upstream`` and relays the answer. It runs on threads in
the test process and counts what it refused and forwarded.
"""

from __future__ import annotations

import hmac
from http.server import BaseHTTPRequestHandler

import requests

from hack.loopback.procs import LoopbackHTTPServer, send


class BearerProxy(LoopbackHTTPServer):
    """``with BearerProxy(prometheus.url, "s3cret") as proxy:`` -> queries go to ``proxy.url``."""

    name = "bearer-proxy"

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.refused = 0
        self.forwarded = 0

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                if not proxy.authorized(self.headers.get("Authorization")):
                    proxy.refused += 1
                    send(
                        self, 401, b"Unauthorized\n", "text/plain", **{"WWW-Authenticate": 'Bearer realm="prometheus"'}
                    )
                    return
                proxy.forwarded += 1
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                forward = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, data=data, headers=forward, timeout=30
                )
                send(self, answer.status_code, answer.content,
                     answer.headers.get("Content-Type", "application/octet-stream"))  # fmt: skip

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
