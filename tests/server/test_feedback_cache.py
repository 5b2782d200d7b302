"""The prediction cache behind feedback: TTL, capacity, expired vs unknown."""

from __future__ import annotations

from modelserver.feedback import PredictionCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_match_then_scored_once() -> None:
    cache = PredictionCache(10, ttl=60, clock=Clock())
    cache.put("a", ("fraud",))
    assert cache.lookup("a") == ("matched", ("fraud",))
    cache.discard("a")
    assert cache.lookup("a") == ("unknown", None)


def test_expired_is_distinguished_from_unknown() -> None:
    clock = Clock()
    cache = PredictionCache(10, ttl=60, clock=clock)
    cache.put("a", ("legit",))
    clock.now = 30
    cache.put("b", ("legit",))
    clock.now = 61
    assert cache.lookup("a") == ("expired", None)
    assert cache.lookup("b")[0] == "matched"
    assert cache.lookup("zzz") == ("unknown", None)
    assert len(cache) == 1


def test_capacity_evicts_oldest() -> None:
    cache = PredictionCache(3, ttl=60, clock=Clock())
    for key in "abcd":
        cache.put(key, ("x",))
    assert len(cache) == 3
    assert cache.lookup("a") == ("unknown", None)
    assert cache.lookup("d")[0] == "matched"


def test_reput_refreshes_and_replaces() -> None:
    clock = Clock()
    cache = PredictionCache(3, ttl=10, clock=clock)
    cache.put("a", ("x",))
    clock.now = 8
    cache.put("a", ("y",))
    clock.now = 15
    assert cache.lookup("a") == ("matched", ("y",))
