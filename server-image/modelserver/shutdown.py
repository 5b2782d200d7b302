"""Shutdown that loses no request: on SIGTERM the server first drains, then stops.

Why: when Kubernetes deletes a pod (a scale-down after a rollback, a node drain), the pod's endpoint
is removed and every proxy in front of it (kube-proxy, the gateway, the mesh sidecars) learns that
over the next seconds. Until then requests still arrive. A server that stops accepting at SIGTERM
turns them into connection errors, which a canary's error-rate gate then counts against whichever
revision was scaled down. So for ``--drain-seconds`` after SIGTERM the server keeps serving everything
while ``/v2/health/ready`` answers 503 (``draining``), for anything that still health-checks it, and
only then does uvicorn's graceful shutdown stop accepting and finish what is in flight (up to
``--shutdown-timeout``). A second SIGTERM, or SIGINT, stops at once as before.

The gRPC API (:class:`~modelserver.grpc_server.GrpcFrontend`) follows the same course: it starts
with uvicorn, in its event loop, keeps serving while draining (its ``ServerReady`` says false), and
stops accepting calls at the moment HTTP does, its calls in flight getting the same timeout.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from types import FrameType

import uvicorn

from .grpc_server import GrpcFrontend
from .state import ServerState

log = logging.getLogger("modelserver")


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, state: ServerState, drain_seconds: float, grpc: GrpcFrontend | None = None
    ) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self.grpc = grpc
        self._drain: threading.Timer | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the gRPC API in uvicorn's event loop, then uvicorn (lifespan, HTTP listener)."""
        if self.grpc is not None:
            await self.grpc.start()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting gRPC calls together with HTTP connections; wait for both to finish."""
        if self.grpc is None:
            await super().shutdown(sockets)
            return
        stopping = asyncio.ensure_future(self.grpc.stop(self.config.timeout_graceful_shutdown))
        try:
            await asyncio.sleep(0)  # let the gRPC stop begin (no new calls) before HTTP's
            await super().shutdown(sockets)
        finally:
            await stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain_seconds <= 0 or self._drain is not None:
            if self._drain is not None:
                self._drain.cancel()
            super().handle_exit(sig, frame)
            return
        self.state.draining = True
        log.info("SIGTERM: draining before shutdown", extra={"drain_seconds": self.drain_seconds})
        self._drain = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        self._drain.daemon = True
        self._drain.start()
