"""A real OCI registry on loopback: the CNCF distribution registry with htpasswd users.

Why this one: it is the reference implementation of the OCI distribution spec (Docker Hub, GHCR and
Harbor speak the same protocol), it builds from Go modules like the rest of the toolchain
(``hack/build-tools.sh``), and with an htpasswd file every request needs credentials, so the model
server's challenge handling meets a real 401. :meth:`Registry.push` uploads files as one OCI
artifact the way ``oras push`` does (each layer titled with its file name).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import bcrypt
import yaml

from hack.loopback.cluster import BIN
from hack.loopback.procs import LoopbackProcess, find_tool, free_port, http_answers

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
ARTIFACT = "application/vnd.modelrollout.model.v1"


class RegistryNotBuiltError(RuntimeError):
    """No registry binary: ``make deps`` (hack/build-tools.sh) builds it."""


def find_binary() -> Path:
    return find_tool(BIN / "registry", "REGISTRY_BINARY", RegistryNotBuiltError, "run `make deps`")


def docker_config(directory: Path, host: str, user: str, password: str) -> Path:
    """A ``config.json`` as ``docker login`` (and a dockerconfigjson Secret) writes it; returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


class Registry(LoopbackProcess):
    """``with Registry(tmp_path, {"ci": "secret"}) as registry: registry.push("models/fraud", "v1", files)``."""

    def __init__(self, workdir: Path, users: Mapping[str, str]) -> None:
        self.workdir = Path(workdir)
        self.users = dict(users)
        self.binary = find_binary()
        self.port = free_port()
        self.log_path = self.workdir / "registry.log"
        self.proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(
            "".join(
                f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n" for u, p in self.users.items()
            )
        )
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")}},
            "http": {"addr": self.host},
            "auth": {"htpasswd": {"realm": "modelrollout-test", "path": str(htpasswd)}},
        }
        (self.workdir / "config.yml").write_text(yaml.safe_dump(config))
        command = [str(self.binary), "serve", str(self.workdir / "config.yml")]
        # Serving, and asking for credentials.
        return self.launch(command, lambda: http_answers(f"{self.url}/v2/", lambda code: code == 401), "registry")

    def _request(self, method: str, url: str, body: bytes = b"", content_type: str = "") -> urllib.request.Request:
        user, password = next(iter(self.users.items()))
        headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
        if content_type:
            headers["Content-Type"] = content_type
        return urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                      headers=headers)  # fmt: skip

    def _blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = self._request("POST", f"{self.url}/v2/{repository}/blobs/uploads/")
        with urllib.request.urlopen(start, timeout=30) as answer:
            location = urllib.parse.urljoin(self.url, answer.headers["Location"])
        separator = "&" if "?" in location else "?"
        put = self._request("PUT", f"{location}{separator}digest={digest}", data, "application/octet-stream")
        with urllib.request.urlopen(put, timeout=30) as answer:
            answer.read()
        return digest

    def push(self, repository: str, tag: str, files: Mapping[str, bytes]) -> str:
        """Upload ``files`` as one artifact tagged ``tag``; returns the manifest's digest."""
        config = self._blob(repository, b"{}")
        layers = [
            {"mediaType": LAYER, "digest": self._blob(repository, data), "size": len(data),
             "annotations": {"org.opencontainers.image.title": name}}
            for name, data in files.items()
        ]  # fmt: skip
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": ARTIFACT,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config, "size": 2}, "layers": layers,
        }).encode()  # fmt: skip
        put = self._request("PUT", f"{self.url}/v2/{repository}/manifests/{tag}", manifest, MANIFEST)
        with urllib.request.urlopen(put, timeout=30) as answer:
            answer.read()
        return "sha256:" + hashlib.sha256(manifest).hexdigest()
