"""Rollout hooks, the pure half: which of ``spec.hooks`` are due now, their results in status, and
whether they let the rollout on. The shell makes the calls (:mod:`modelrollout.hook_calls`).

When each type is called, and what it holds:

* **PreRollout**: from the moment a candidate exists until it has passed, before the candidate's
  first step (it may run while the pods start: an offline evaluation needs none). The first step
  waits for it; ``failureLimit`` failed calls in a row roll the candidate back (``HookFailed<Name>``).
* **Step**: in every step, until it passed in that step; the step cannot complete before. Failures
  as for PreRollout.
* **ConfirmPromotion**: once the candidate has passed its last step (``status.awaitingConfirmation``);
  the promotion waits until it passes. A failure is "not yet", never a rollback: an approval that
  does not come holds the rollout (the abort annotation ends it).
* **PostRollout**: once the new revision is stable (phase Succeeded); told, not asked: its result
  changes nothing, and it is retried at most ``failureLimit`` times.

Calls are spaced by ``analysis.interval``: a hook that has not passed is called again one interval
after its last call. ``status.hooks`` keeps each hook's last call for the current rollout (reset
when a new candidate starts), with the failures in a row for the same revision and step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelrollout.api.types import HookResult, HookSpec, HookType, ModelDeploymentSpec, ModelDeploymentStatus, Phase
from modelrollout.durations import parse_duration


@dataclass(frozen=True)
class HookCall:
    """One call the shell should make now."""

    hook: HookSpec
    revision: str
    step: int | None
    stable_revision: str | None


def _applicable(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> Iterator[tuple[HookSpec, str, int | None]]:
    """(hook, revision, step) for every hook that applies in this status."""
    canary, step, stable = status.canaryRevision, status.currentStep, status.stableRevision
    for hook in spec.hooks:
        kind = HookType(hook.type)
        if status.phase == Phase.PROGRESSING and canary is not None:
            wanted = {
                HookType.PRE_ROLLOUT: step is None,
                HookType.STEP: step is not None,
                HookType.CONFIRM_PROMOTION: status.awaitingConfirmation,
            }
            if wanted.get(kind, False):
                yield hook, canary, step
        elif kind == HookType.POST_ROLLOUT and status.phase == Phase.SUCCEEDED and stable and _promoted_here(status):
            yield hook, stable, None


def _promoted_here(status: ModelDeploymentStatus) -> bool:
    """The stable revision came from a rollout (not a first revision): PostRollout tells of those."""
    entry = next((h for h in status.history if h.revision == status.stableRevision), None)
    return entry is not None and entry.reason != "FirstRevision"


def last(status: ModelDeploymentStatus, name: str) -> HookResult | None:
    return next((h for h in status.hooks if h.name == name), None)


def _for(result: HookResult | None, revision: str, step: int | None) -> HookResult | None:
    return result if result is not None and result.revision == revision and result.step == step else None


def _unfinished(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus
) -> Iterator[tuple[HookSpec, str, int | None, HookResult | None]]:
    """Applicable hooks that still want a call, with their last call for this revision and step
    (a pass is final; a PostRollout hook gives up after ``failureLimit`` calls)."""
    for hook, revision, step in _applicable(spec, status):
        prev = _for(last(status, hook.name), revision, step)
        given_up = (
            prev is not None and HookType(hook.type) == HookType.POST_ROLLOUT and prev.failures >= hook.failureLimit
        )
        if prev is None or not (prev.passed or given_up):
            yield hook, revision, step, prev


def due(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> list[HookCall]:
    """The calls to make now (the module docstring says when)."""
    interval = timedelta(seconds=parse_duration(spec.analysis.interval))
    return [
        HookCall(hook, revision, step, status.stableRevision)
        for hook, revision, step, prev in _unfinished(spec, status)
        if prev is None or now >= prev.calledAt + interval
    ]


def next_call(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, now: datetime) -> datetime | None:
    """When the next call falls due (``now`` for one due already); None when no hook waits."""
    interval = timedelta(seconds=parse_duration(spec.analysis.interval))
    times = [now if prev is None else max(now, prev.calledAt + interval) for _, _, _, prev in _unfinished(spec, status)]
    return min(times, default=None)


def record(status: ModelDeploymentStatus, results: Sequence[HookResult]) -> None:
    """Keep each result as its hook's last call, counting failures in a row for the same revision and step."""
    for result in results:
        prev = _for(last(status, result.name), result.revision, result.step)
        failures = 0 if result.passed else (prev.failures if prev is not None and not prev.passed else 0) + 1
        kept = [h for h in status.hooks if h.name != result.name]
        status.hooks = [*kept, result.model_copy(update={"failures": failures})]


def waiting(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, kind: HookType, revision: str, step: int | None = None
) -> list[HookSpec]:
    """The hooks of ``kind`` that have not passed for ``revision`` (and ``step``)."""
    out = []
    for hook in spec.hooks:
        if HookType(hook.type) != kind:
            continue
        prev = _for(last(status, hook.name), revision, step)
        if prev is None or not prev.passed:
            out.append(hook)
    return out


def exhausted(
    spec: ModelDeploymentSpec, status: ModelDeploymentStatus, kind: HookType, revision: str, step: int | None = None
) -> HookResult | None:
    """A hook of ``kind`` that has failed ``failureLimit`` calls in a row for ``revision`` (and ``step``)."""
    for hook in waiting(spec, status, kind, revision, step):
        prev = _for(last(status, hook.name), revision, step)
        if prev is not None and prev.failures >= hook.failureLimit:
            return prev
    return None


def describe(spec: ModelDeploymentSpec, status: ModelDeploymentStatus, pending: list[HookSpec]) -> str:
    """``offline-eval (HTTP 503: not ready, 2 failed)``, ``approve (not called yet)`` for a message."""
    parts = []
    for hook in pending:
        prev = last(status, hook.name)
        if prev is None:
            parts.append(f"{hook.name} (not called yet)")
        else:
            parts.append(f"{hook.name} ({prev.message or 'failed'}, {prev.failures} failed)")
    return ", ".join(parts)
