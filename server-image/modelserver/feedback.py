"""Join delayed ground truth to cached predictions by request id.

Why: accuracy is the gate nobody else offers, and it needs predictions and labels to meet. The
server keeps each prediction (its predicted class per row) for ``ttl`` seconds in a bounded,
insertion-ordered cache. Feedback pops the entry, so every prediction is scored at most once;
ids never seen (or already scored, or evicted for space) are ``unknown``, ids seen but older than
the TTL are ``expired`` — both answered clearly and counted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class CachedPrediction:
    """Never changed once stored; not ``frozen``, which would cost 4x as much per prediction stored."""

    stored_at: float
    classes: tuple[str, ...]


class PredictionCache:
    """A bounded TTL map ``request id -> predicted classes`` with memory of recently expired ids."""

    def __init__(self, max_entries: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self._entries: OrderedDict[str, CachedPrediction] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, request_id: str, classes: tuple[str, ...]) -> None:
        """Store (or replace) a prediction; evicts expired entries, then the oldest beyond capacity."""
        now = self.clock()
        self._entries.pop(request_id, None)
        self._entries[request_id] = CachedPrediction(now, classes)
        self._expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def lookup(self, request_id: str) -> tuple[str, tuple[str, ...] | None]:
        """``("matched", classes)``, ``("expired", None)`` or ``("unknown", None)``; does not remove."""
        self._expire(self.clock())
        entry = self._entries.get(request_id)
        if entry is not None:
            return "matched", entry.classes
        if request_id in self._expired:
            return "expired", None
        return "unknown", None

    def discard(self, request_id: str) -> None:
        """Forget a prediction once its feedback has been counted (each prediction is scored once)."""
        self._entries.pop(request_id, None)

    def _expire(self, now: float) -> None:
        """Drop entries older than the TTL from the front, remembering their ids (bounded)."""
        limit = now - self.ttl
        entries = self._entries
        while entries:
            key, first = next(iter(entries.items()))
            if first.stored_at >= limit:
                break
            entries.popitem(last=False)
            self._expired[key] = None
            if len(self._expired) > self.max_entries:
                self._expired.popitem(last=False)
