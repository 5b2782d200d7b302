"""The Service cache: what a lookup may answer, whichever order the watch and the operator's own
requests arrive in."""

from __future__ import annotations

from typing import Any

from modelrollout.watchcache import WatchCache

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
