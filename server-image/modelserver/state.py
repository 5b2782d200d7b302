"""The server's lifecycle state, readable by probes while loading happens in a background thread.

Why: liveness must answer from the first moment the port is open, readiness must say *why* it is
not ready yet (loading, warming up 12/20, or failed with the reason, e.g. a sha256 mismatch).
Only the loader thread writes; request handlers read single attributes (atomic under the GIL).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics import ServerMetrics
    from .runtime import Runtime


class Phase(enum.StrEnum):
    LOADING = "loading"
    WARMING_UP = "warming_up"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ServerState:
    phase: Phase = Phase.LOADING
    reason: str = "loading the model"
    runtime: Runtime | None = None
    """Set once the session exists (metadata can be served while warming up)."""
    metrics: ServerMetrics | None = None
    """Set as soon as the revision label is known (at once when ``--revision`` is given)."""
    draining: bool = False
    """Set at SIGTERM (``shutdown.DrainingServer``): still serving, no longer ready."""
    http_requests: Callable[[], int] | None = None
    """HTTP requests received and not yet answered, the caller's own included: the size of uvicorn's
    set of request tasks (set by ``__main__``; None when no uvicorn server runs the app). A task
    joins it when the request arrives, before it first runs, so an infer request that finds 1 here
    knows no other request could still join its micro-batch (:meth:`ModelServer.answer_infer`)."""

    @property
    def ready(self) -> bool:
        """The model serves requests (also while draining)."""
        return self.phase is Phase.READY

    @property
    def takes_new_traffic(self) -> bool:
        """What ``/v2/health/ready`` says: ready and not shutting down."""
        return self.ready and not self.draining

    def describe(self) -> dict[str, str]:
        if self.draining:
            return {"state": "draining", "reason": "shutting down: serving what still arrives, then stopping"}
        return {"state": self.phase.value, "reason": self.reason}
