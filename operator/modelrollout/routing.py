"""The desired routing of one ModelDeployment: a pure value the engine decides and routers render.

Kept apart from :mod:`modelrollout.routers` (which talk to the API server) so that the engine, a
pure function, can state the whole routing in one action without importing any I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrollout.api.types import CanaryRoute

Weights = tuple[int, int]
"""(stable %, canary %) as written; the two add up to 100 except when a route sends nowhere."""


def split(canary_weight: int) -> Weights:
    """(stable, canary) percentages for a canary weight, rejecting anything outside 0..100.

    Checked here, before any I/O, because a wrong weight must never reach a route.
    """
    if isinstance(canary_weight, bool) or not isinstance(canary_weight, int) or not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be an integer percentage in 0..100, got {canary_weight!r}")
    return 100 - canary_weight, canary_weight


@dataclass(frozen=True)
class Routing:
    """Where one ModelDeployment's requests should go: the one value every router renders.

    ``canary_routes`` and the mirror are on only while the canary has ready pods (the engine decides): a match
    must never send a request to a Service with no endpoints. Outside a rollout both the weight and
    the routes are empty, and the routers write a route to the stable Service alone.
    ``stable_revision`` / ``canary_revision`` are for providers that would select pods by revision
    themselves; every provider today routes to the stable and canary Services, which the operator
    points at the right revisions, and ignores them.
    """

    canary_weight: int = 0
    canary_routes: tuple[CanaryRoute, ...] = ()
    stable_revision: str | None = None
    canary_revision: str | None = None
    mirror_percent: int = 0
    """Share of inference requests (``/v2/models/<model>/infer``) copied to the canary Service, whose
    answers are dropped (the shadow step; on only while the canary has ready pods). Only inference:
    a mirrored feedback label would be counted twice."""

    def __post_init__(self) -> None:
        split(self.canary_weight)  # a wrong weight must never reach a route
        split(self.mirror_percent)

    @property
    def uses_canary(self) -> bool:
        """Whether anything is routed to the canary Service (which must then exist)."""
        return self.canary_weight > 0 or bool(self.canary_routes) or self.mirror_percent > 0
