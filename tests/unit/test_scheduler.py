"""The per-object scheduler: due times, one reconcile per object at a time, isolation of a slow
object, backoff, and the standby gate. Real threads and the real event loop, short real delays;
the bounds leave room for a loaded machine (a late start is allowed, an early one is not)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable

import pytest
from modelrollout.scheduler import Key, Scheduler

A, B, SLOW = ("ns", "a"), ("ns", "b"), ("ns", "slow")


class Recorder:
    """A reconcile that records (key, start, end) and answers each key's next delay."""

    def __init__(self, delays: dict[Key, float | None] | None = None, hold: dict[Key, float] | None = None):
        self.delays = delays or {}
        self.hold = hold or {}
        self.calls: list[tuple[Key, float, float]] = []
        self.running: set[Key] = set()
        self.overlaps = 0
        self.lock = threading.Lock()

    def __call__(self, key: Key) -> float | None:
        with self.lock:
            if key in self.running:
                self.overlaps += 1
            self.running.add(key)
        started = time.monotonic()
        time.sleep(self.hold.get(key, 0.0))
        with self.lock:
            self.running.discard(key)
            self.calls.append((key, started, time.monotonic()))
        return self.delays.get(key, 3600.0)

    def starts(self, key: Key) -> list[float]:
        return [s for k, s, _ in self.calls if k == key]


async def running(scheduler: Scheduler, body: Callable[[], object], seconds: float) -> None:
    task = asyncio.create_task(scheduler.run())
    try:
        body()
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_keys_run_when_due_and_repeated_asks_coalesce() -> None:
    work = Recorder(delays={A: 0.3})

    async def main() -> None:
        s = Scheduler(work, workers=2)
        t0 = time.monotonic()

        def enqueue() -> None:
            s.enqueue(B, 0.2)
            for _ in range(5):
                s.enqueue(A)  # five events before the first run: one reconcile

        await running(s, enqueue, 1.0)
        a, b = [x - t0 for x in work.starts(A)], [x - t0 for x in work.starts(B)]
        assert 2 <= len(a) <= 4 and a[0] < 0.2  # at once, then every 0.3 s as the reconcile asked
        assert all(0.29 < y - x < 0.6 for x, y in itertools.pairwise(a)), a
        assert len(b) == 1 and 0.19 < b[0] < 0.5

    asyncio.run(main())


def test_an_object_is_never_reconciled_twice_at_once_and_an_event_during_a_run_runs_it_again() -> None:
    work = Recorder(hold={A: 0.2})

    async def main() -> None:
        s = Scheduler(work, workers=4)

        async def events() -> None:
            s.enqueue(A)
            await asyncio.sleep(0.05)
            for _ in range(3):  # while the first run is in progress
                s.enqueue(A)

        task = asyncio.create_task(s.run())
        await events()
        await asyncio.sleep(0.6)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert work.overlaps == 0
    assert len(work.calls) == 2, work.calls  # the run in progress, then exactly one more
    (_, _, first_end), (_, second_start, _) = work.calls
    assert second_start >= first_end


def test_a_slow_object_holds_one_worker_and_delays_no_other() -> None:
    """An object whose reconcile hangs (a Prometheus that never answers) holds one worker for the
    whole time; the others keep their clocks to within a few milliseconds."""
    release = threading.Event()

    def work(key: Key) -> float | None:
        if key == SLOW:
            release.wait(5)
        return 0.1

    seen: dict[Key, list[float]] = {A: [], B: []}

    def record(key: Key) -> float | None:
        if key in seen:
            seen[key].append(time.monotonic())
        return work(key)

    async def main() -> None:
        s = Scheduler(record, workers=2)
        try:
            await running(s, lambda: [s.enqueue(k) for k in (SLOW, A, B)], 1.0)
        finally:
            release.set()

    asyncio.run(main())
    for key in (A, B):
        gaps = [b - a for a, b in zip(seen[key], seen[key][1:], strict=False)]
        assert len(gaps) >= 4, (key, gaps)
        assert max(gaps) < 0.5, (key, gaps)  # due every 0.1 s; never held behind SLOW (1 s and more)


