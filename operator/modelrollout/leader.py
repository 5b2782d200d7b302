"""Leader election on a ``coordination.k8s.io/v1`` Lease, so several operator replicas can run and
exactly one reconciles.

The algorithm is client-go's ``leaderelection``: a candidate takes the Lease when it is free or when
its record has not changed for ``lease_duration`` *as measured by the candidate's own clock* (so no
two clocks are compared), every write carries the resourceVersion it read (two candidates cannot
both win), and the holder renews every ``retry_period``. A holder that has not renewed for
``renew_deadline`` stops reconciling before anyone else may take over. A holder that shuts down
cleanly releases the Lease, so a rolling update hands over within one ``retry_period`` instead of a
whole ``lease_duration``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.config import LeaderElection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Seen:
    """A Lease record as last read, and when (monotonic) this candidate first saw it."""

    holder: str | None
    renew_time: str | None
    at: float


class LeaderElector:
    def __init__(
        self,
        coordination: client.CoordinationV1Api,
        election: LeaderElection,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.election = coordination, election
        self.on_started_leading, self.on_stopped_leading = on_started_leading, on_stopped_leading
        self._clock = clock
        self._renewed_at: float | None = None  # monotonic time of our last successful write
        self._seen: _Seen | None = None
        self._leading = False

    def is_leader(self) -> bool:
        """True while our last renewal is younger than the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.election.renew_deadline

    async def run(self) -> None:
        """Try to take or renew the Lease every retry period until cancelled."""
        while True:
            try:
                won = await asyncio.to_thread(self.try_acquire_or_renew)
            except ApiException as exc:
                log.warning("leader election: lease %s: %s %s", self._where, exc.status, exc.reason)
                won = False
            if won:
                self._renewed_at = self._clock()
            leading = self.is_leader()
            if leading and not self._leading:
                log.info("leader election: %s now leads (lease %s)", self.election.identity, self._where)
                self.on_started_leading()
            elif self._leading and not leading:
                log.warning("leader election: %s lost lease %s; reconciling stops", self.election.identity, self._where)
                self.on_stopped_leading()
            self._leading = leading
            await asyncio.sleep(self.election.retry_period)

    @property
    def _where(self) -> str:
        return f"{self.election.namespace}/{self.election.name}"

    def try_acquire_or_renew(self) -> bool:
        """One round of the protocol (blocking); True when we hold the Lease afterwards."""
        e = self.election
        try:
            lease = self.api.read_namespaced_lease(e.name, e.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create()
        spec = lease.spec or client.V1LeaseSpec()
        renew = spec.renew_time.isoformat() if spec.renew_time else None
        now = self._clock()
        if self._seen is None or (self._seen.holder, self._seen.renew_time) != (spec.holder_identity, renew):
            self._seen = _Seen(spec.holder_identity, renew, now)
        duration = spec.lease_duration_seconds or e.lease_duration
        ours = spec.holder_identity == e.identity
        if spec.holder_identity and not ours and now - self._seen.at < duration:
            return False  # someone else holds it and has renewed within its lease duration
        stamp = datetime.now(UTC)
        if not ours:
            spec.acquire_time = stamp
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity, spec.renew_time = e.identity, stamp
        spec.lease_duration_seconds = int(e.lease_duration)
        lease.spec = spec
        return self._write(lambda: self.api.replace_namespaced_lease(e.name, e.namespace, lease))

    def _create(self) -> bool:
        e = self.election
        stamp = datetime.now(UTC)
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=e.name, namespace=e.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=e.identity,
                lease_duration_seconds=int(e.lease_duration),
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        return self._write(lambda: self.api.create_namespaced_lease(e.namespace, body))

    def _write(self, send: Callable[[], Any]) -> bool:
        """A conflicting write (409: someone else wrote first) loses this round; others propagate."""
        try:
            send()
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up on a clean shutdown so a standby takes over at its next retry."""
        if not self.is_leader():
            return
        e = self.election
        self._renewed_at, self._leading = None, False
        try:
            lease = self.api.read_namespaced_lease(e.name, e.namespace)
            if lease.spec is None or lease.spec.holder_identity != e.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(UTC)
            self.api.replace_namespaced_lease(e.name, e.namespace, lease)
            log.info("leader election: %s released lease %s", e.identity, self._where)
        except ApiException as exc:
            log.warning("leader election: releasing lease %s failed: %s %s", self._where, exc.status, exc.reason)
