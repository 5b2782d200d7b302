"""``modelrollout`` — and, under the name ``kubectl-modelrollout``, the kubectl plugin — for humans.

Why it exists: a rollout is steered by the operator from ``status``; people need to *see* it (phase,
step, weights, every gate's canary value against its threshold and against stable) and to nudge it
(promote, abort, retry) without ever editing the spec, which belongs to Git. So every write here is
one merge patch of one annotation on ``metadata`` guarded by ``resourceVersion``; the operator reads
the annotation and acts.

The live view (``status NAME -w``) re-renders on watch events of the ModelDeployment and of its
Deployments — no polling — and, with ``--until-done``, exits 0 when the rollout succeeds and 1 when it
is rolled back or fails, which makes it usable in CI and scripts.

Exit codes: 0 success, 1 rollout degraded or other error, 2 usage, 3 not found, 4 permission denied,
5 no cluster / unreachable, 6 timed out.

The rendering functions are pure (object in, text out) and tested without a cluster.
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from modelrollout.api.types import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    CanarySpec,
)
from modelrollout.durations import parse_duration, parse_timestamp

FIELD_MANAGER = "kubectl-modelrollout"
LABEL_DEPLOYMENT = "modelrollout.io/deployment"
LABEL_REVISION = "modelrollout.io/revision"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_FORBIDDEN, EXIT_NO_CLUSTER, EXIT_TIMEOUT = range(7)
DEFAULT_CANARY = CanarySpec()
ACTIVE_PHASES = ("Initializing", "Progressing", "Baking")
DONE_OK, DONE_BAD = ("Succeeded",), ("RolledBack", "Failed")
ACTIONS = {"promote": ANNOTATION_PROMOTE, "abort": ANNOTATION_ABORT, "retry": ANNOTATION_RETRY}
CLEAR = "\x1b[H\x1b[2J"

_COLORS = {"green": "32", "yellow": "33", "red": "31", "blue": "34", "dim": "2", "bold": "1"}
_PHASE_COLOR = {
    "Succeeded": "green",
    "Progressing": "blue",
    "Baking": "blue",
    "Initializing": "blue",
    "Paused": "yellow",
    "RolledBack": "red",
    "Failed": "red",
}
_VERDICT_COLOR = {
    "Pass": "green",
    "Fail": "red",
    "Inconclusive": "yellow",
    "Passed": "green",
    "Failed": "red",
    "Undecided": "yellow",
    "InsufficientSamples": "yellow",
    "NoData": "red",
    "QueryError": "red",
}


class CLIError(Exception):
    """An error with a message meant for the user and the exit code that classifies it."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------ pure formatting


@dataclass(frozen=True)
class Style:
    """ANSI colours only on a terminal (and never when NO_COLOR is set), so pipes get plain text."""

    color: bool = False

    def __call__(self, text: str, name: str | None) -> str:
        if not self.color or not name:
            return text
        return f"\x1b[{_COLORS[name]}m{text}\x1b[0m"


PLAIN = Style(False)


