"""Retraining runs started by sustained drift: names, the report a run receives, and its backoff.

Pure helpers for the engine (which decides when a run starts and how it ended) and the shell (which
creates the Job). Why a deterministic name per run, ``<name>-retrain-<n>``: the shell carries out
a decision's actions before it writes the status, so an operator that dies in between makes the
same decision again after its restart, asks for the same Job, and the API server's AlreadyExists
keeps it to exactly one run.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from typing import Any

from modelrollout import workloads
from modelrollout.api.types import GROUP, DriftStatus, RetrainingSpec
from modelrollout.durations import parse_duration

REPORT_VERSION = 1
LABEL_RETRAINING = f"{GROUP}/retraining"
"""On a retraining Job and its pods: the ModelDeployment that started it."""
ANNOTATION_REVISION = f"{GROUP}/drifted-revision"


def job_name(name: str, run: int) -> str:
    """The Job of run ``run`` of ModelDeployment ``name`` (kept within the 63 characters a Job's
    name may have, because its pods carry it in a label)."""
    suffix = f"-retrain-{run}"
    return name[: 63 - len(suffix)].rstrip("-") + suffix


def backoff(spec: RetrainingSpec, failures: int, job: str) -> timedelta:
    """The wait after ``failures`` failed runs in a row: ``backoff * 2^(failures-1)`` up to
    ``maxBackoff``, with equal jitter (between half and all of it) so that many ModelDeployments that
    failed together do not retry together. The jitter is a hash of the Job's name, not a random draw,
    so the engine stays a function of its inputs."""
    base = parse_duration(spec.backoff) * 2 ** max(failures - 1, 0)
    capped = min(base, parse_duration(spec.maxBackoff))
    share = (zlib.crc32(job.encode()) % 1000) / 1000  # 0 <= share < 1
    return timedelta(seconds=capped * (0.5 + 0.5 * share))


def report(
    namespace: str, name: str, revision: str, model_uri: str, drift: DriftStatus, now: datetime
) -> dict[str, Any]:
    """What the Job is told (``MODELROLLOUT_DRIFT_REPORT``, docs/drift.md): which revision and model
    drifted, since when, and each drifted feature with its PSI, p-value and sample count."""
    return {
        "version": REPORT_VERSION,
        "namespace": namespace,
        "modelDeployment": name,
        "revision": revision,
        "modelURI": model_uri,
        "driftedSince": drift.since.isoformat() if drift.since else None,
        "time": now.isoformat(),
        "features": [f.model_dump(mode="json") for f in drift.features],
    }


def build_job(
    owner: dict[str, Any], spec: RetrainingSpec, job: str, revision: str, model_uri: str, report_json: str
) -> dict[str, Any]:
    """The Job of one retraining run: the user's container with the drift report and the current model in
    its environment, owned by the ModelDeployment (deleted with it), never retried by the operator
    (a failed run is the next run, after the backoff)."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    labels = {**workloads.MANAGED_BY, LABEL_RETRAINING: name}
    given = [workloads.env_entry(e) for e in spec.job.env]
    ours = {
        "MODELROLLOUT_DRIFT_REPORT": report_json,
        "MODELROLLOUT_MODEL_URI": model_uri,
        "MODELROLLOUT_REVISION": revision,
        "MODELROLLOUT_NAME": name,
        "MODELROLLOUT_NAMESPACE": namespace,
    }
    container: dict[str, Any] = {
        "name": "retrain",
        "image": spec.job.image,
        "env": [e for e in given if e["name"] not in ours] + [{"name": k, "value": v} for k, v in ours.items()],
        "resources": workloads.container_resources(spec.job.resources),
    }
    if spec.job.command:
        container["command"] = spec.job.command
    if spec.job.args:
        container["args"] = spec.job.args
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if spec.job.serviceAccountName:
        pod["serviceAccountName"] = spec.job.serviceAccountName
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANNOTATION_REVISION: revision},
            "ownerReferences": [workloads.owner_reference(owner)],
        },
        "spec": {
            "backoffLimit": spec.job.backoffLimit,
            "activeDeadlineSeconds": spec.job.activeDeadlineSeconds,
            "template": {
                "metadata": {"labels": {**spec.job.podLabels, **labels}, "annotations": dict(spec.job.podAnnotations)},
                "spec": pod,
            },
        },
    }
