"""bench-operator's one watch of every ModelDeployment, resumed where it left off.

The benchmark reads everything it reports about the objects (when a generation first showed, when
the operator first wrote its status for it, which are stable, every ``lastCheckAt``) from this one
watch. It resumes from the last resourceVersion delivered whenever the API server ends it, so it
neither skips an intermediate status nor makes the API server send all 1,000 objects again: a
watch started afresh, or a ``kubectl get -A -o json`` poll, costs the server a full answer of
every object each time, load that lands on the very API server whose latency the benchmark
measures. It lists again only when the server has expired that version (410); ``lists`` counts
every listing, the first included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "modelrollout.io", "v1alpha1", "modeldeployments"

Observer = Callable[[dict[str, Any], float], None]
"""Called with every object the watch delivers and the wall-clock time it arrived."""


class ResumedWatch:
    def __init__(self, api: client.CustomObjectsApi, observers: list[Observer]) -> None:
        self.api = api
        self.observers = observers
        self.lists = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def _deliver(self, obj: dict[str, Any]) -> None:
        now = time.time()
        for observe in self.observers:
            observe(obj, now)

    def run(self) -> None:
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listing = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                    for obj in listing["items"]:
                        self._deliver(obj)
                    version = listing["metadata"]["resourceVersion"]
                    self.lists += 1
                stream = watch.Watch().stream(
                    self.api.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                    resource_version=version, timeout_seconds=60,
                )  # fmt: skip
                for event in stream:
                    if event["type"] == "ERROR":  # the version expired: list again
                        version = None
                        break
                    obj: dict[str, Any] = event["object"]
                    self._deliver(obj)
                    version = obj["metadata"]["resourceVersion"]
                    if self.stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                elif not self.stop.is_set():
                    time.sleep(1)
            except Exception as exc:  # a dropped connection (API server busy or stopping): resume
                if not self.stop.is_set():
                    print(f"  watch resumed after {type(exc).__name__}", flush=True)
                    time.sleep(1)
