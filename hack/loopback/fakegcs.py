"""A Google Cloud Storage stand-in on loopback: fsouza/fake-gcs-server, in memory, over plain HTTP.

Why this one: it builds from Go modules like the rest of the toolchain (``hack/build-tools.sh``),
starts in a fraction of a second, and serves both of GCS's download APIs, the XML API's
``GET /<bucket>/<object>`` (what the model server uses; it answers it when the request's host is its
``-public-host``, here its own address) and the JSON API's uploads (what :meth:`FakeGcs.put` uses).
It checks no credentials at all: the tests put :class:`hack.loopback.authproxy.BearerProxy` in front
of it to refuse a wrong token, and the HMAC path is checked against versitygw's SigV4 instead.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Self

from hack.loopback.cluster import BIN
from hack.loopback.procs import LoopbackProcess, find_tool, free_port, http_answers


class FakeGcsNotBuiltError(RuntimeError):
    """No fake-gcs-server binary: ``make deps`` (hack/build-tools.sh) builds it."""


def find_binary() -> Path:
    return find_tool(BIN / "fake-gcs-server", "FAKE_GCS_SERVER_BINARY", FakeGcsNotBuiltError, "run `make deps`")


class FakeGcs(LoopbackProcess):
    """``with FakeGcs(tmp_path) as gcs: gcs.put("models", "fraud/model.onnx", data)`` -> ``gs://models/...``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.binary = find_binary()
        self.port = free_port()
        self.log_path = self.workdir / "fake-gcs-server.log"
        self.proc: subprocess.Popen | None = None
        self._buckets: set[str] = set()

    def start(self) -> Self:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
            "-public-host", f"127.0.0.1:{self.port}", "-backend", "memory", "-log-level", "warn",
        ]  # fmt: skip
        return self.launch(command, lambda: http_answers(f"{self.url}/storage/v1/b", lambda code: code == 200),
                           "fake-gcs-server")  # fmt: skip

    def _post(self, path: str, body: bytes, kind: str) -> None:
        request = urllib.request.Request(self.url + path, data=body, method="POST", headers={"Content-Type": kind})
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def create_bucket(self, bucket: str) -> None:
        try:
            self._post("/storage/v1/b?project=modelrollout", json.dumps({"name": bucket}).encode(), "application/json")
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already there
                raise
        self._buckets.add(bucket)

    def put(self, bucket: str, name: str, data: bytes) -> str:
        """Upload ``data`` as ``gs://bucket/name`` (the bucket made if missing); returns that URI."""
        if bucket not in self._buckets:
            self.create_bucket(bucket)
        query = urllib.parse.urlencode({"uploadType": "media", "name": name})
        self._post(f"/upload/storage/v1/b/{urllib.parse.quote(bucket)}/o?{query}", data, "application/octet-stream")
        return f"gs://{bucket}/{name}"
