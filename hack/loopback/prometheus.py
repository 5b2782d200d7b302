"""A real Prometheus server as a plain child process, with a target list tests rewrite at runtime.

Why file-based service discovery: the operator e2e starts and stops model-server processes as the
operator scales revision Deployments, and Prometheus must follow without a restart (a restart would
drop in-memory samples and add seconds). Prometheus watches the ``file_sd`` file with inotify and
picks up an atomically replaced file within about a second; each target carries the labels the
operator's real scrape configuration would add (``namespace``, ``pod``), which the built-in gate
queries select on.

Usage::

    with Prometheus(tmp_path / "prom", scrape_interval=1.0) as prom:
        prom.set_targets([Target("127.0.0.1:8081", {"namespace": "ml", "pod": "fraud-r1-0"})])
        prom.wait_targets_up(1)
        prom.wait_for_value('sum(modelserver_ready{namespace="ml"})', lambda v: v >= 1)
        print(prom.query_value('up{pod="fraud-r1-0"}'))

``pause()``/``resume()`` (SIGSTOP/SIGCONT) make the server hang with its socket still accepting, the
realistic way to exercise query timeouts; ``stop()`` makes it refuse connections.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import bcrypt
import requests
import yaml

from hack.loopback.certs import Issued
from hack.loopback.procs import LoopbackProcess, free_port, wait_for

DEFAULT_BINARY = "/usr/bin/prometheus"


class PrometheusNotInstalledError(RuntimeError):
    """No ``prometheus`` binary: install the Debian package (``make system-deps``)."""


@dataclass(frozen=True)
class Target:
    """One scrape target: ``host:port`` and the target labels Prometheus attaches to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_file_sd(self) -> dict[str, Any]:
        return {"targets": [self.address], "labels": dict(self.labels)}


def find_binary(binary: str | None = None) -> str:
    """The Prometheus executable: ``binary``, ``$PROMETHEUS_BINARY``, ``prometheus`` on PATH or the Debian path."""
    for candidate in (binary, os.environ.get("PROMETHEUS_BINARY"), shutil.which("prometheus"), DEFAULT_BINARY):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PrometheusNotInstalledError(
        "prometheus is not installed: run `make system-deps` (Debian package `prometheus`) or set PROMETHEUS_BINARY"
    )


