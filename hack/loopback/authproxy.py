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
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import requests


class BearerProxy:
    """``with BearerProxy(prometheus.url, "s3cret") as proxy:`` -> queries go to ``proxy.url``."""

    def __init__(self, upstream: str, token: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.refused = 0
        self.forwarded = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())

    def start(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _relay(self) -> None:
                if not proxy.authorized(self.headers.get("Authorization")):
                    proxy.refused += 1
                    body = b"Unauthorized\n"
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="prometheus"')
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                proxy.forwarded += 1
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                forward = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                answer = requests.request(
                    self.command, proxy.upstream + self.path, data=data, headers=forward, timeout=30
                )
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._relay()

            def do_POST(self) -> None:
                self._relay()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="bearer-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
