"""Per-object scheduling: each ModelDeployment is reconciled when something about it changes and
when its next decision falls due, by a bounded pool of worker threads.

The queue works like client-go's delaying work queue: a key waits at most once (the earliest time
asked for wins), a key is never reconciled by two workers at once (asked for while running, it runs
again right after, a user's change still before merely due work), and a failing key retries with
exponential backoff while the others keep their own clocks. A reconcile blocked on a slow
Prometheus holds one worker; with ``workers`` of them, up to ``workers - 1`` such objects delay
nobody else.

The reconcile itself (``work``) is synchronous, runs in the pool, and returns how many seconds
until its object should be looked at again (None: forget it, e.g. it was deleted).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name) of a ModelDeployment."""

Work = Callable[[Key], float | None]


class Scheduler:
    def __init__(
        self,
        work: Work,
        workers: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        active: Callable[[], bool] = lambda: True,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        observe_wait: Callable[[float, bool], None] = lambda seconds, urgent: None,
    ) -> None:
        """``active`` is asked before each reconcile: a standby replica (leader election) keeps its
        keys known but reconciles nothing; :meth:`enqueue_all` wakes them when it takes over."""
        self._work = work
        self._workers = workers
        self._clock = clock
        self._active = active
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._observe_wait = observe_wait  # seconds a key waited for a worker past its due time
        self._known: set[Key] = set()
        self._due: dict[Key, float] = {}
        self._urgent: dict[Key, float] = {}  # key -> since when; first in, first out, before any due key
        self._heap: list[tuple[float, Key]] = []
        self._running: set[Key] = set()
        # Asked for while running: runs right after; the value is since when it is urgent (None: due).
        self._again: dict[Key, float | None] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")
        self._wake = asyncio.Event()
        self._free = asyncio.Semaphore(workers)

    # ------------------------------------------------------------------ called on the event loop
    def enqueue(self, key: Key, delay: float = 0.0, *, urgent: bool = False) -> None:
        """Reconcile ``key`` in ``delay`` seconds, or sooner if it is already due sooner.

        ``urgent`` (a user's change: a new spec, a promote or abort) goes before every key that is
        merely due: when more work is due than the workers can do, the engine's time-based work
        waits (its evidence keeps accumulating) rather than the user's change."""
        self._known.add(key)
        if urgent:
            self._urgent.setdefault(key, self._clock())
            self._wake.set()
            return
        at = self._clock() + max(0.0, delay)
        if self._due.get(key, math.inf) <= at:
            return
        self._due[key] = at
        heapq.heappush(self._heap, (at, key))
        self._wake.set()

    def enqueue_all(self) -> None:
        """Every known key now (a replica that just became leader)."""
        for key in sorted(self._known):
            self.enqueue(key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its pending reconcile (a running one ends on its own)."""
        self._known.discard(key)
        self._due.pop(key, None)
        self._urgent.pop(key, None)
        self._again.pop(key, None)
        self._failures.pop(key, None)

    @property
    def pending(self) -> int:
        """Keys waiting for a due time or a worker (for tests and metrics)."""
        return len(self._due) + len(self._urgent)

    async def run(self) -> None:
        """Dispatch due keys to free workers until cancelled."""
        try:
            while True:
                await self._free.acquire()
                key, since, urgent = await self._next_due()
                if key in self._running:  # asked for again while running: runs right after, as urgent as asked
                    if urgent or key not in self._again:
                        self._again[key] = since if urgent else None
                    self._free.release()
                    continue
                self._observe_wait(self._clock() - since, urgent)
                self._running.add(key)
                task = asyncio.create_task(self._reconcile(key), name=f"reconcile {key[0]}/{key[1]}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _next_due(self) -> tuple[Key, float, bool]:
        """The next key to run, since when it has waited, and whether it is urgent."""
        while True:
            if self._urgent:
                key = next(iter(self._urgent))
                since = self._urgent.pop(key)
                self._due.pop(key, None)  # its due reconcile happens now
                return key, since, True
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # superseded by an earlier time, or forgotten
            now = self._clock()
            if self._heap and self._heap[0][0] <= now:
                at, key = heapq.heappop(self._heap)
                del self._due[key]
                return key, at, False
            timeout = self._heap[0][0] - now if self._heap else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _reconcile(self, key: Key) -> None:
        if not self._active():  # a standby: the leader reconciles; enqueue_all() brings the key back
            self._running.discard(key)
            self._again.pop(key, None)
            self._free.release()
            return
        delay: float | None = None
        try:
            loop = asyncio.get_running_loop()
            delay = await loop.run_in_executor(self._executor, self._work, key)
            self._failures.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception:  # one object's failure never stops the others' clocks
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(self._max_backoff, self._min_backoff * 2 ** (failures - 1))
            log.exception("reconcile of %s/%s failed (%d in a row); retrying in %.0fs", *key, failures, delay)
        finally:
            self._running.discard(key)
            self._free.release()
        if key in self._again:
            since = self._again.pop(key)
            if since is None:
                self.enqueue(key)
            else:  # a user's change that came during the run keeps its place before due work
                self._urgent.setdefault(key, since)
                self._wake.set()
        elif delay is None:
            if key not in self._urgent:  # gone, and not created again since the run began
                self.forget(key)
        elif key in self._known:
            self.enqueue(key, delay)
