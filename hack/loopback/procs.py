"""Small process utilities shared by the loopback test bed: free ports, waiting, stopping by PID.

One copy for every module here, so a fix to how a child process is stopped reaches them all.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
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
