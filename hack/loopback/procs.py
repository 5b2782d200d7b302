"""Small process utilities shared by the loopback test bed: free ports, waiting, stopping by PID.

One copy for every module here, so a fix to how a child process is stopped reaches them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; ``TimeoutError`` naming ``what`` otherwise.

    Exceptions from the predicate propagate (a process that died should fail fast, not time out).
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen | None, grace: float = 10.0) -> int | None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; idempotent; returns the exit code.

    A stopped (SIGSTOP) process is continued first, since it would not act on SIGTERM otherwise.
    """
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def find_tool(path: Path, variable: str, missing: type[RuntimeError], how: str) -> Path:
    """The executable named by ``$variable``, else ``path``; ``missing`` saying ``how`` to get it."""
    for candidate in (os.environ.get(variable), str(path)):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise missing(f"{path.name} is not there: {how}, or set {variable}")


def http_answers(url: str, accept: Callable[[int], bool] = lambda code: True) -> bool:
    """Whether ``url`` gives an HTTP answer whose status ``accept`` takes (any, by default: a refused
    anonymous request still means the server is serving); False while nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:
            return accept(answer.status)
    except urllib.error.HTTPError as exc:
        return accept(exc.code)
    except OSError:
        return False


class LoopbackProcess:
    """What every process wrapper here shares: a child on ``127.0.0.1:port`` that logs to ``log_path``.

    Subclasses set ``port``, ``proc`` and ``log_path`` and define ``start()``; ``with`` starts the
    process and stops it on the way out, even when the body raised.
    """

    port: int
    proc: subprocess.Popen | None
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        raise NotImplementedError

    def launch(
        self,
        command: list[str],
        ready: Callable[[], bool],
        what: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Self:
        """Start ``command`` logging to ``log_path`` and wait up to 20 s until ``ready()``; a child
        that exits first fails at once with its log, and a child that never gets ready is stopped."""

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self.proc.returncode}:\n{self.logs()}")
            return ready()

        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
            )
        try:
            wait_for(answers, 20, f"{what} on port {self.port}", interval=0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``; idempotent."""
        stop_process(self.proc, grace)

    def logs(self, chars: int = 4000) -> str:
        return tail(self.log_path, chars)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file, or a note that it does not exist."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return f"(no {path.name})"


class LoopbackHTTPServer:
    """An in-process HTTP server on ``127.0.0.1`` for a test-bed stand-in: subclasses define
    ``handler()`` (a request handler class closing over ``self``); ``with`` serves on threads and
    stops on the way out. A short poll interval makes ``stop()`` return within 50 ms."""

    name = "loopback-http"
    _server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        assert self._server is not None, "start it first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        server = self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), name=self.name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str, **headers: str) -> None:
    """One complete answer from a stand-in's request handler."""
    handler.send_response(status)
    for name, value in {"Content-Type": kind, **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
