"""The Service cache: what a lookup may answer, whichever order the watch and the operator's own
requests arrive in."""

from __future__ import annotations

from typing import Any

from modelrollout.watchcache import OwnedCache, WatchCache

KEY = ("ml", "fraud-canary")


def svc(version: int, revision: str = "r1") -> dict[str, Any]:
    return {"metadata": {"name": KEY[1], "resourceVersion": str(version)}, "spec": {"selector": {"rev": revision}}}


def test_a_miss_means_ask_never_absent() -> None:
    cache = WatchCache()
    assert cache.lookup(KEY) == (False, None)
    cache.read(KEY, None)  # a GET answered 404
    assert cache.lookup(KEY) == (True, None)


def test_the_operators_write_is_not_replaced_by_an_older_watch_event() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(5, "r1"))  # the watch
    cache.observed(KEY, svc(9, "r2"))  # the answer to the operator's apply
    cache.observed(KEY, svc(5, "r1"))  # kopf delivers an older event late
    assert cache.lookup(KEY) == (True, svc(9, "r2"))
    cache.observed(KEY, svc(9, "r2"))  # the watch's own event for that write
    cache.observed(KEY, svc(12, "r3"))  # a hand edit
    assert cache.lookup(KEY) == (True, svc(12, "r3"))


def test_a_deletion_is_not_undone_by_events_in_flight() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(7))
    cache.deleted(KEY, 7)  # DELETE answers with the object's last state
    cache.observed(KEY, svc(7))  # that state's own event, delivered late
    cache.observed(KEY, svc(6))
    assert cache.lookup(KEY) == (True, None)
    cache.observed(KEY, svc(15, "r4"))  # created again
    assert cache.lookup(KEY) == (True, svc(15, "r4"))


def test_a_get_only_fills_a_gap() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(8, "r2"))  # the watch raced the GET
    cache.read(KEY, svc(3, "r1"))
    assert cache.lookup(KEY) == (True, svc(8, "r2"))


def test_the_watch_seeing_it_deleted_forgets_it() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(4))
    cache.gone(KEY)
    assert cache.lookup(KEY) == (False, None) and len(cache) == 0
    cache.observed(KEY, svc(2, "r0"))  # a new object of the same name starts afresh
    assert cache.lookup(KEY) == (True, svc(2, "r0"))


def test_opaque_versions_never_reject_a_state() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(9))
    odd = {"metadata": {"name": KEY[1], "resourceVersion": "not-a-number"}, "spec": {}}
    cache.observed(KEY, odd)
    assert cache.lookup(KEY) == (True, odd)


