"""A real S3-compatible object store on loopback: versitygw with its posix backend.

Why versitygw: it builds from Go modules like the rest of the toolchain (``hack/build-tools.sh``),
starts in well under a second, and checks every request's AWS Signature Version 4 against its root
user's keys, so the model server's signing and its handling of refused credentials meet a real S3
API rather than a mock. Buckets are directories under ``workdir/data``; they are private (an
unsigned request is refused). :meth:`ObjectStore.rotate` restarts it with new keys on the same data,
the way a credential rotation looks to a client.
"""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from modelserver.s3 import S3Config, object_url, signed_headers

from hack.loopback.cluster import BIN
from hack.loopback.procs import LoopbackProcess, find_tool, free_port, http_answers


class ObjectStoreNotBuiltError(RuntimeError):
    """No versitygw binary: ``make deps`` (hack/build-tools.sh) builds it."""


def find_binary() -> Path:
    return find_tool(BIN / "versitygw", "VERSITYGW_BINARY", ObjectStoreNotBuiltError, "run `make deps`")


class ObjectStore(LoopbackProcess):
    """``with ObjectStore(tmp_path, "AKID", "SECRET") as store: store.put("models", "fraud/model.onnx", data)``."""

    def __init__(self, workdir: Path, access_key: str, secret_key: str, region: str = "us-east-1") -> None:
        self.workdir = Path(workdir)
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.binary = find_binary()
        self.port = free_port()
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "versitygw.log"
        self.proc: subprocess.Popen | None = None

    @property
    def config(self) -> S3Config:
        """The client configuration that reaches this store with its current keys."""
        return S3Config(self.region, self.url, self.access_key, self.secret_key)

    def env(self, access_key: str | None = None, secret_key: str | None = None) -> dict[str, str]:
        """The AWS SDK environment a pod gets from ``model.storage`` (these keys unless others are given)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key if access_key is None else access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key if secret_key is None else secret_key,
        }

    def start(self) -> Self:
        if self.running:
            return self
        self.data.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary), "--port", f"127.0.0.1:{self.port}", "--access", self.access_key,
            "--secret", self.secret_key, "--region", self.region, "--quiet", "posix", str(self.data),
        ]  # fmt: skip
        # Any S3 answer (an unsigned request is refused) means it is serving.
        return self.launch(command, lambda: http_answers(self.url), "versitygw")

    def rotate(self, access_key: str, secret_key: str) -> None:
        """New root keys on the same data: the old ones are refused from now on."""
        self.stop()
        self.access_key, self.secret_key = access_key, secret_key
        self.start()

    def _send(self, method: str, url: str, body: bytes = b"") -> None:
        headers = signed_headers(self.config, url, method=method)
        request = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def create_bucket(self, bucket: str) -> None:
        self._send("PUT", f"{self.url}/{bucket}")

    def put(self, bucket: str, key: str, data: bytes) -> str:
        """Upload ``data`` as ``s3://bucket/key`` (the bucket made if missing); returns that URI."""
        if not (self.data / bucket).is_dir():
            self.create_bucket(bucket)
        self._send("PUT", object_url(self.config, bucket, key), data)
        return f"s3://{bucket}/{key}"
