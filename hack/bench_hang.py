"""bench-operator's last phase: every ModelDeployment's analysis keeps its interval while some of them
query a Prometheus that hangs.

Every object gets a continuous watch (an ``error-rate`` gate, checked every ``interval``). Most
query a real Prometheus that answers; ``hanging`` of them query one that accepts connections and
never answers (:class:`~hack.loopback.hanging.HangingPrometheus`), with the longest timeout a user
may set (120 s), so each of their checks holds one of the operator's workers for the whole
timeout. The figure asked for: how late each check of the answered objects came, from the
``status.lastCheckAt`` stamps the operator writes (its clock, so no watch delay enters), seen by
the benchmark's one watch, which resumes at its resourceVersion so no stamp between two others is
lost.

A check due at ``lastCheckAt + interval`` that starts ``d`` seconds late is stamped then, so the
gap between consecutive stamps is ``interval + d``: "delayed by more than one interval" is a gap
above twice the interval. The open gap from an object's last stamp to the end of the window counts
too, or an object that stopped being checked would show no gap at all.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from hack.bench_watch import GROUP, PLURAL, VERSION
from hack.loopback.hanging import HangingPrometheus
from hack.loopback.procs import wait_for
from hack.loopback.prometheus import Prometheus

HANG_TIMEOUT = 120  # seconds: the most spec.analysis.prometheus.timeoutSeconds allows

Key = tuple[str, str]


def watch_analysis(address: str, interval: float, timeout: int) -> dict[str, Any]:
    """``spec.analysis`` of a continuous watch on the stable revision through ``address``."""
    return {
        "interval": f"{interval:g}s",
        "prometheus": {"address": address, "timeoutSeconds": timeout},
        "metrics": [{"name": "error-rate", "max": 0.05}],
        "continuous": {"window": "1h"},
    }


class CheckTimes:
    """Every distinct ``status.lastCheckAt`` of every ModelDeployment, in order: an observer of
    bench-operator's one watch (``hack/bench_watch.py``), which skips no intermediate status."""

    def __init__(self) -> None:
        self.times: dict[Key, list[float]] = {}
        self._lock = threading.Lock()

    def __call__(self, obj: dict[str, Any], _arrived: float) -> None:
        at = (obj.get("status") or {}).get("lastCheckAt")
        if not at:
            return
        meta = obj["metadata"]
        stamp = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
        with self._lock:
            seen = self.times.setdefault((meta["namespace"], meta["name"]), [])
            if not seen or stamp > seen[-1]:
                seen.append(stamp)

    def stamps(self, key: Key) -> list[float]:
        with self._lock:
            return list(self.times.get(key, ()))

    def snapshot(self) -> dict[Key, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self.times.items()}


@dataclass(frozen=True)
class Gaps:
    """The spacing of one group of objects' checks inside a window."""

    objects: int
    checks: int  # stamps inside the window
    gaps: list[float]  # between consecutive stamps, and the open one to the window's end
    late_objects: int  # objects with a gap above twice the interval (a check delayed by > one interval)
    unchecked: int  # objects with no stamp at all up to the window's end

    def quantile(self, q: float) -> float:
        ordered = sorted(self.gaps)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def gaps(stamps: dict[Key, list[float]], keys: list[Key], start: float, end: float, interval: float) -> Gaps:
    """Gaps between consecutive checks of ``keys`` in ``[start, end]`` (epoch seconds).

    Each object's first gap runs from its last stamp before ``start``, and its last one from its
    last stamp to ``end`` when that open gap is already longer than the interval (a check overdue
    now is as late as one that came late)."""
    out: list[float] = []
    checks = late = unchecked = 0
    for key in keys:
        before = [s for s in stamps.get(key, ()) if s < start]
        inside = [s for s in stamps.get(key, ()) if start <= s <= end]
        series = before[-1:] + inside
        if not series:
            unchecked += 1
            continue
        checks += len(inside)
        own = [b - a for a, b in itertools.pairwise(series)]
        if end - series[-1] > interval:
            own.append(end - series[-1])
        out.extend(own)
        late += any(g > 2 * interval for g in own)
    return Gaps(len(keys), checks, out, late, unchecked)


@dataclass(frozen=True)
class HangResult:
    interval: float
    seconds: float  # the measured window
    answered: Gaps  # objects whose Prometheus answers
    hanging: Gaps  # objects whose Prometheus hangs
    held: int  # connections the hanging Prometheus received: the hang was exercised


def run(
    api: client.CustomObjectsApi,
    checks: CheckTimes,
    names: list[Key],
    *,
    hanging: int,
    interval: float,
    seconds: float,
    rate: float,
    workdir: Path,
) -> HangResult:
    """Give every object in ``names`` a continuous watch (the first ``hanging`` through a hanging
    Prometheus), wait until each has been checked once since, then measure ``seconds`` of checks
    (``checks`` must be observing the benchmark's watch)."""
    hung = set(names[:hanging])
    with Prometheus(workdir, scrape_interval=15.0) as answering, HangingPrometheus() as stuck:
        print(f"continuous watch on all at {rate:g}/s, {len(hung)} through a hanging Prometheus", flush=True)
        patched: dict[Key, float] = {}
        began = time.monotonic()
        for i, key in enumerate(names):
            pause = began + i / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            address, timeout = (stuck.address, HANG_TIMEOUT) if key in hung else (answering.url, 10)
            change = {"spec": {"analysis": watch_analysis(address, interval, timeout)}}
            patched[key] = time.time()
            api.patch_namespaced_custom_object(GROUP, VERSION, key[0], PLURAL, key[1], change)
        answered = [k for k in names if k not in hung]
        wait_for(
            lambda: all(any(s >= patched[k] for s in checks.stamps(k)) for k in answered),
            3 * interval + 120, "every answered object checked since its watch began", interval=2,
        )  # fmt: skip
        print(f"measuring the checks' spacing for {seconds:.0f}s", flush=True)
        start = time.time()
        time.sleep(seconds)
        end = time.time()
        time.sleep(2)  # the last stamps' watch events
        held = len(stuck.held)
    stamps = checks.snapshot()
    return HangResult(
        interval,
        end - start,
        gaps(stamps, answered, start, end, interval),
        gaps(stamps, sorted(hung), start, end, interval),
        held,
    )
