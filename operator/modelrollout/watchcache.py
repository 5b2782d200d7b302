"""Objects as the operator's watch last showed them, so a reconcile reads them without a GET.

At a thousand ModelDeployments the reads of the stable and canary Services and of the object itself
were half of the operator's API requests (three GETs per reconcile, for objects that change a few
times per rollout; `make bench-operator`). controller-runtime answers reads from an informer's cache;
this is the same idea for those two kinds, fed by kopf's watches (so it follows the operator's
namespace scope) and by the answers to the operator's own writes (so a reconcile reads what it wrote
without waiting for the watch).

What a lookup promises: an entry is the newest state of the object this process has seen — from the
watch, from the answer to its own write, or from a GET. Nothing is known about an object until one
of those has been seen: a miss means "ask the API server", never "absent". An object the operator
deleted, or that a GET found missing, is known absent until the watch shows it again; one the watch
saw deleted is forgotten (asked again on the next read), so the cache holds only live objects.

Resource versions order the sources: a watch event older than what the operator's own write
returned (kopf may deliver it later) never replaces it, and neither does one older than a deletion.
"""

from __future__ import annotations

import threading
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def _version(obj: dict[str, Any] | None) -> int | None:
    """The object's resourceVersion as a number; None when it has none or it is not numeric (the
    API server's versions are etcd revisions in practice, but clients must treat them as opaque, so
    an unparsable one is simply never used to reject a newer state)."""
    raw = ((obj or {}).get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


class WatchCache:
    """Thread-safe: the kopf event loop writes watch events while the worker threads read and write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any] | None] = {}  # None: known absent
        self._floor: dict[Key, int] = {}  # newest resourceVersion seen for the key, deletions included

    def lookup(self, key: Key) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): ``known`` False means nothing has been seen yet, so ask the API server.
        The object is shared with other readers: read it, never change it."""
        with self._lock:
            if key not in self._objects:
                return False, None
            return True, self._objects[key]

    def observed(self, key: Key, obj: dict[str, Any]) -> None:
        """A state of the object from the watch or from the answer to the operator's own write;
        dropped when older than a state already recorded."""
        seen = _version(obj)
        with self._lock:
            floor = self._floor.get(key)
            # A deletion answers with the object's last state: that same version is gone too.
            deleted = key in self._objects and self._objects[key] is None
            if seen is not None and floor is not None and (seen < floor or (seen == floor and deleted)):
                return
            self._objects[key] = obj
            if seen is not None:
                self._floor[key] = seen

    def deleted(self, key: Key, version: int | None) -> None:
        """The operator deleted the object (``version``: the resourceVersion the DELETE answered
        with): known absent, and watch events older than the deletion, still in flight, are dropped."""
        with self._lock:
            self._objects[key] = None
            if version is not None:
                self._floor[key] = max(self._floor.get(key, version), version)

    def gone(self, key: Key) -> None:
        """The watch saw the object deleted. The watch is ordered, so nothing older follows: the
        entry goes (the next read asks the API server), which keeps the cache as small as the set
        of live objects."""
        with self._lock:
            self._objects.pop(key, None)
            self._floor.pop(key, None)

    def read(self, key: Key, obj: dict[str, Any] | None) -> None:
        """The answer to a GET (None: 404). It only fills a gap: anything recorded meanwhile (a
        watch event that raced the GET) is at least as new."""
        with self._lock:
            if key not in self._objects:
                self._objects[key] = obj
                seen = _version(obj)
                if seen is not None:
                    self._floor[key] = seen

    def clear(self) -> None:
        """Forget everything: the next read of each object asks the API server."""
        with self._lock:
            self._objects.clear()
            self._floor.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)