def human_duration(seconds: float) -> str:
    """kubectl-style compact ages: 45s, 3m12s, 2h5m, 3d4h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{s // 3600}h"
    return f"{s // 86400}d{(s % 86400) // 3600}h" if (s % 86400) // 3600 else f"{s // 86400}d"


def age(value: Any, now: datetime) -> str:
    t = parse_timestamp(value)
    return human_duration((now - t).total_seconds()) if t else "-"


def format_number(value: Any) -> str:
    """Gate values span ratios (0.0012) and milliseconds (245.3); show each readably."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.1f}"
    if abs(v) >= 1:
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.2f}"
    return f"{v:.4g}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns separated by two spaces, like kubectl get."""
    rows = [list(map(str, r)) for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=False)]
    lines = []
    for r in [list(headers), *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type", ""): c for c in status.get("conditions") or []}


def is_observed(obj: Mapping[str, Any]) -> bool:
    """True once the operator has acted on the latest spec (same rule as the Argo CD health check)."""
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return generation is None or (observed is not None and observed >= generation)


def done_state(obj: Mapping[str, Any]) -> str | None:
    """ "ok" / "bad" when the rollout of the current spec has ended, else None (for ``--until-done``)."""
    if not is_observed(obj):
        return None
    status = obj.get("status") or {}
    degraded = _conditions(status).get("Degraded", {})
    phase = status.get("phase")
    if phase in DONE_BAD or (degraded.get("status") == "True" and phase not in ACTIVE_PHASES):
        return "bad"
    if phase in DONE_OK:
        return "ok"
    return None


def blue_green(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (spec.get("strategy") or {}).get("blueGreen")


def ab_test(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return (spec.get("strategy") or {}).get("abTest")


def experiment_text(exp: Mapping[str, Any]) -> str:
    """``CandidateWon: B - A = +0.0950, 95 % interval [+0.0412, +0.1488] (B 463/500 0.926, A 415/500 0.830)``."""

    def side(label: str, arm: Mapping[str, Any]) -> str:
        value = arm.get("value")
        shown = "-" if value is None else f"{value:.4g}"
        return f"{label} {arm.get('revision', '?')} {arm.get('successes', 0)}/{arm.get('trials', 0)} {shown}"

    text = f"{exp.get('outcome', '?')} on {exp.get('metric', '?')}"
    if exp.get("effect") is not None and exp.get("lower") is not None and exp.get("upper") is not None:
        confidence = 100 * float(exp.get("confidence") or 0.95)
        text += (f": B - A = {exp['effect']:+.4f}, {confidence:g} % interval "
                 f"[{exp['lower']:+.4f}, {exp['upper']:+.4f}]")  # fmt: skip
    return f"{text}  ({side('B', exp.get('candidate') or {})}; {side('A', exp.get('stable') or {})})"


def hooks_text(results: Iterable[Mapping[str, Any]], awaiting: bool) -> str:
    """``offline-eval PreRollout passed; approval ConfirmPromotion failed x3 (HTTP 403: not yet)``."""
    parts = []
    for h in results:
        state = "passed" if h.get("passed") else f"failed x{h.get('failures', 0)} ({h.get('message', '')})"
        step = "" if h.get("step") is None else f" step {int(h['step']) + 1}"
        parts.append(f"{h.get('name')} {h.get('type')}{step} {state}")
    return "; ".join(parts) + ("  (promotion waits for its ConfirmPromotion hooks)" if awaiting else "")


def shadow(spec: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """strategy.canary.shadow, when the rollout begins with a shadow step."""
    if blue_green(spec) is not None:
        return None
    return ((spec.get("strategy") or {}).get("canary") or {}).get("shadow")


def in_shadow(spec: Mapping[str, Any], step: int | None) -> bool:
    return shadow(spec) is not None and step == 0


def canary_steps(spec: Mapping[str, Any]) -> list[int]:
    """The steps the rollout runs: the spec's canary steps (or the API default when the spec leaves
    them out) after the shadow step at 0 % when there is one (blue-green: the preview, one step at 0 %)."""
    if blue_green(spec) is not None:
        return [0]
    ab = ab_test(spec)
    if ab is not None:
        return [int(ab.get("split", 50))]
    steps = list(((spec.get("strategy") or {}).get("canary") or {}).get("steps") or DEFAULT_CANARY.steps)
    return ([0] if shadow(spec) is not None else []) + steps


def strategy_text(spec: Mapping[str, Any], current: int | None, style: Style = PLAIN) -> str:
    bg = blue_green(spec)
    if bg is not None:
        text = (f"blueGreen: preview at least {bg.get('previewDuration', '5m')}, then one switch; "
                f"previous kept {hold_text(spec)}")  # fmt: skip
        return text + ("; switch by `kubectl modelrollout promote`" if bg.get("autoPromote") is False else "")
    ab = ab_test(spec)
    if ab is not None:
        metric = (ab.get("metric") or {}).get("name", "accuracy")
        return (f"abTest: {ab.get('split', 50)}% to the candidate (B) on {metric}, at least "
                f"{ab.get('minDuration', '1h')}, at most {ab.get('maxDuration', '168h')}")  # fmt: skip
    canary = (spec.get("strategy") or {}).get("canary") or {}
    each = f"{canary.get('stepDuration', '60s')} each"
    sh = shadow(spec)
    if sh is not None:
        each = f"shadow at least {sh.get('duration', '10m')}, then {each}"
    return f"canary {steps_text(spec, current, style)}, {each}"


def hold_text(spec: Mapping[str, Any]) -> str:
    """How long the previous revision stays warm after promotion (blue-green: the longer of
    scaleDownDelay and bake.duration)."""
    bake = (spec.get("bake") or {}).get("duration", "5m")
    bg = blue_green(spec)
    if bg is None:
        return str(bake)
    delay = bg.get("scaleDownDelay", "10m")
    try:
        return str(max(delay, bake, key=parse_duration))
    except ValueError:
        return str(delay)


def steps_text(spec: Mapping[str, Any], current: int | None, style: Style = PLAIN) -> str:
    """5 → 10 → [25] → 50 → 100, the current step bracketed."""
    steps = canary_steps(spec)
    sh = shadow(spec)
    parts = []
    for i, s in enumerate(steps):
        label = f"shadow {sh.get('percent', 100)}%" if sh is not None and i == 0 else f"{s}%"
        parts.append(style(f"[{label}]", "bold") if i == current else label)
    return " → ".join(parts)


def traffic_provider(spec: Mapping[str, Any]) -> str:
    traffic = spec.get("traffic") or {}
    return next((k for k in ("gatewayAPI", "istio", "nginx", "none") if k in traffic), "-")


def canary_routes_text(spec: Mapping[str, Any], canary: str | None, ready: str | None) -> str | None:
    """The header/cookie routes and whether they are on now (the operator writes them while the
    canary has a ready pod); None when the spec has none."""
    routes = (spec.get("traffic") or {}).get("canaryRoutes") or []
    if not routes:
        return None
    parts = []
    for r in routes:
        if "header" in r:
            h = r["header"]
            op = "~" if h.get("match") == "RegularExpression" else "="
            parts.append(f"header {h.get('name')}{op}{h.get('value')}")
        elif "cookie" in r:
            parts.append(f"cookie {r['cookie'].get('name')}={r['cookie'].get('value', 'always')}")
    if canary is None:
        state = "off: no canary"
    elif ready is None or ready.split("/")[0] in ("", "0"):
        state = f"off: canary {canary} has no ready pod"
    else:
        state = f"on: to canary {canary}"
    return f"{', '.join(parts)}  ({state})"


def deployment_readiness(deployments: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """revision → "ready/desired" from the revision Deployments' status."""
    out = {}
    for d in deployments:
        rev = ((d.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION)
        if not rev:
            continue
        want = (d.get("spec") or {}).get("replicas", 0) or 0
        ready = (d.get("status") or {}).get("readyReplicas", 0) or 0
        out[rev] = f"{ready}/{want} ready"
    return out


def render_status(
    obj: Mapping[str, Any],
    now: datetime,
    deployments: Iterable[Mapping[str, Any]] = (),
    style: Style = PLAIN,
) -> str:
    """The whole live view for one ModelDeployment as text."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    phase = status.get("phase") or "Pending"
    lines: list[str] = []

    def field(label: str, value: str) -> None:
        lines.append(f"{label + ':':<16}{value}")

    field("Name", str(meta.get("name", "-")))
    field("Namespace", str(meta.get("namespace", "-")))
    phase_text = style(phase, _PHASE_COLOR.get(phase))
    if spec.get("paused"):
        phase_text += style("  (paused by spec)", "yellow")
    if not is_observed(obj):
        phase_text += style(f"  (operator has not observed generation {meta.get('generation')} yet)", "yellow")
    field("Phase", phase_text)
    if status.get("message"):
        field("Message", str(status["message"]))
    model = spec.get("model") or {}
    field("Model", f"{model.get('name', '-')}  {model.get('uri', '-')}")
    field("Traffic", traffic_provider(spec))

    step = status.get("currentStep")
    field("Strategy", strategy_text(spec, step, style))
    if step is not None:
        n = len(canary_steps(spec))
        since = age(status.get("stepStartedAt"), now)
        if blue_green(spec) is not None:
            where = "preview"
        elif ab_test(spec) is not None:
            where = "experiment"
        else:
            where = "shadow" if in_shadow(spec, step) else f"{step + 1}/{n}"
        field("Step", where + (f" (for {since})" if since != "-" else ""))

    ready = deployment_readiness(deployments)
    stable, canary = status.get("stableRevision"), status.get("canaryRevision")
    weight = int(status.get("canaryWeight") or 0)
    approx = "  (approximate: replica ratio)" if status.get("weightApproximate") else ""

    def rev(label: str, revision: str, pct: int | None) -> str:
        parts = [f"{label} {style(revision, 'bold')}"]
        if pct is not None:
            parts.append(f"{pct}%")
        if revision in ready:
            parts.append(f"({ready[revision]})")
        return " ".join(parts)

    revs = []
    if stable:
        revs.append(rev("stable", stable, 100 - weight if canary else 100))
    if canary and in_shadow(spec, step):
        mirrored = (shadow(spec) or {}).get("percent", 100)
        revs.append(rev("shadow", canary, weight) + f"  (mirrored {mirrored}% of inference requests, answers dropped)")
    elif canary:
        revs.append(rev("preview" if blue_green(spec) is not None else "canary", canary, weight))
    previous = status.get("previousStableRevision")
    if previous and phase == "Baking":
        revs.append(rev("previous (warm)", previous, 0))
    field("Traffic split", ("   ".join(revs) + approx) if revs else "-")
    routes = canary_routes_text(spec, canary, ready.get(canary) if canary else None)
    if routes:
        field("Canary routes", routes)
    if status.get("failedRevisions"):
        field("Failed revs", ", ".join(status["failedRevisions"]))
    retiring = [
        f"{r['revision']} in {human_duration((at - now).total_seconds())}"
        for r in status.get("retiring") or []
        if (at := parse_timestamp(r.get("scaleDownAt"))) is not None
    ]
    if retiring:
        field("Scaling down", ", ".join(retiring) + "  (out of traffic; pods kept for scaleDownDelay)")
    if phase == "Baking" and status.get("bakeStartedAt"):
        field("Bake", f"for {age(status.get('bakeStartedAt'), now)} of {hold_text(spec)}")
    if status.get("experiment"):
        field("Experiment", experiment_text(status["experiment"]))
    if status.get("hooks"):
        field("Hooks", hooks_text(status["hooks"], bool(status.get("awaitingConfirmation"))))

    conds = _conditions(status)
    if conds:
        shown = []
        for ctype in (
            "Ready",
            "Progressing",
            "Degraded",
            *sorted(set(conds) - {"Ready", "Progressing", "Degraded"}),
        ):
            c = conds.get(ctype)
            if not c:
                continue
            bad = (ctype in ("Degraded", "Drifted")) == (c.get("status") == "True")
            text = f"{ctype}={c.get('status')}"
            if c.get("reason"):
                text += f" ({c['reason']})"
            shown.append(style(text, "red" if bad and c.get("status") != "Unknown" else None))
        field("Conditions", "  ".join(shown))
        degraded = conds.get("Degraded") or {}
        if degraded.get("status") == "True" and degraded.get("message"):
            field("Degraded", str(degraded["message"]))
        drifted = conds.get("Drifted") or {}
        if drifted.get("status") == "True" and drifted.get("message"):
            field("Drifted", f"{drifted['message']} (since {age((status.get('drift') or {}).get('since'), now)})")
    runs = status.get("retraining")
    if runs:
        field("Retraining", retraining_text(runs, now))

    analysis = status.get("lastAnalysis")
    if analysis:
        limits = spec.get("analysis") or {}
        verdict = analysis.get("verdict", "-")
        head = (
            f"{style(verdict, _VERDICT_COLOR.get(verdict))} {age(analysis.get('time'), now)} ago"
            f" on revision {analysis.get('revision') or '-'}"
            f"  (failed {status.get('failedChecks', 0)}/{limits.get('failureLimit', 1)},"
            f" blind {status.get('inconclusiveChecks', 0)}/{limits.get('inconclusiveLimit', 5)})"
        )
        field("Analysis", head)
        if analysis.get("since"):
            base = f" vs {analysis['baselineRevision']}" if analysis.get("baselineRevision") else ""
            field("Evidence", f"counts of the last {age(analysis['since'], now)}{base}")
        rows = []
        for m in analysis.get("metrics") or []:
            v = m.get("reason") or m.get("verdict", "-")
            rows.append(
                [
                    m.get("name", "-"),
                    v,
                    _with_counts(m.get("value"), m.get("events"), m.get("samples")),
                    _with_counts(m.get("stableValue"), m.get("stableEvents"), m.get("stableSamples")),
                    m.get("threshold") or "-",
                    "-" if m.get("samples") is None else str(m["samples"]),
                    m.get("message") or "",
                ]
            )
        if rows:
            body = table(["GATE", "VERDICT", "VALUE", "BASELINE", "THRESHOLD", "SAMPLES", "MESSAGE"], rows, "  ")
            lines.append(body[0])
            for row, line in zip(rows, body[1:], strict=True):
                lines.append(line.replace(row[1], style(row[1], _VERDICT_COLOR.get(row[1])), 1))
    elif (spec.get("analysis") or {}).get("metrics"):
        field("Analysis", "no check yet")

    history = history_rows(obj, now)
    if history:
        lines.append("History:")
        lines.extend(table(["REVISION", "PHASE", "MODEL", "STARTED", "DURATION", "REASON"], history, "  "))
    return "\n".join(lines) + "\n"


def retraining_text(runs: Mapping[str, Any], now: datetime) -> str:
    """``run 2 (fraud-retrain-2) Succeeded 5m ago; next run not before 23h``."""
    outcome = runs.get("outcome") or "-"
    text = f"run {runs.get('runs', 0)} ({runs.get('job') or '-'}) {outcome}"
    if outcome == "Running":
        text += f" for {age(runs.get('startedAt'), now)}"
    elif runs.get("finishedAt"):
        text += f" {age(runs.get('finishedAt'), now)} ago"
    if runs.get("failures"):
        text += f", {runs['failures']} failed in a row"
    after = parse_timestamp(runs.get("nextRunAfter"))
    if outcome != "Running" and after is not None and after > now:
        text += f"; next run not before {human_duration((after - now).total_seconds())}"
    return text


def _with_counts(value: Any, events: Any, samples: Any) -> str:
    """``0.0123 (37/3000)``: a proportion with the counts it stands on, or the plain value."""
    text = format_number(value)
    if events is not None and samples:
        text += f" ({events}/{samples})"
    return text


def history_rows(obj: Mapping[str, Any], now: datetime) -> list[list[str]]:
    """Newest first; duration runs until now for a revision still in flight."""
    status = obj.get("status") or {}
    entries = sorted(status.get("history") or [], key=lambda h: str(h.get("startedAt") or ""), reverse=True)
    rows = []
    for h in entries:
        start, end = parse_timestamp(h.get("startedAt")), parse_timestamp(h.get("finishedAt"))
        duration = human_duration(((end or now) - start).total_seconds()) if start else "-"
        rows.append(
            [
                str(h.get("revision", "-")),
                str(h.get("phase", "-")),
                str(h.get("modelURI", "-")),
                f"{age(h.get('startedAt'), now)} ago" if start else "-",
                duration + ("" if end else " (running)"),
                str(h.get("reason") or ""),
            ]
        )
    return rows


def render_history(obj: Mapping[str, Any], now: datetime) -> str:
    rows = history_rows(obj, now)
    if not rows:
        return "No revisions recorded yet.\n"
    return "\n".join(table(["REVISION", "PHASE", "MODEL", "STARTED", "DURATION", "REASON"], rows)) + "\n"


def render_list(items: Iterable[Mapping[str, Any]], now: datetime, all_namespaces: bool) -> str:
    rows = []
    for obj in sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        meta, status = obj["metadata"], obj.get("status") or {}
        spec = obj.get("spec") or {}
        steps = canary_steps(spec)
        step = status.get("currentStep")
        phase = status.get("phase") or "Pending"
        if spec.get("paused") and phase != "Paused":
            phase += " (paused)"
        row = [
            meta["name"],
            phase,
            status.get("stableRevision") or "-",
            status.get("canaryRevision") or "-",
            f"{status.get('canaryWeight') or 0}%",
            f"{step + 1}/{len(steps)}" if step is not None and steps else "-",
            age(meta.get("creationTimestamp"), now),
        ]
        rows.append([meta.get("namespace", "-"), *row] if all_namespaces else row)
    if not rows:
        return ""
    headers = ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    return "\n".join(table(["NAMESPACE", *headers] if all_namespaces else headers, rows)) + "\n"


def check_action(action: str, obj: Mapping[str, Any]) -> None:
    """Refuse an action that cannot mean anything in the current state, with the reason.

    Setting the annotation anyway would leave a stale request that the operator might act on at a
    surprising moment later; ``--force`` skips this check for the rare case the user knows better.
    """
    status = obj.get("status") or {}
    phase = status.get("phase")
    name = (obj.get("metadata") or {}).get("name")
    if action == "promote" and not (status.get("canaryRevision") or phase == "Baking"):
        raise CLIError(f'nothing to promote: {KIND} "{name}" has no canary in flight (phase {phase or "none"})')
    if action == "abort" and not (
        phase in ("Progressing", "Baking") or (phase == "Paused" and status.get("canaryRevision"))
    ):
        raise CLIError(f'nothing to abort: {KIND} "{name}" is not rolling out (phase {phase or "none"})')
    if action == "retry" and not (phase in ("RolledBack", "Failed") or status.get("failedRevisions")):
        raise CLIError(f'nothing to retry: {KIND} "{name}" has no failed revision (phase {phase or "none"})')


def annotation_patch(action: str, now: datetime, resource_version: str | None) -> dict[str, Any]:
    """The only write the CLI makes: one annotation whose value is the request time.

    A timestamp (not "true") makes every request distinct, so the operator can tell a new request
    from one it already handled; ``resourceVersion`` makes the patch fail with a conflict if the
    object changed after we checked the action made sense.
    """
    meta: dict[str, Any] = {"annotations": {ACTIONS[action]: now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"metadata": meta}


# ------------------------------------------------------------------------------- kubernetes I/O


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body is not None:
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            return json.loads(body).get("message") or str(getattr(exc, "reason", ""))
    return str(getattr(exc, "reason", "") or exc)


def translate_api_error(exc: Any, namespace: str | None, name: str | None = None) -> CLIError:
    """Map an ApiException to a message that says what is wrong and what to do about it."""
    status = getattr(exc, "status", None)
    message = _api_message(exc)
    if status == 404:
        details: dict[str, Any] = {}
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            details = json.loads(exc.body).get("details") or {}
        if name and details.get("name") == name:
            return CLIError(f'{KIND} "{name}" not found in namespace "{namespace}"', EXIT_NOT_FOUND)
        return CLIError(
            f"the {KIND} API ({PLURAL}.{GROUP}/{VERSION}) is not installed in this cluster: "
            "install the modelrollout Helm chart or `kubectl apply -f crds/`",
            EXIT_NOT_FOUND,
        )
    if status == 403:
        return CLIError(f"permission denied: {message}", EXIT_FORBIDDEN)
    if status == 401:
        return CLIError(f"unauthorized: the API server rejected your credentials ({message})", EXIT_FORBIDDEN)
    if status == 409:
        return CLIError(f"conflict: {message}; the object changed, try again", EXIT_ERROR)
    return CLIError(f"API error {status}: {message}", EXIT_ERROR)


class Cluster:
    """The few API calls the CLI makes, with every failure turned into a :class:`CLIError`."""

    def __init__(self, kubeconfig: str | None, context: str | None, request_timeout: float = 15.0) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        self._timeout = request_timeout
        self.default_namespace = "default"
        try:
            if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
                cfg = client.Configuration()
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
                _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c["name"] == context), active)
                self.default_namespace = (active or {}).get("context", {}).get("namespace") or "default"
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                cfg = client.Configuration()
                config.load_incluster_config(client_configuration=cfg)
                try:
                    with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as f:
                        self.default_namespace = f.read().strip() or "default"
                except OSError:
                    pass
            else:
                raise ConfigException("no kubeconfig found")
        except (ConfigException, OSError, TypeError, ValueError, KeyError) as exc:
            raise CLIError(
                f"no cluster configured: {str(exc).rstrip('.')}. "
                "Set KUBECONFIG, pass --kubeconfig, or create ~/.kube/config",
                EXIT_NO_CLUSTER,
            ) from exc
        cfg.retries = 1  # fail fast on an unreachable server instead of urllib3's default retries
        self.server = cfg.host
        self.api_client = client.ApiClient(cfg)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.apps = client.AppsV1Api(self.api_client)

    def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        namespace: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run one API call; ApiException and transport failures become CLIErrors."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise translate_api_error(exc, namespace, name) from exc
        except (HTTPError, OSError) as exc:
            raise CLIError(f"cannot reach the Kubernetes API server at {self.server}: {exc}", EXIT_NO_CLUSTER) from exc

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self.call(
            self.custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            _request_timeout=self._timeout,
            namespace=namespace,
            name=name,
        )

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        if namespace is None:
            out = self.call(
                self.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, _request_timeout=self._timeout
            )
        else:
            out = self.call(
                self.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                _request_timeout=self._timeout,
                namespace=namespace,
            )
        return list(out.get("items") or [])

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call(
            self.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _request_timeout=self._timeout,
            namespace=namespace,
            name=name,
        )

    def deployments(self, namespace: str, name: str) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """The revision Deployments, or nothing when the user may not list them (the view still works)."""
        try:
            resp = self.call(
                self.apps.list_namespaced_deployment,
                namespace,
                label_selector=f"{LABEL_DEPLOYMENT}={name}",
                _request_timeout=self._timeout,
                _preload_content=False,
                namespace=namespace,
            )
        except CLIError as exc:
            if exc.code in (EXIT_FORBIDDEN, EXIT_NOT_FOUND):
                return [], None
            raise
        data = json.loads(resp.data)
        return list(data.get("items") or []), (data.get("metadata") or {}).get("resourceVersion")


# ------------------------------------------------------------------------------------ live view


class LiveView:
    """Watch-driven re-rendering: one thread per watched collection feeds a queue of events.

    Each watcher lists once for a resourceVersion, then watches from it; when the watch expires
    (410 Gone) it lists again. The main thread only ever renders from its cached copies.
    """

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.events: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
        self.stop = threading.Event()

    def _watch(
        self,
        kind: str,
        lister: Callable[[], tuple[list[dict[str, Any]], str | None]],
        streamer: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """List once, then watch from that resourceVersion; resume after each server-side timeout
        from the last version seen, and list again only when the server says it is gone (410)."""
        from kubernetes import watch

        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    items, rv = lister()
                    for item in items:
                        self.events.put((kind, "ADDED", item))
                    if rv is None:  # not allowed to list this kind: nothing to watch
                        return
                w = watch.Watch()
                for event in w.stream(
                    streamer,
                    *args,
                    resource_version=rv,
                    timeout_seconds=240,
                    allow_watch_bookmarks=True,
                    **kwargs,
                ):
                    if self.stop.is_set():
                        w.stop()
                        return
                    rv = (event["raw_object"].get("metadata") or {}).get("resourceVersion") or rv
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.events.put((kind, event["type"], event["raw_object"]))
            except CLIError as exc:
                self.events.put(("error", "ERROR", {"error": exc}))
                return
            except Exception as exc:
                status = getattr(exc, "status", None)
                if status in (401, 403):
                    self.events.put(("error", "ERROR", {"error": translate_api_error(exc, self.namespace)}))
                    return
                if status == 410:
                    rv = None  # too old: list again
                elif self.stop.wait(1.0):  # a dropped connection: back off a moment, then resume
                    return

    def start(self) -> None:
        c = self.cluster

        def list_mdep() -> tuple[list[dict[str, Any]], str | None]:
            obj = c.get(self.namespace, self.name)
            return [obj], obj["metadata"]["resourceVersion"]

        threading.Thread(
            target=self._watch,
            daemon=True,
            name="watch-mdep",
            args=(
                "mdep",
                list_mdep,
                c.custom.list_namespaced_custom_object,
                (GROUP, VERSION, self.namespace, PLURAL),
                {"field_selector": f"metadata.name={self.name}"},
            ),
        ).start()
        threading.Thread(
            target=self._watch,
            daemon=True,
            name="watch-deployments",
            args=(
                "deployment",
                lambda: c.deployments(self.namespace, self.name),
                c.apps.list_namespaced_deployment,
                (self.namespace,),
                {"label_selector": f"{LABEL_DEPLOYMENT}={self.name}"},
            ),
        ).start()

    def run(self, out: TextIO, style: Style, until_done: bool, timeout: float | None, clear: bool) -> int:
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        obj: dict[str, Any] | None = None
        deployments: dict[str, dict[str, Any]] = {}
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise CLIError(f"timed out after {timeout:g}s waiting for the rollout", EXIT_TIMEOUT)
                try:
                    batch = [self.events.get(timeout=remaining)]
                except queue.Empty:
                    continue
                while True:  # coalesce a burst of events into one frame
                    try:
                        batch.append(self.events.get(timeout=0.05))
                    except queue.Empty:
                        break
                for kind, etype, item in batch:
                    if kind == "error":
                        raise item["error"]
                    if kind == "mdep":
                        if etype == "DELETED":
                            raise CLIError(f'{KIND} "{self.name}" was deleted', EXIT_NOT_FOUND)
                        obj = item
                    elif kind == "deployment":
                        key = item["metadata"]["name"]
                        if etype == "DELETED":
                            deployments.pop(key, None)
                        else:
                            deployments[key] = item
                if obj is None:
                    continue
                frame = render_status(obj, datetime.now(UTC), deployments.values(), style)
                stamp = style(f"watching, updated {datetime.now(UTC):%H:%M:%S}Z (Ctrl-C to stop)", "dim")
                out.write((CLEAR if clear else "\n") + frame + stamp + "\n")
                out.flush()
                state = done_state(obj)
                if until_done and state is not None:
                    return EXIT_OK if state == "ok" else EXIT_ERROR
        finally:
            self.stop.set()


# ------------------------------------------------------------------------------------ commands


def _global_flags(p: argparse.ArgumentParser, default: Any = None) -> None:
    """The flags every command takes (kubectl's own spellings). Each subparser carries them, so they
    work after the command as well as before it (see :func:`hoist_command`)."""
    p.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", default=default, help="kubeconfig context to use")
    p.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's namespace)")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=15.0 if default is None else default,
        help="seconds per API request (default: 15)",
    )


def _parser() -> argparse.ArgumentParser:
    prog = "kubectl modelrollout" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "modelrollout"
    p = argparse.ArgumentParser(
        prog=prog,
        description="Watch and steer ModelDeployment rollouts. Writes only annotations, never the spec. "
        "Flags go anywhere: before or after the command and its NAME, as with kubectl.",
    )
    # Shown in --help here; parsed by the command's own parser (main() moves the command first).
    _global_flags(p, default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("status", help="show a rollout: phase, step, weights, gates, history")
    s.add_argument("name")
    s.add_argument("-w", "--watch", action="store_true", help="live view, refreshed on every change")
    s.add_argument(
        "--until-done",
        action="store_true",
        help="with -w: exit 0 when the rollout succeeds, 1 when it is rolled back or fails",
    )
    s.add_argument("--timeout", type=float, help="with -w: give up after this many seconds (exit 6)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _global_flags(s)

    ls = sub.add_parser("list", help="list ModelDeployments")
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    _global_flags(ls)

    h = sub.add_parser("history", help="revisions of a ModelDeployment, newest first")
    h.add_argument("name")
    _global_flags(h)

    for action, text in (
        ("promote", "skip the remaining steps' wait and promote the canary"),
        ("abort", "roll the canary back to the stable revision now"),
        ("retry", "try a rolled-back or failed revision again"),
    ):
        a = sub.add_parser(action, help=text)
        a.add_argument("name")
        a.add_argument("--force", action="store_true", help="set the annotation even if the phase says it is moot")
        _global_flags(a)
    return p


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _takes_value(token: str, parsers: Iterable[argparse.ArgumentParser]) -> bool:
    """Whether option ``token`` (as typed, without ``=value``) consumes the next argument.

    Long options may be abbreviated, as argparse allows; an unknown option is taken to be a flag
    (the command's parser then reports it).
    """
    if token.startswith("--"):
        options = {o: a for p in parsers for o, a in p._option_string_actions.items() if o.startswith("--")}
        exact = [a for o, a in options.items() if o == token]
        matches = exact or [a for o, a in options.items() if o.startswith(token)]
        return bool(matches) and all(a.nargs != 0 for a in matches)
    # -n ml, -nml, or a cluster of flags such as -wA: the first letter decides, as argparse does.
    action = next((p._option_string_actions.get(token[:2]) for p in parsers if token[:2] in p._option_string_actions),
                  None)  # fmt: skip
    return action is not None and action.nargs != 0 and len(token) == 2


def hoist_command(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Move the command to the front, so every flag given before it is parsed with it.

    kubectl plugins are used like kubectl: ``-n ml status fraud``, ``status fraud -n ml`` and
    ``status -n ml fraud`` must all mean the same. argparse only lets the top-level parser see what
    precedes the command, so this finds the command (skipping option values, such as the ``status``
    in ``-n status status fraud``) and puts it first; its own parser, which knows every flag, then
    parses all the rest in any order. Nothing after ``--`` is moved.
    """
    commands = _subparsers(parser)
    parsers = [parser, *commands.values()]
    args = list(argv)
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            break
        if token.startswith("-") and token != "-":
            if "=" not in token and _takes_value(token, parsers):
                i += 1  # skip the option's value
        elif token in commands:
            return [token, *args[:i], *args[i + 1 :]]
        else:
            break  # a positional before any command: leave it for argparse to report
        i += 1
    return args


def _die(message: str, code: int) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run(args: argparse.Namespace, out: TextIO) -> int:
    cluster = Cluster(args.kubeconfig, args.context, args.request_timeout)
    namespace = args.namespace or cluster.default_namespace
    now = datetime.now(UTC)
    style = Style(color=out.isatty() and "NO_COLOR" not in os.environ)

    if args.command == "list":
        items = cluster.list(None if args.all_namespaces else namespace)
        text = render_list(items, now, args.all_namespaces)
        if not text:
            where = "any namespace" if args.all_namespaces else f'namespace "{namespace}"'
            print(f"No ModelDeployments found in {where}.", file=sys.stderr)
        out.write(text)
        return EXIT_OK

    if args.command == "history":
        out.write(render_history(cluster.get(namespace, args.name), now))
        return EXIT_OK

    if args.command == "status":
        if args.watch:
            view = LiveView(cluster, namespace, args.name)
            cluster.get(namespace, args.name)  # fail fast, before starting threads, on a wrong name
            return view.run(out, style, args.until_done, args.timeout, clear=out.isatty())
        obj = cluster.get(namespace, args.name)
        if args.output == "json":
            out.write(json.dumps(obj.get("status") or {}, indent=2, sort_keys=True) + "\n")
            return EXIT_OK
        deployments, _ = cluster.deployments(namespace, args.name)
        out.write(render_status(obj, now, deployments, style))
        return EXIT_OK

    # promote / abort / retry: check, then one conditional patch; retry the check on a conflict.
    for attempt in range(3):
        obj = cluster.get(namespace, args.name)
        if not args.force:
            check_action(args.command, obj)
        body = annotation_patch(args.command, datetime.now(UTC), obj["metadata"].get("resourceVersion"))
        try:
            cluster.patch(namespace, args.name, body)
        except CLIError as exc:
            if "conflict" in str(exc) and attempt < 2:
                continue
            raise
        value = body["metadata"]["annotations"][ACTIONS[args.command]]
        out.write(f'{KIND} "{args.name}" in namespace "{namespace}": {ACTIONS[args.command]}={value}\n')
        return EXIT_OK
    return EXIT_ERROR  # pragma: no cover - the loop returns or raises


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of both ``modelrollout`` and ``kubectl-modelrollout``."""
    parser = _parser()
    args = parser.parse_args(hoist_command(sys.argv[1:] if argv is None else argv, parser))
    try:
        return run(args, sys.stdout)
    except CLIError as exc:
        _die(str(exc), exc.code)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
