"""From a strategy to the plan the engine's step machine runs: the one place that dispatches by strategy.

Both strategies are the same machine, so they share its guarantees (sequential gates on evidence
accumulated since the candidate's first request, contract check, deadlines, instant revert while
the previous revision is warm); what differs is the plan:

- **canary**: the steps as written; each step's weight is the candidate's share; with no traffic
  layer (``traffic.none``) the share of pods *is* the weight, so the candidate runs at that share of
  the replicas and the ``<name>`` Service spans both revisions; with one, the candidate runs at full
  size or (``scaling: Proportional``) at its weight's share of the replicas; after promotion the previous
  revision stays warm for ``bake.duration`` when there are gates to watch with.
- **blueGreen**: one step at weight 0, the preview: the candidate runs at full size behind the
  preview Service ``<name>-canary`` (and the canary routes), its gates judge preview traffic for at
  least ``previewDuration`` and must pass; the promotion is the switch (the ``<name>`` Service and
  every route move to the new revision in one write); the previous revision stays at full size for
  ``scaleDownDelay`` (or ``bake.duration`` if longer), gates or not, and a failing gate switches back.
  Without a traffic layer ``<name>`` selects only the stable revision, as with one.
- **abTest**: one step at the split, for at least ``minDuration``: the experiment. Its gates guard it
  (a failure rolls the candidate back as in a canary); the end is the sequential test on the
  primary metric (:mod:`modelrollout.metrics.experiment`): a winning candidate is promoted, a
  winning stable revision, a tie or ``maxDuration`` keep the stable one (the candidate is rolled
  back with ExperimentLost, ExperimentTie or ExperimentTimeout).
- **canary with shadow**: the canary's steps after one more step at weight 0, the shadow step:
  ``shadow.percent`` % of live inference requests are mirrored to the candidate (its answers go
  nowhere), for at least ``shadow.duration`` and until its gates pass (at most
  ``shadow.maxDuration``); then the steps as written, the mirror off.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modelrollout.api.types import CanaryScaling, ModelDeploymentSpec
from modelrollout.durations import parse_duration


class Strategy(StrEnum):
    """The strategy a plan comes from, spelled as its field under spec.strategy."""

    CANARY = "canary"
    BLUE_GREEN = "blueGreen"
    AB_TEST = "abTest"


@dataclass(frozen=True)
class RolloutPlan:
    strategy: Strategy
    steps: tuple[int, ...]
    step_duration: str
    max_step_duration: str
    allow_signature_change: bool
    auto_promote: bool
    replica_weights: bool
    """The weight is expressed as replica counts (canary without a traffic layer)."""
    proportional: bool
    """With a traffic layer, the canary runs at its weight's share of the replicas (canary.scaling)."""
    hold: str
    """How long the previous revision stays warm after promotion while the gates watch the new one."""
    hold_without_gates: bool
    """Keep the previous revision for ``hold`` even with no gate to watch with (blue-green's promise)."""
    retire_delay: str
    """How long a revision taken out of traffic keeps its pods (with a traffic layer)."""
    shadow_percent: int = 0
    """Share of live inference requests mirrored to the candidate during the shadow step (0: no shadow)."""
    shadow_duration: str = "0s"
    shadow_max_duration: str = "0s"

    def is_shadow_step(self, index: int | None) -> bool:
        """The first step of a rollout with ``shadow``: weight 0, requests mirrored to the candidate."""
        return self.shadow_percent > 0 and index == 0

    def pod_share(self, index: int) -> int:
        """The share of full size a step's canary pods are sized for: the step's weight, or during the
        shadow step the mirrored share (the candidate serves those requests, though no client sees it)."""
        return self.shadow_percent if self.is_shadow_step(index) else self.steps[index]

    def step_duration_at(self, index: int) -> str:
        return self.shadow_duration if self.is_shadow_step(index) else self.step_duration

    def max_step_duration_at(self, index: int) -> str:
        return self.shadow_max_duration if self.is_shadow_step(index) else self.max_step_duration

    @property
    def hold_seconds(self) -> float:
        return parse_duration(self.hold)

    def holds_after_promotion(self, has_gates: bool) -> bool:
        return self.hold_seconds > 0 and (has_gates or self.hold_without_gates)


def plan_for(spec: ModelDeploymentSpec) -> RolloutPlan:
    """The plan of ``spec.strategy`` (see the module docstring)."""
    ab_test = spec.strategy.abTest
    if ab_test is not None:
        return RolloutPlan(
            strategy=Strategy.AB_TEST,
            steps=(ab_test.split,),
            step_duration=ab_test.minDuration,
            max_step_duration=ab_test.maxDuration,
            allow_signature_change=False,
            auto_promote=True,
            replica_weights=spec.traffic.none is not None,
            proportional=False,
            hold=spec.bake.duration,
            hold_without_gates=False,
            retire_delay=spec.strategy.canary.scaleDownDelay,
        )
    blue_green = spec.strategy.blueGreen
    if blue_green is not None:
        hold = max(blue_green.scaleDownDelay, spec.bake.duration, key=parse_duration)
        return RolloutPlan(
            strategy=Strategy.BLUE_GREEN,
            steps=(0,),
            step_duration=blue_green.previewDuration,
            max_step_duration=blue_green.maxPreviewDuration,
            allow_signature_change=blue_green.allowSignatureChange,
            auto_promote=blue_green.autoPromote,
            replica_weights=False,
            proportional=False,
            hold=hold,
            hold_without_gates=True,
            retire_delay=blue_green.abortScaleDownDelay,
        )
    canary = spec.strategy.canary
    shadow = canary.shadow
    return RolloutPlan(
        strategy=Strategy.CANARY,
        steps=((0,) if shadow else ()) + tuple(canary.steps),
        step_duration=canary.stepDuration,
        max_step_duration=canary.maxStepDuration,
        allow_signature_change=canary.allowSignatureChange,
        auto_promote=True,
        replica_weights=spec.traffic.none is not None,
        proportional=spec.traffic.none is None and CanaryScaling(canary.scaling) is CanaryScaling.PROPORTIONAL,
        hold=spec.bake.duration,
        hold_without_gates=False,
        retire_delay=canary.scaleDownDelay,
        shadow_percent=shadow.percent if shadow else 0,
        shadow_duration=shadow.duration if shadow else "0s",
        shadow_max_duration=shadow.maxDuration if shadow else "0s",
    )
