"""A kubelet on loopback: real model-server processes for the pods the operator creates.

kwok leaves pods labelled ``modelrollout.io/simulate=harness`` alone (hack/kwok/stages.yaml). This
runner plays their kubelet: for every such pod it starts ``python -m modelserver`` with the pod's own
container args on a free loopback port, reports the pod Running, and marks it Ready only while the
server's ``/v2/health/ready`` answers 200 — so the operator's readiness decisions rest on real
warmup, and a model that never gets ready (say, a sha256 mismatch) keeps its pod unready. Deleted
pods have their process stopped. ``targets()`` lists what is running, for Prometheus and for the
traffic generator.

Secret volumes are honoured as kubelet honours them: the Secret is read, its keys are written as
files (with the volume's ``defaultMode``) into a directory of the pod's own, and the container's
args see that directory where the pod spec mounts the volume (``--feedback-key-file=/var/run/...``
becomes the local path). A pod whose Secret does not exist yet is not started (kubelet's
``ContainerCreating``); the next sync tries again. Environment variables from ``secretKeyRef`` are
read when the process starts, as kubelet reads them when a container starts.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.loopback.procs import free_port, stop_process

SIMULATE_LABEL = "modelrollout.io/simulate"
REVISION_LABEL = "modelrollout.io/revision"
DEPLOYMENT_LABEL = "modelrollout.io/deployment"
DRAIN_SECONDS = 1.0  # > the gateway's 0.2 s route refresh: a real data plane lags endpoint removal too
log = logging.getLogger(__name__)


@dataclass
class PodProcess:
    """One pod's model server."""

    pod: str
    revision: str
    port: int
    proc: subprocess.Popen
    deployment: str = ""
    ready: bool = False
    failures: int = 0  # consecutive failed readiness probes
    started_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    restarts: int = 0
    restart_at: float | None = None  # monotonic time of the next start after the process exited
    last_exit: dict | None = None  # lastState.terminated of the container
    reported: tuple = ()  # what _report last wrote, so it writes only changes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def server_command(args: list[str], port: int, mounts: dict[str, Path] | None = None) -> list[str]:
    """The pod's container args, with host and port moved to a free loopback port and mounted
    paths (``mountPath -> local directory``) pointing at the local copies of their volumes."""
    kept = [remap(a, mounts or {}) for a in args if not a.startswith(("--host=", "--port=", "--grpc-port="))]
    # Every pod shares 127.0.0.1 here: HTTP gets a free port, gRPC is off (tests/server covers it).
    return [sys.executable, "-m", "modelserver", *kept, "--host=127.0.0.1", f"--port={port}", "--grpc-port=0"]


def remap(arg: str, mounts: dict[str, Path]) -> str:
    """Replace a mount path (a whole path component) in ``arg`` with its local directory."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        at = arg.find(mount_path)
        end = at + len(mount_path)
        if at >= 0 and (end == len(arg) or arg[end] == "/"):
            return arg[:at] + str(mounts[mount_path]) + arg[end:]
    return arg


class VolumeNotReadyError(Exception):
    """A volume's source does not exist yet: kubelet would keep the pod in ContainerCreating."""


class ConfigNotReadyError(VolumeNotReadyError):
    """An env var's Secret or key is missing: kubelet's ``CreateContainerConfigError``."""


def restart_backoff(restarts: int) -> float:
    """Seconds before a crashed container starts again: kubelet's doubling back-off, scaled down
    (1 s, 2 s, 4 s, capped at 8 s instead of 10 s ... 5 min) so tests see a restart in seconds."""
    return float(min(8, 2**restarts))


def _failure_threshold(pod: client.V1Pod) -> int:
    probe = pod.spec.containers[0].readiness_probe
    return (probe.failure_threshold if probe is not None else None) or 3


def _probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=0.5) as resp:
            return resp.status == 200
    except OSError:
        return False


