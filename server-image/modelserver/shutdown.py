"""Shutdown that loses no request: on SIGTERM the server first drains, then stops.

Why: when Kubernetes deletes a pod (a scale-down after a rollback, a node drain), the pod's endpoint
is removed and every proxy in front of it (kube-proxy, the gateway, the mesh sidecars) learns that
over the next seconds. Until then requests still arrive. A server that stops accepting at SIGTERM
turns them into connection errors, which a canary's error-rate gate then counts against whichever
revision was scaled down. So for ``--drain-seconds`` after SIGTERM the server keeps serving everything
while ``/v2/health/ready`` answers 503 (``draining``), for anything that still health-checks it, and
only then does uvicorn's graceful shutdown stop accepting and finish what is in flight (up to
``--shutdown-timeout``). A second SIGTERM, or SIGINT, stops at once as before.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import uvicorn

from .state import ServerState

log = logging.getLogger("modelserver")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState, drain_seconds: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds
        self._drain: threading.Timer | None = None

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
