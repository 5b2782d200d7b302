"""A kubelet on loopback for Job pods: runs a pod's container command as a local process.

kwok leaves pods labelled ``modelrollout.io/simulate=harness-job`` alone (hack/kwok/stages.yaml).
The real Job controller creates them; this runner plays their kubelet: it starts the container's
``command`` + ``args`` on this machine (``python`` being this interpreter, ``kubectl`` the local
control plane's) with the container's plain env values, reports the pod Running, and when the
process exits reports it Succeeded or Failed with the exit code, as kubelet does for
``restartPolicy: Never``. The Job controller then completes or fails the Job. The image is not
pulled: the demo's retraining Job (``examples/retraining/train.py``) runs from the repository.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.loopback.cluster import BIN
from hack.loopback.pods import SIMULATE_LABEL
from hack.loopback.procs import REPO, stop_process

JOB_POD = "harness-job"
log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_command(container: client.V1Container) -> list[str]:
    """The container's command and args, ``python`` run by this interpreter."""
    argv = [*(container.command or []), *(container.args or [])]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


class JobPodRunner:
    """Watches one namespace and runs each harness Job pod once. Use as a context manager."""

    def __init__(
        self, api_client: client.ApiClient, namespace: str, log_dir: Path, kubeconfig: Path, poll: float = 0.5
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace, self.log_dir, self.kubeconfig, self.poll = namespace, log_dir, kubeconfig, poll
        self.procs: dict[str, subprocess.Popen] = {}
        self.finished: dict[str, int] = {}  # pod -> exit code
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"jobpods-{namespace}", daemon=True)

    def __enter__(self) -> JobPodRunner:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        for proc in self.procs.values():
            stop_process(proc, grace=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception:  # the harness must outlive a transient API error
                log.exception("job pod runner sync failed")
            self._stop.wait(self.poll)

    def _sync(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{SIMULATE_LABEL}={JOB_POD}").items
        for pod in pods:
            name = pod.metadata.name
            if pod.metadata.deletion_timestamp or not pod.spec.node_name or name in self.finished:
                if name in self.procs and pod.metadata.deletion_timestamp:
                    stop_process(self.procs.pop(name), grace=5)
                continue
            if name not in self.procs:
                self._start(pod)
            elif (code := self.procs[name].poll()) is not None:
                del self.procs[name]
                self.finished[name] = code
                self._report_exit(pod, code)

    def _start(self, pod: client.V1Pod) -> None:
        container = pod.spec.containers[0]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": f"{BIN}:{os.environ['PATH']}",
               "JOB_NAME": (pod.metadata.labels or {}).get("job-name", "")}  # fmt: skip
        env.update({v.name: v.value or "" for v in container.env or [] if v.value_from is None})
        out = open(self.log_dir / f"{pod.metadata.name}.log", "a")  # noqa: SIM115 - the child writes to it
        self.procs[pod.metadata.name] = subprocess.Popen(
            job_command(container), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )
        status = {"phase": "Running", "startTime": _now(), "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": True, "started": True,
            "restartCount": 0, "state": {"running": {"startedAt": _now()}},
        }]}  # fmt: skip
        self._patch(pod, status)

    def _report_exit(self, pod: client.V1Pod, code: int) -> None:
        container = pod.spec.containers[0]
        reason = "Completed" if code == 0 else "Error"
        status = {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason, "finishedAt": _now()}},
        }]}  # fmt: skip
        self._patch(pod, status)

    def _patch(self, pod: client.V1Pod, status: dict) -> None:
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})