@dataclass(frozen=True)
class WebSecurity:
    """Prometheus' own ``--web.config.file``: TLS with ``server`` (requiring a client certificate
    signed by ``client_ca`` when set) and basic-auth ``users`` (name -> password, stored bcrypt-hashed
    as Prometheus requires). The harness's own requests present ``client`` and the first user, and
    trust ``ca``."""

    server: Issued | None = None
    ca: Path | None = None
    client_ca: Path | None = None
    client: Issued | None = None
    users: Mapping[str, str] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if self.server is not None:
            tls: dict[str, Any] = {"cert_file": str(self.server.cert), "key_file": str(self.server.key)}
            if self.client_ca is not None:
                tls |= {"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(self.client_ca)}
            config["tls_server_config"] = tls
        if self.users:
            config["basic_auth_users"] = {
                user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
                for user, password in self.users.items()
            }
        return config

    def session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace ``verify``
        if self.ca is not None:
            session.verify = str(self.ca)
        if self.client is not None:
            session.cert = (str(self.client.cert), str(self.client.key))
        if self.users:
            session.auth = next(iter(self.users.items()))
        return session


class Prometheus(LoopbackProcess):
    """A Prometheus process on ``127.0.0.1:<port>`` with config, TSDB and logs under ``workdir``.

    ``scrape_interval`` is in seconds (1 s keeps tests quick; gate windows must then be >= ~4 s).
    Targets come from ``workdir/targets.json``; rewrite them with :meth:`set_targets`,
    :meth:`add_target`, :meth:`remove_target`. Start with :meth:`start` or ``with``; :meth:`stop`
    is idempotent and also works on a paused process.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_interval: float = 1.0,
        port: int | None = None,
        job: str = "modelserver",
        binary: str | None = None,
        extra_args: Iterable[str] = (),
        web: WebSecurity | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.job = job
        self.binary = find_binary(binary)
        self.extra_args = list(extra_args)
        self.web = web
        self.http = web.session() if web is not None else requests.Session()
        self.web_config_path = self.workdir / "web.yml"
        self.config_path = self.workdir / "prometheus.yml"
        self.targets_path = self.workdir / "targets.json"
        self.data_path = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self._targets: dict[str, Target] = {}

    # ------------------------------------------------------------------ lifecycle

    def write_config(self) -> None:
        """Write ``prometheus.yml``: one job scraping the file_sd list every ``scrape_interval``."""
        interval = _seconds(self.scrape_interval)
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "metrics_path": "/metrics",
                    "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "5s"}],
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 30.0) -> Prometheus:
        """Start the process and wait until ``/-/ready``; raises with the log tail if it dies."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_path.mkdir(exist_ok=True)
        self._write_targets()
        self.write_config()
        command = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_path}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=2h",
            "--log.level=info",
            *self.extra_args,
        ]
        if self.web is not None:
            self.web_config_path.write_text(yaml.safe_dump(self.web.config()))
            command.append(f"--web.config.file={self.web_config_path}")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir
            )
        try:
            wait_for(self._ready, timeout, f"Prometheus on port {self.port} to be ready")
        except TimeoutError as exc:
            self.stop()
            raise TimeoutError(f"{exc}\n--- prometheus.log ---\n{self.logs(2000)}") from None
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        """Base URL: ``https://`` when the web config serves TLS."""
        scheme = "https" if self.web is not None and self.web.server is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.http.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, grace: float = 10.0) -> None:
        """Stop the process (SIGTERM, SIGKILL after ``grace``); afterwards connections are refused."""
        super().stop(grace)
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP: the listening socket still accepts connections but nothing answers (a hung server)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.running and self.paused:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False

    # ------------------------------------------------------------------ targets

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Replace the whole target list (atomically, so Prometheus never reads a half-written file)."""
        self._targets = {t.address: t for t in targets}
        self._write_targets()

    def add_target(self, target: Target) -> None:
        self._targets[target.address] = target
        self._write_targets()

    def remove_target(self, address: str) -> None:
        self._targets.pop(address, None)
        self._write_targets()

    @property
    def targets(self) -> list[Target]:
        return list(self._targets.values())

    def _write_targets(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = self.targets_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps([t.as_file_sd() for t in self._targets.values()], indent=1))
        os.replace(tmp, self.targets_path)

    def active_targets(self) -> list[dict[str, Any]]:
        """``/api/v1/targets`` active targets (each with ``scrapeUrl``, ``health``, ``labels``...)."""
        answer = self.http.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5)
        answer.raise_for_status()
        return answer.json()["data"]["activeTargets"]

    def wait_targets_up(self, count: int | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every configured target (or at least ``count``) has been scraped successfully."""
        wanted = {t.address for t in self._targets.values()}
        need = len(wanted) if count is None else count

        def up() -> list[dict[str, Any]] | None:
            healthy = [
                t for t in self.active_targets() if t.get("health") == "up" and t["labels"].get("instance") in wanted
            ]
            return healthy if len(healthy) >= need else None

        return wait_for(up, timeout, f"{need} scrape target(s) up", interval=0.2)

    # ------------------------------------------------------------------ queries

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Raw instant query; returns ``data.result`` (raises on HTTP or API errors)."""
        answer = self.http.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=timeout)
        answer.raise_for_status()
        payload = answer.json()
        if payload.get("status") != "success":
            raise RuntimeError(f"query failed: {payload}")
        return payload["data"]["result"]

    def query_value(self, promql: str) -> float | None:
        """The value of a single-series (or scalar) result; None when empty."""
        result = self.query(promql)
        if not result:
            return None
        if isinstance(result[0], dict):
            if len(result) != 1:
                raise ValueError(f"{promql} returned {len(result)} series")
            return float(result[0]["value"][1])
        return float(result[1])

    def wait_for_value(
        self, promql: str, predicate: Callable[[float], bool], timeout: float = 30.0, what: str | None = None
    ) -> float:
        """Poll ``promql`` until its value satisfies ``predicate``; returns the value."""

        def check() -> float | None:
            value = self.query_value(promql)
            return value if value is not None and predicate(value) else None

        result = wait_for(check, timeout, what or promql, interval=0.25)
        return float(result)

    def wait_fresh_scrape(self, since: float | None = None, timeout: float = 30.0) -> None:
        """Wait until every target has been scraped successfully by a scrape that began after ``since``.

        ``since`` is a ``time.time()`` (default: now). Call it after sending traffic: once it returns,
        every counter Prometheus holds includes what the targets had counted before ``since``.
        """
        since = time.time() if since is None else since
        wanted = {t.address for t in self._targets.values()}

        def fresh() -> bool:
            seen = [t for t in self.active_targets() if t["labels"].get("instance") in wanted]
            return len(seen) >= len(wanted) and all(
                t.get("health") == "up" and _epoch(t.get("lastScrape", "")) > since for t in seen
            )

        wait_for(fresh, timeout, "a fresh scrape of every target", interval=0.2)


def _seconds(value: float) -> str:
    """Prometheus duration text for a number of seconds (``1s``, ``500ms``)."""
    return f"{int(value)}s" if float(value).is_integer() else f"{round(value * 1000)}ms"


def _epoch(rfc3339: str) -> float:
    """Seconds since the epoch for Prometheus' ``lastScrape`` (RFC 3339 with nanoseconds)."""
    text = rfc3339.strip()
    if not text or text.startswith("0001-"):
        return 0.0
    if "." in text:  # trim nanoseconds to microseconds for fromisoformat
        head, rest = text.split(".", 1)
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
