"""Throwaway X.509 material for loopback TLS: a CA, and server and client certificates it signs.

Why the ``openssl`` command rather than a Python library: it is on every machine the test bed runs
on (``hack/system-deps.sh``) and adds no dependency; the files are what any TLS server (Prometheus'
web config) and client (requests) read. Keys are EC P-256 (fast to make), valid for one day.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "ca") -> Issued:
    """A self-signed CA certificate under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _key(ca.key)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca.key), "-out", str(ca.cert), "-days", "1",
        "-subj", f"/CN=modelrollout test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
    )  # fmt: skip
    return ca


def issue(ca: Issued, directory: Path, name: str, *, client: bool = False) -> Issued:
    """A certificate for ``name`` signed by ``ca``: a server certificate for 127.0.0.1 and
    localhost, or (``client``) a client certificate with ``name`` as its common name."""
    issued = Issued(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _key(issued.key)
    csr = directory / f"{name}.csr"
    _openssl("req", "-new", "-key", str(issued.key), "-out", str(csr), "-subj", f"/CN={name}")
    extensions = directory / f"{name}.ext"
    if client:
        extensions.write_text("extendedKeyUsage=clientAuth\n")
    else:
        extensions.write_text("extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-out", str(issued.cert), "-days", "1", "-extfile", str(extensions),
    )  # fmt: skip
    return issued
