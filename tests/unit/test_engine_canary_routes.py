"""Header and cookie routes (spec.traffic.canaryRoutes) in the engine's routing decisions.

They reach the canary whatever its weight, but only while it has a ready pod: never before, never
after a rollback or a promotion, never while it has lost every pod.
"""

from datetime import timedelta

from modelrollout import engine as e
from modelrollout.api.types import ModelDeploymentStatus

from tests.unit.test_engine import T0, mkspec, ready, result, tick, unready

ROUTES = [{"header": {"name": "x-canary", "value": "always"}}, {"cookie": {"name": "canary"}}]
GATED = {"prometheus": {"address": "http://p:9090"}, "metrics": [{"name": "error-rate", "max": 0.1}]}


def spec(steps=(10, 50, 100), **over):
    traffic = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}, "canaryRoutes": ROUTES}
    return mkspec(traffic=traffic, strategy={"canary": {"steps": list(steps), "stepDuration": "10s"}}, **over)


def routings(d: e.Decision) -> list[tuple[int, bool]]:
    """(weight, routes on) of every routing action, in order."""
    return [(a.routing.canary_weight, bool(a.routing.canary_routes)) for a in d.actions if isinstance(a, e.SetRouting)]


def last_routing(d: e.Decision):
    return [a.routing for a in d.actions if isinstance(a, e.SetRouting)][-1]


def stable(s) -> ModelDeploymentStatus:
    d = tick(s, ModelDeploymentStatus(), "r1", {}, T0)
    d = tick(s, d.status, "r1", {"r1": ready()}, T0)
    assert routings(d) == [(0, False)], "no canary routes outside a rollout"
    return d.status


def test_routes_open_with_the_first_ready_pod_and_follow_every_step():
    s = spec()
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    assert routings(d) == [(0, False)], "no pod yet: a match must not reach a Service without endpoints"
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=1))
    assert routings(d) == [(0, False)]
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=2))
    assert routings(d)[-1] == (10, True)
    routing = last_routing(d)
    assert routing.canary_revision == "r2" and routing.stable_revision == "r1"
    assert [r.model_dump(exclude_none=True) for r in routing.canary_routes] == [
        {"header": {"name": "x-canary", "value": "always", "match": "Exact"}},
        {"cookie": {"name": "canary", "value": "always"}},
    ]
    now = T0 + timedelta(seconds=2)
    seen = []
    while d.status.canaryRevision:
        now += timedelta(seconds=11)
        d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now)
        seen.append(routings(d)[-1])
    # promoted at the end: the canary Service goes, and its routes with it
    assert seen == [(50, True), (100, True), (0, False)]


def test_routes_close_when_the_canary_loses_its_pods_and_on_rollback():
    s = spec(analysis=GATED)
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert routings(d)[-1] == (10, True)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": unready()}, T0 + timedelta(seconds=2))
    assert routings(d) == [(0, False)]
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=3))
    now = T0 + timedelta(seconds=40)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, now, analysis=result("Fail", now))
    assert d.status.phase == "RolledBack"
    assert routings(d)[-1] == (0, False)
    assert last_routing(d).canary_revision is None


def test_a_dark_step_sends_only_matching_requests_to_the_canary():
    s = spec(steps=(0, 50, 100))
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert d.status.currentStep == 0 and d.status.canaryWeight == 0
    assert routings(d)[-1] == (0, True)
    assert last_routing(d).canary_revision == "r2"
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=12))
    assert d.status.currentStep == 1 and routings(d)[-1] == (50, True)


def test_without_canary_routes_nothing_changes():
    s = mkspec()
    d = tick(s, stable(s), "r2", {"r1": ready()}, T0)
    d = tick(s, d.status, "r2", {"r1": ready(), "r2": ready()}, T0 + timedelta(seconds=1))
    assert routings(d)[-1] == (10, False)
