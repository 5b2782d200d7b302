"""A real Azure Blob Storage API on loopback: Azurite's blob service with its own account and key.

Why Azurite: it is Microsoft's emulator of the Blob REST API, installed from its pinned npm package
by ``hack/build-tools.sh azurite``; it starts in about a second and checks every Shared Key signature
and every SAS against the account's key, so the model server's signing and its handling of refused
credentials meet the real protocol rather than a mock. The account comes from ``AZURITE_ACCOUNTS``
(Azurite's own setting; the well-known ``devstoreaccount1`` is off then), so :meth:`Azurite.rotate`
restarts it with a new key on the same data (``--location``), the way a key rotation looks to a
client. Containers are created private (no public access level): an anonymous request is refused.
"""

from __future__ import annotations

import base64
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

from modelserver.azure import API_VERSION, AzureConfig, Blob, blob_url, sign, signed_headers

from hack.loopback.cluster import BIN
from hack.loopback.procs import LoopbackProcess, find_tool, free_port, http_answers


class AzuriteNotInstalledError(RuntimeError):
    """No azurite-blob: ``make azurite`` (``hack/build-tools.sh azurite``, part of ``make test``) installs it."""


def find_binary() -> Path:
    return find_tool(BIN / "azurite-blob", "AZURITE_BLOB_BINARY", AzuriteNotInstalledError,
                     "run `make azurite` (hack/build-tools.sh azurite)")  # fmt: skip


def new_key(seed: str) -> str:
    """A 64-byte base64 account key (the shape Azure's keys have), derived from ``seed`` for readability."""
    return base64.b64encode(seed.encode().ljust(64, b"k")[:64]).decode()


def account_sas(account: str, key: str, permissions: str = "r", hours: float = 1.0) -> str:
    """An account SAS for the Blob service's objects, signed as Microsoft documents it (version 2020-12-06
    and later: the signed fields one per line, the empty encryption scope included); returns the query."""
    expiry = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = {"sv": API_VERSION, "ss": "b", "srt": "o", "sp": permissions, "se": expiry}
    text = "\n".join([account, permissions, "b", "o", "", expiry, "", "", API_VERSION, "", ""])
    return urllib.parse.urlencode({**fields, "sig": sign(key, text)})


class Azurite(LoopbackProcess):
    """``with Azurite(tmp_path, "modelstore", key) as store: store.put("models", "fraud/model.onnx", data)``."""

    def __init__(self, workdir: Path, account: str, key: str) -> None:
        self.workdir = Path(workdir)
        self.account, self.key = account, key
        self.binary = find_binary()
        self.port = free_port()
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "azurite.log"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        """The account's Blob endpoint, path-style: what ``AZURE_STORAGE_BLOB_ENDPOINT`` is set to."""
        return f"{self.url}/{self.account}"

    @property
    def config(self) -> AzureConfig:
        return AzureConfig(self.endpoint, self.key)

    def env(self, key: str | None = None) -> dict[str, str]:
        """The environment a pod gets from ``model.storage`` (this key unless another is given)."""
        return {"AZURE_STORAGE_BLOB_ENDPOINT": self.endpoint, "AZURE_STORAGE_KEY": self.key if key is None else key}

    def sas_env(self, permissions: str = "r") -> dict[str, str]:
        """A pod's environment with a read-only account SAS instead of the key."""
        return {"AZURE_STORAGE_BLOB_ENDPOINT": self.endpoint,
                "AZURE_STORAGE_SAS_TOKEN": account_sas(self.account, self.key, permissions)}  # fmt: skip

    def start(self) -> Self:
        if self.running:
            return self
        self.data.mkdir(parents=True, exist_ok=True)
        command = [
            str(self.binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.data),
            "--disableProductStyleUrl", "--disableTelemetry", "--silent",
        ]  # fmt: skip
        # Any Blob API answer (an anonymous listing is refused) means it is serving.
        env = {**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.key}"}
        return self.launch(command, lambda: http_answers(f"{self.endpoint}?comp=list"), "azurite", env, self.workdir)

    def rotate(self, key: str) -> None:
        """A new account key on the same data: the old one is refused from now on."""
        self.stop()
        self.key = key
        self.start()

    def _send(self, url: str, blob: Blob, body: bytes, headers: dict[str, str]) -> None:
        sent = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream", **headers}
        signed = signed_headers(self.config, blob, url, method="PUT", headers=sent)
        request = urllib.request.Request(url, data=body, method="PUT", headers=signed)
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def create_container(self, container: str) -> None:
        """A private container (no ``x-ms-blob-public-access``); one that exists already is fine."""
        try:
            self._send(f"{self.endpoint}/{container}?restype=container", Blob(self.account, container, ""), b"", {})
        except urllib.error.HTTPError as exc:
            if exc.headers.get("x-ms-error-code") != "ContainerAlreadyExists":
                raise

    def put(self, container: str, path: str, data: bytes) -> str:
        """Upload ``data`` as a block blob (the container made if missing); returns its ``azure://`` URI."""
        self.create_container(container)
        blob = Blob(self.account, container, path)
        self._send(blob_url(self.config, blob), blob, data, {"x-ms-blob-type": "BlockBlob"})
        return f"azure://{self.account}/{container}/{path}"
