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

import json
import threading
import time
from collections.abc import Callable
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


def _encode(obj: dict[str, Any]) -> str:
    """``obj`` as compact JSON text, without ``metadata.managedFields``, which no reconcile reads.

    Entries are kept as text, not as the decoded dicts, for memory and for the garbage collector:
    measured on the Deployments, Services and ModelDeployments of ``make bench-operator``, a cached
    Deployment took 21.3 KB as Python objects (without managedFields) and 4.3 KB as text, a
    ModelDeployment 12.5 and 2.5 KB, a Service 6.2 and 1.1 KB; and a thousand objects' hundreds of
    thousands of dicts and lists made every full collection of CPython's cyclic garbage collector
    walk them: 55 collections of 0.33 s (median) to 0.77 s in a bench-operator run, pauses of every
    thread of the operator. A string is one object the collector never visits. A lookup decodes its
    entry (tens of microseconds, a few per reconcile), which also hands every reader its own copy."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return json.dumps(obj, separators=(",", ":"))


class WatchCache:
    """Thread-safe: the kopf event loop writes watch events while the worker threads read and write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, str | None] = {}  # JSON text (see _encode); None: known absent
        self._floor: dict[Key, int] = {}  # newest resourceVersion seen for the key, deletions included

    def lookup(self, key: Key) -> tuple[bool, dict[str, Any] | None]:
        """(known, object): ``known`` False means nothing has been seen yet, so ask the API server.
        The object is the caller's own copy."""
        with self._lock:
            if key not in self._objects:
                return False, None
            text = self._objects[key]
        return True, None if text is None else json.loads(text)

    def observed(self, key: Key, obj: dict[str, Any]) -> None:
        """A state of the object from the watch or from the answer to the operator's own write;
        dropped when older than a state already recorded."""
        seen, text = _version(obj), _encode(obj)  # encoded outside the lock the workers read under
        with self._lock:
            floor = self._floor.get(key)
            # A deletion answers with the object's last state: that same version is gone too.
            deleted = key in self._objects and self._objects[key] is None
            if seen is not None and floor is not None and (seen < floor or (seen == floor and deleted)):
                return
            self._objects[key] = text
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
                self._objects[key] = None if obj is None else _encode(obj)
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


Owner = tuple[str, str]  # (namespace, name) of the ModelDeployment that owns the objects


class OwnedCache:
    """The objects each owner has (a ModelDeployment's revision Deployments), so a reconcile lists
    them without a GET: at a thousand objects that list was a third of the operator's API requests
    (`make bench-operator`).

    A list may only be answered from memory when memory holds *all* of the owner's objects, which
    a watch alone never proves (an object missing from it may simply not have been delivered yet).
    So the first list of an owner asks the API server, and from then on the watch and the operator's
    own writes keep that owner's set current (:class:`WatchCache` orders them by resourceVersion).
    An owner's set is asked for again when the watch saw one of its objects deleted (a list in flight
    may predate the deletion), and at the latest ``max_age`` seconds after its last list, which
    bounds what a watch gap (kopf re-lists after one, but reports no deletions that fell into it)
    can hide.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._objects = WatchCache()
        self._lock = threading.Lock()
        self._names: dict[Owner, set[str]] = {}
        self._listed: dict[Owner, float] = {}  # owner -> when its list was taken
        self._epoch: dict[Owner, int] = {}  # bumped by every deletion the watch reports
        self._max_age, self._clock = max_age, clock

    def items(self, owner: Owner) -> list[dict[str, Any]] | None:
        """Every object of ``owner``, or None when memory may be incomplete (list from the API
        server and pass the answer to :meth:`listed`)."""
        with self._lock:
            taken = self._listed.get(owner)
            if taken is None or self._clock() - taken > self._max_age:
                return None
            names = sorted(self._names.get(owner, ()))
        found = (self._objects.lookup((owner[0], name)) for name in names)
        return [obj for known, obj in found if known and obj is not None]

    def epoch(self, owner: Owner) -> int:
        """Take this before sending a list; :meth:`listed` compares it to spot a deletion that raced it."""
        with self._lock:
            return self._epoch.get(owner, 0)

    def listed(self, owner: Owner, items: list[dict[str, Any]], version: str | None, epoch: int) -> None:
        """The API server's list of ``owner``'s objects as of resourceVersion ``version``, sent when
        :meth:`epoch` said ``epoch``. It replaces what memory holds, except objects seen in a newer
        state than the list (created or changed after it was taken)."""
        listed_at = _version({"metadata": {"resourceVersion": version}})
        for obj in items:
            self.observed(owner, obj)
        keep = {obj["metadata"]["name"] for obj in items}
        with self._lock:
            names = set(self._names.get(owner, ()))
        for name in names - keep:
            seen = _version(self._objects.lookup((owner[0], name))[1])
            if listed_at is None or seen is None or seen <= listed_at:
                self._objects.gone((owner[0], name))
                with self._lock:
                    self._names.get(owner, set()).discard(name)
        with self._lock:
            if self._epoch.get(owner, 0) == epoch:
                self._listed[owner] = self._clock()

    def observed(self, owner: Owner, obj: dict[str, Any]) -> None:
        """A state from the watch or from the answer to the operator's own write."""
        name = obj["metadata"]["name"]
        self._objects.observed((owner[0], name), obj)
        with self._lock:
            self._names.setdefault(owner, set()).add(name)

    def deleted(self, owner: Owner, name: str, version: int | None) -> None:
        """The operator deleted it: absent now, and older watch events for it are dropped."""
        self._objects.deleted((owner[0], name), version)

    def gone(self, owner: Owner, name: str) -> None:
        """The watch saw it deleted: forget it, and list the owner again next time."""
        self._objects.gone((owner[0], name))
        with self._lock:
            names = self._names.get(owner)
            if names is not None:
                names.discard(name)
                if not names:
                    del self._names[owner]
            self._epoch[owner] = self._epoch.get(owner, 0) + 1
            self._listed.pop(owner, None)

    def forget(self, owner: Owner) -> None:
        """The owner is gone: its objects go with it (garbage collection deletes them)."""
        with self._lock:
            names = self._names.pop(owner, set())
            self._listed.pop(owner, None)
            self._epoch.pop(owner, None)
        for name in names:
            self._objects.gone((owner[0], name))

    def clear(self) -> None:
        """Forget everything (a replica that just became leader lists every owner afresh)."""
        with self._lock:
            self._names.clear()
            self._listed.clear()
            self._epoch.clear()
        self._objects.clear()