class FakeCustom:
    """The two custom-object calls Kube makes for a ModelDeployment, counting reads."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj, self.gets = obj, 0

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.gets += 1
        return self.obj

    def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        version = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        self.obj = {"metadata": {**self.obj["metadata"], "resourceVersion": version}, "status": args[-1]["status"]}
        return self.obj


def test_a_reconcile_reads_its_own_status_write_without_a_get() -> None:
    from kubernetes import client
    from modelrollout.kube import Kube

    kube = Kube(client.ApiClient())
    fake = FakeCustom({"metadata": {"name": "fraud", "namespace": "ml", "resourceVersion": "10"}, "status": {}})
    kube.custom = fake  # type: ignore[assignment]
    first = kube.get_modeldeployment("ml", "fraud")
    assert first is not None and fake.gets == 1
    assert kube.write_status("ml", "fraud", "10", {"phase": "Progressing"})
    again = kube.get_modeldeployment("ml", "fraud")
    assert fake.gets == 1 and again is not None
    assert again["metadata"]["resourceVersion"] == "11" and again["status"] == {"phase": "Progressing"}
    kube.modeldeployments.observed(("ml", "fraud"), first)  # the watch delivers the older state late
    assert kube.get_modeldeployment("ml", "fraud") == again


OWNER = ("ml", "fraud")


def dep(name: str, version: int, ready: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(version)}, "status": {"readyReplicas": ready}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_owner_is_listed_from_memory_only_after_a_list_of_its_own() -> None:
    cache = OwnedCache(max_age=300)
    cache.observed(OWNER, dep("fraud-r1", 5))  # the watch shows one of them
    assert cache.items(OWNER) is None, "the watch alone never proves it has them all"
    cache.listed(OWNER, [dep("fraud-r1", 5), dep("fraud-r2", 6)], "8", cache.epoch(OWNER))
    assert cache.items(OWNER) == [dep("fraud-r1", 5), dep("fraud-r2", 6)]
    cache.observed(OWNER, dep("fraud-r2", 9, ready=1))  # readiness from the watch
    cache.observed(OWNER, dep("fraud-r3", 10))  # the operator's own create
    cache.observed(OWNER, dep("fraud-r2", 6))  # an older event delivered late
    assert cache.items(OWNER) == [dep("fraud-r1", 5), dep("fraud-r2", 9, ready=1), dep("fraud-r3", 10)]
    assert cache.items(("ml", "other")) is None


def test_the_operators_delete_hides_the_object_until_the_watch_confirms_it() -> None:
    cache = OwnedCache(max_age=300)
    cache.listed(OWNER, [dep("fraud-r1", 5), dep("fraud-r2", 6)], "8", cache.epoch(OWNER))
    cache.deleted(OWNER, "fraud-r1", 11)
    cache.observed(OWNER, dep("fraud-r1", 5))  # an event from before the deletion
    assert cache.items(OWNER) == [dep("fraud-r2", 6)]
    cache.gone(OWNER, "fraud-r1")  # the watch's DELETED event
    assert cache.items(OWNER) is None, "after a deletion the owner is listed again"


def test_a_deletion_during_a_list_keeps_the_owner_unlisted_and_the_next_list_replaces_memory() -> None:
    cache = OwnedCache(max_age=300)
    epoch = cache.epoch(OWNER)  # the list is sent ...
    cache.gone(OWNER, "fraud-r1")  # ... the watch reports a deletion the list may predate ...
    cache.listed(OWNER, [dep("fraud-r1", 5)], "7", epoch)  # ... and the list answers with it
    assert cache.items(OWNER) is None
    epoch = cache.epoch(OWNER)
    cache.observed(OWNER, dep("fraud-r9", 12))  # created after the next list was taken
    cache.listed(OWNER, [], "10", epoch)
    assert cache.items(OWNER) == [dep("fraud-r9", 12)], "fraud-r1 is gone; fraud-r9 is newer than the list"


def test_a_list_expires_after_max_age_and_forget_drops_the_owner() -> None:
    clock = Clock()
    cache = OwnedCache(max_age=300, clock=clock)
    cache.listed(OWNER, [dep("fraud-r1", 5)], "6", cache.epoch(OWNER))
    clock.now = 299
    assert cache.items(OWNER) == [dep("fraud-r1", 5)]
    clock.now = 301
    assert cache.items(OWNER) is None, "a watch gap can hide a deletion: list again every max_age"
    cache.listed(OWNER, [dep("fraud-r1", 5)], "6", cache.epoch(OWNER))
    cache.forget(OWNER)
    assert cache.items(OWNER) is None
    cache.listed(OWNER, [], "6", cache.epoch(OWNER))
    assert cache.items(OWNER) == []


def test_entries_leave_out_managed_fields() -> None:
    """No reconcile reads them, and they are half of a cached Deployment's memory."""
    cache = WatchCache()
    obj = svc(4)
    obj["metadata"]["managedFields"] = [{"manager": "modelrollout", "fieldsV1": {"f:spec": {}}}]
    cache.observed(KEY, obj)
    known, entry = cache.lookup(KEY)
    assert known and entry is not None and "managedFields" not in entry["metadata"]
    assert entry["spec"] == obj["spec"] and entry["metadata"]["resourceVersion"] == "4"
    assert "managedFields" in obj["metadata"], "the caller's object is left as it was"


def test_a_lookup_is_the_callers_own_copy() -> None:
    cache = WatchCache()
    cache.observed(KEY, svc(4))
    _, first = cache.lookup(KEY)
    assert first is not None
    first["spec"]["selector"]["rev"] = "changed by a reader"
    assert cache.lookup(KEY) == (True, svc(4))


def test_entries_give_the_garbage_collector_nothing_to_walk() -> None:
    """A thousand cached objects as dicts made every full collection walk hundreds of thousands of
    containers (0.4-0.8 s pauses of the whole operator); an entry is one string instead."""
    import gc

    cache = WatchCache()
    nested = {
        "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": str(i)} for i in range(20)]}]}}}
    }
    gc.collect()
    before = len(gc.get_objects())
    for i in range(200):
        cache.observed(("ns", f"d{i}"), {"metadata": {"name": f"d{i}", "resourceVersion": str(i)}, **nested})
    gc.collect()
    assert len(gc.get_objects()) - before < 50  # 200 objects of 27 containers each as dicts: 5,400
    assert cache.lookup(("ns", "d7"))[1] == {"metadata": {"name": "d7", "resourceVersion": "7"}, **nested}