class PodRunner:
    """Watches one namespace and keeps a model-server process per harness pod. Use as a context manager."""

    def __init__(self, api_client: client.ApiClient, namespace: str, log_dir: Path, poll: float = 0.25):
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.log_dir = log_dir
        self.poll = poll
        self.pods: dict[str, PodProcess] = {}
        self.deleted_at: dict[str, float] = {}  # pod name -> monotonic time its deletion was seen
        self._lock = threading.Lock()
        self._draining: dict[str, float] = {}  # pod name -> monotonic time its process stops
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"podrunner-{namespace}", daemon=True)

    def __enter__(self) -> PodRunner:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            for pod in list(self.pods):
                self._stop_pod(pod, drained=pod in self._draining)

    def targets(self) -> list[PodProcess]:
        """Pods whose server is running and ready (what a Service would route to)."""
        with self._lock:
            return [p for p in self.pods.values() if p.ready and p.proc.poll() is None]

    def by_revision(self) -> dict[str, list[PodProcess]]:
        out: dict[str, list[PodProcess]] = {}
        for p in self.targets():
            out.setdefault(p.revision, []).append(p)
        return out

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception:  # the harness must outlive a transient API error
                log.exception("pod runner sync failed")
            self._stop.wait(self.poll)

    def _sync(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{SIMULATE_LABEL}=harness").items
        live = {p.metadata.name: p for p in pods if not p.metadata.deletion_timestamp}
        now = time.monotonic()
        with self._lock:
            # A deleted pod gets SIGTERM at once, as kubelet sends it, and drains (the server's own
            # --drain-seconds: unready, still serving) while the gateway still routes to it for
            # DRAIN_SECONDS, the lag of a real data plane; then its process is stopped (a second
            # SIGTERM ends a server's drain early: what it has in flight is finished).
            for name in set(self.pods) - set(live):
                if name not in self._draining:
                    self._draining[name] = now + DRAIN_SECONDS
                    with contextlib.suppress(ProcessLookupError):
                        self.pods[name].proc.send_signal(signal.SIGTERM)
                self.deleted_at.setdefault(name, now)
            for name, until in list(self._draining.items()):
                if name in live:
                    del self._draining[name]
                elif now >= until:
                    del self._draining[name]
                    self._stop_pod(name)
            for name, pod in live.items():
                if name not in self.pods and pod.spec.node_name:
                    self._start_pod(pod)
                if name in self.pods:
                    self._restart_if_due(pod, self.pods[name], now)
                    self._report(pod, self.pods[name])

    def _start_pod(self, pod: client.V1Pod) -> None:
        launched = self._launch(pod)
        if launched is None:
            return
        port, proc = launched
        labels = pod.metadata.labels or {}
        self.pods[pod.metadata.name] = PodProcess(
            pod.metadata.name, labels.get(REVISION_LABEL, ""), port, proc, labels.get(DEPLOYMENT_LABEL, "")
        )

    def _launch(self, pod: client.V1Pod) -> tuple[int, subprocess.Popen] | None:
        """Start the pod's container process, its volumes and env resolved now; None while they
        cannot be (a missing Secret: reported as kubelet reports it, and tried again next sync)."""
        container = pod.spec.containers[0]
        try:
            mounts = self._mount_volumes(pod, container)
            env = {**os.environ, **{k: remap(v, mounts) for k, v in self._environment(container).items()}}
        except ConfigNotReadyError as exc:
            self._report_waiting(pod, "CreateContainerConfigError", str(exc))
            return None
        except VolumeNotReadyError as exc:
            log.info("pod %s waits for its volumes: %s", pod.metadata.name, exc)
            return None
        env["MODELSERVER_TERMINATION_MESSAGE_PATH"] = str(self._termination_path(pod.metadata.name))
        port = free_port()
        out = open(self.log_dir / f"{pod.metadata.name}.log", "a")  # noqa: SIM115 - the child writes to it
        proc = subprocess.Popen(
            server_command(container.args or [], port, mounts), stdout=out, stderr=subprocess.STDOUT, env=env
        )
        return port, proc

    def _termination_path(self, pod: str) -> Path:
        return self.log_dir / f"{pod}.termination-log"

    def _restart_if_due(self, pod: client.V1Pod, p: PodProcess, now: float) -> None:
        """A container that exited is started again after a back-off, as kubelet does
        (``restartPolicy: Always``), with its environment read anew."""
        if p.proc.poll() is None:
            return
        if p.restart_at is None:
            path = self._termination_path(p.pod)
            message = path.read_text() if path.exists() else ""
            p.last_exit = {"exitCode": p.proc.returncode, "reason": "Error" if p.proc.returncode else "Completed",
                           "message": message}  # fmt: skip
            p.restart_at = now + restart_backoff(p.restarts)
            return
        if now < p.restart_at:
            return
        launched = self._launch(pod)
        if launched is not None:
            p.port, p.proc = launched
            p.restarts, p.restart_at, p.ready, p.failures = p.restarts + 1, None, False, 0

    def _report_waiting(self, pod: client.V1Pod, reason: str, message: str) -> None:
        """A container that could not be created, in the pod's status as kubelet writes it."""
        container = pod.spec.containers[0]
        body = {"status": {"phase": "Pending", "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": False, "started": False,
            "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}},
        }]}}  # fmt: skip
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, body)

    def _environment(self, container: client.V1Container) -> dict[str, str]:
        """The container's env as kubelet resolves it at container start: plain values, and
        ``secretKeyRef`` read from the Secret now (a missing Secret or key that is not optional
        keeps the container from starting, kubelet's ``CreateContainerConfigError``)."""
        env: dict[str, str] = {}
        for var in container.env or []:
            ref = var.value_from.secret_key_ref if var.value_from is not None else None
            if ref is None:
                env[var.name] = var.value or ""
                continue
            try:
                data = self.core.read_namespaced_secret(ref.name, self.namespace).data or {}
            except ApiException as exc:
                if exc.status == 404 and ref.optional:
                    continue
                if exc.status == 404:
                    raise ConfigNotReadyError(f'secret "{ref.name}" not found') from None
                raise ConfigNotReadyError(f"secret {ref.name!r}: {exc.status} {exc.reason}") from None
            if ref.key not in data:
                if ref.optional:
                    continue
                raise ConfigNotReadyError(f"couldn't find key {ref.key} in Secret {self.namespace}/{ref.name}")
            env[var.name] = base64.b64decode(data[ref.key]).decode()
        return env

    def _mount_volumes(self, pod: client.V1Pod, container: client.V1Container) -> dict[str, Path]:
        """Materialise the container's Secret volumes like kubelet; ``mountPath -> local directory``."""
        volumes = {v.name: v for v in pod.spec.volumes or []}
        mounts: dict[str, Path] = {}
        for mount in container.volume_mounts or []:
            volume = volumes.get(mount.name)
            if volume is None or volume.secret is None:
                continue  # emptyDir and friends: the process uses the host's directories
            target = self.log_dir / "volumes" / pod.metadata.name / mount.name
            self._write_secret(volume.secret, target)
            mounts[mount.mount_path] = target
        return mounts

    def _write_secret(self, source: client.V1SecretVolumeSource, target: Path) -> None:
        try:
            secret = self.core.read_namespaced_secret(source.secret_name, self.namespace)
        except ApiException as exc:
            if exc.status == 404 and source.optional:
                target.mkdir(parents=True, exist_ok=True)
                return
            raise VolumeNotReadyError(f"secret {source.secret_name!r}: {exc.status} {exc.reason}") from None
        data = secret.data or {}
        items = {i.key: i.path for i in source.items or []} or {key: key for key in data}
        missing = [key for key in items if key not in data]
        if missing:
            raise VolumeNotReadyError(f"secret {source.secret_name!r} has no key {missing[0]!r}")
        target.mkdir(parents=True, exist_ok=True)
        mode = source.default_mode if source.default_mode is not None else 0o644
        for key, path in items.items():
            file = target / path
            file.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                file.chmod(0o600)  # a restarted pod of the same name rewrites its copy
            file.write_bytes(base64.b64decode(data[key]))
            file.chmod(mode)

    def _stop_pod(self, name: str, drained: bool = True) -> None:
        """Stop the pod's server. A server with ``--drain-seconds`` drains on its first SIGTERM and
        stops at the second; a pod that was not deleted first (the harness's own teardown) gets its
        first SIGTERM here, a moment before stop_process's (two signals sent at once arrive as one,
        and every pod would then wait out its drain)."""
        proc = self.pods.pop(name).proc
        if not drained and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        stop_process(proc, grace=5)

    def _report(self, pod: client.V1Pod, p: PodProcess) -> None:
        """Patch the pod status like a kubelet would, only when readiness changed.

        Like kubelet, a ready pod turns unready after ``failureThreshold`` failed probes in a row
        (one slow answer on a busy machine is not an outage); a dead process is unready at once.
        """
        alive = p.proc.poll() is None
        if alive and _probe(p.url):
            p.failures, ready = 0, True
        else:
            p.failures += 1
            ready = alive and p.ready and p.failures < _failure_threshold(pod)
        current = next((c.status for c in pod.status.conditions or [] if c.type == "Ready"), None)
        p.ready = ready
        seen = (ready, alive, p.restarts)
        if pod.status.phase == "Running" and current == str(ready) and p.reported == seen:
            return
        p.reported = seen
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        flag = "True" if ready else "False"
        body = {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": p.started_at,
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": p.started_at},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": p.started_at},
                    {"type": "ContainersReady", "status": flag, "lastTransitionTime": now},
                    {"type": "Ready", "status": flag, "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {
                        "name": pod.spec.containers[0].name,
                        "image": pod.spec.containers[0].image,
                        "imageID": "",
                        "ready": ready,
                        "started": alive,
                        "restartCount": p.restarts,
                        "state": {"running": {"startedAt": p.started_at}}
                        if alive
                        else {
                            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}
                        },
                        **({"lastState": {"terminated": p.last_exit}} if p.last_exit else {}),
                    }
                ],
            }
        }
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, body)


def wait_ready(runner: PodRunner, revision: str, count: int, timeout: float) -> list[PodProcess]:
    """Block until ``count`` pods of ``revision`` serve; fail loudly with their logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = runner.by_revision().get(revision, [])
        if len(got) >= count:
            return got
        time.sleep(0.2)
    raise AssertionError(f"revision {revision}: fewer than {count} ready pods after {timeout}s")
