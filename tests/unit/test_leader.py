"""Leader election on a Lease: one holder at a time, takeover only after the lease duration as each
candidate's own clock measures it, stepping down before anyone may take over, and an immediate
handover on release. The API server is an in-memory Lease store with its resourceVersion
precondition (tests/integration/test_operator.py runs the real thing against the real one)."""

from __future__ import annotations

import copy

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from modelrollout.config import LeaderElection
from modelrollout.leader import LeaderElector


class LeaseStore:
    """create/read/replace of one Lease with the API server's conflict rules."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.version = 0
        self.writes: list[str | None] = []

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease:
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: client.V1Lease) -> client.V1Lease:
        assert self.lease is not None
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        return self._store(body)

    def _store(self, body: client.V1Lease) -> client.V1Lease:
        self.version += 1
        body = copy.deepcopy(body)
        body.metadata.resource_version = str(self.version)
        self.lease = body
        self.writes.append(body.spec.holder_identity)
        return body

    @property
    def holder(self) -> str | None:
        return self.lease.spec.holder_identity if self.lease else None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def candidate(store: LeaseStore, name: str, clock: Clock) -> LeaderElector:
    election = LeaderElection(namespace="ops", identity=name)  # 15 s lease, 10 s deadline, 2 s retry
    return LeaderElector(store, election, clock=clock)  # type: ignore[arg-type]


def round_of(elector: LeaderElector, clock: Clock) -> bool:
    """What one iteration of ``run`` does, without the sleep."""
    if elector.try_acquire_or_renew():
        elector._renewed_at = clock()
    return elector.is_leader()


def test_one_holder_and_a_takeover_only_after_the_lease_duration_without_renewal() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = candidate(store, "a", clock), candidate(store, "b", clock)
    assert round_of(a, clock) and not round_of(b, clock)
    for _ in range(20):  # a renews every 2 s: b never gets it
        clock.now += 2
        assert round_of(a, clock) and not round_of(b, clock)
    # a dies: b has seen the same record since then and waits out the lease duration
    died = clock.now
    while not round_of(b, clock):
        clock.now += 2
        assert clock.now - died <= 18, "b must take over within lease duration + one retry"
    assert clock.now - died >= 15 and store.holder == "b"
    assert store.lease is not None and store.lease.spec.lease_transitions == 1


def test_a_holder_that_cannot_renew_steps_down_before_anyone_may_take_over() -> None:
    store, clock = LeaseStore(), Clock()
    a = candidate(store, "a", clock)
    assert round_of(a, clock)
    clock.now += 9.9
    assert a.is_leader()
    clock.now += 0.2  # 10.1 s without a renewal: past the renew deadline, inside the lease duration
    assert not a.is_leader()


def test_a_released_lease_is_taken_at_the_next_retry() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = candidate(store, "a", clock), candidate(store, "b", clock)
    assert round_of(a, clock) and not round_of(b, clock)
    a.release()
    assert not a.is_leader() and store.holder is None
    clock.now += 2
    assert round_of(b, clock) and store.holder == "b"


def test_two_candidates_racing_for_a_free_lease_cannot_both_win() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = candidate(store, "a", clock), candidate(store, "b", clock)
    assert round_of(a, clock)
    a.release()
    # Both read the free Lease before either writes: the second write carries a stale version.
    stale = store.read_namespaced_lease("modelrollout-operator", "ops")
    real_read = store.read_namespaced_lease
    store.read_namespaced_lease = lambda name, namespace: copy.deepcopy(stale)  # type: ignore[method-assign]
    won = [b.try_acquire_or_renew(), a.try_acquire_or_renew()]
    store.read_namespaced_lease = real_read  # type: ignore[method-assign]
    assert won == [True, False] and store.holder == "b"


def test_bad_timings_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaderElection(namespace="ops", lease_duration=10, renew_deadline=10, retry_period=2)