def test_a_failing_reconcile_backs_off_exponentially_and_recovers() -> None:
    fails = {"left": 3}
    starts: list[float] = []

    def work(key: Key) -> float | None:
        starts.append(time.monotonic())
        if fails["left"]:
            fails["left"] -= 1
            raise RuntimeError("API server said 500")
        return None  # then: the object is gone

    async def main() -> Scheduler:
        s = Scheduler(work, workers=1, min_backoff=0.1, max_backoff=1.0)
        await running(s, lambda: s.enqueue(A), 1.5)
        return s

    s = asyncio.run(main())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 4, gaps
    for gap, backoff in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert backoff - 0.005 < gap < backoff + 0.3, gaps
    assert s.pending == 0  # None: forgotten


def test_forget_drops_a_pending_reconcile() -> None:
    work = Recorder()

    async def main() -> None:
        s = Scheduler(work, workers=1)

        def enqueue_then_forget() -> None:
            s.enqueue(A, 0.1)
            s.forget(A)

        await running(s, enqueue_then_forget, 0.3)

    asyncio.run(main())
    assert work.calls == []


def test_a_standby_reconciles_nothing_until_it_leads() -> None:
    work = Recorder()
    leading = {"now": False}

    async def main() -> None:
        s = Scheduler(work, workers=2, active=lambda: leading["now"])
        task = asyncio.create_task(s.run())
        s.enqueue(A)
        s.enqueue(B)
        await asyncio.sleep(0.1)
        assert work.calls == []
        leading["now"] = True
        s.enqueue_all()  # what the elector calls on taking the Lease
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert sorted(k for k, _, _ in work.calls) == [A, B]


def test_a_users_change_goes_before_work_that_is_merely_due() -> None:
    """One worker, ten keys already due: the key enqueued as urgent (a new spec) is reconciled next,
    not after the ten."""
    order: list[Key] = []

    def work(key: Key) -> float | None:
        order.append(key)
        time.sleep(0.02)
        return None

    waits: list[tuple[float, bool]] = []

    async def main() -> None:
        s = Scheduler(work, workers=1, observe_wait=lambda seconds, urgent: waits.append((seconds, urgent)))

        def enqueue() -> None:
            for i in range(10):
                s.enqueue(("ns", f"due-{i}"))
            s.enqueue(A, urgent=True)

        await running(s, enqueue, 0.5)

    asyncio.run(main())
    assert len(order) == 11 and order[0] == A, order
    # Every dispatch reports how long its key waited for the worker; the last due key waited for the
    # ten reconciles before it (20 ms each).
    assert [urgent for _, urgent in waits] == [True] + [False] * 10
    assert waits[-1][0] >= 0.15 > waits[0][0]


def test_a_users_change_during_its_objects_run_keeps_its_place_before_due_work() -> None:
    """Two workers: A runs (0.2 s), five keys fall due (0.1 s each), then A's spec changes. The free
    worker finds A running; A runs again as soon as its run ends, before the due keys still waiting
    (as a plain due key it would queue behind all of them)."""
    order: list[Key] = []

    def work(key: Key) -> float | None:
        order.append(key)
        time.sleep(0.2 if key == A else 0.1)
        return 3600.0

    async def main() -> None:
        s = Scheduler(work, workers=2)

        async def events() -> None:
            s.enqueue(A)
            await asyncio.sleep(0.05)  # A is running
            for i in range(5):
                s.enqueue(("ns", f"due-{i}"))
            await asyncio.sleep(0.01)
            s.enqueue(A, urgent=True)

        task = asyncio.create_task(s.run())
        await events()
        await asyncio.sleep(0.8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert order.count(A) == 2 and len(order) == 7, order
    assert order.index(A, 1) < order.index(("ns", "due-3")), order


def test_an_object_recreated_during_the_run_that_found_it_gone_is_not_forgotten() -> None:
    """A's reconcile finds it deleted (answers None) while a new A is created: the creation's
    urgent reconcile still runs."""
    calls: list[Key] = []

    def work(key: Key) -> float | None:
        calls.append(key)
        time.sleep(0.1 if len(calls) == 1 else 0.0)
        return None

    async def main() -> None:
        s = Scheduler(work, workers=1)

        async def events() -> None:
            s.enqueue(A)
            await asyncio.sleep(0.05)
            s.enqueue(A, urgent=True)  # ADDED while the first run is in progress

        task = asyncio.create_task(s.run())
        await events()
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == [A, A], calls
