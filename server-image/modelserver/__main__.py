"""``python -m modelserver``: parse flags/env, configure logging, serve with uvicorn.

Why uvicorn is configured here and not by the operator: access logs are off (Prometheus counts
requests; per-request log lines would cost more than the inference) and the fastest available event
loop and HTTP parser are picked explicitly. uvicorn's proxy-headers middleware is placed by
:func:`~modelserver.fastpath.serving_app` (behind the infer fast path), not around the whole app.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence

import uvicorn

from . import __version__, logsetup
from .app import create_app
from .config import parse_settings
from .fastpath import serving_app
from .grpc_server import GrpcFrontend
from .shutdown import DrainingServer


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    logsetup.configure(settings.log_level)
    logging.getLogger("modelserver").info(
        "starting modelserver",
        extra={"version": __version__, "model": settings.model_name, "uri": settings.model_uri,
               "host": settings.host, "port": settings.port, "grpc_port": settings.grpc_port},
    )  # fmt: skip
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        server_header=False,
        proxy_headers=False,  # serving_app places the middleware, with the proxies uvicorn trusts
        timeout_graceful_shutdown=max(1, math.ceil(settings.shutdown_timeout)),
    )
    config.app = serving_app(app, app.state.server, settings.fast_path, config.forwarded_allow_ips)
    grpc = None
    if settings.grpc_port:
        grpc = GrpcFrontend(app.state.server, settings.host, settings.grpc_port, settings.max_body_bytes)
    server = DrainingServer(config, app.state.server.state, settings.drain_seconds, grpc)
    tasks = server.server_state.tasks  # uvicorn's request tasks (what its --limit-concurrency counts)
    app.state.server.state.http_requests = lambda: len(tasks)
    server.run()
    sys.exit(0 if server.started else 1)


if __name__ == "__main__":
    main()
