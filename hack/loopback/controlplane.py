"""Faults in the local control plane, for the chaos tests: restart a component, freeze one for a while.

``hack/cluster-up.sh`` records each component's PID in ``$TESTENV/run/<name>.pid``; these helpers
act on exactly that PID and keep the file true (a restarted component's new PID is written back), so
``hack/cluster-down.sh`` still stops what runs. A restart re-executes the process's own command line,
read from ``/proc``, so the component comes back with the flags it was started with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from hack.loopback.procs import wait_for


def _pid(run: Path, name: str) -> int:
    pid = int((run / f"{name}.pid").read_text().strip())
    os.kill(pid, 0)  # ProcessLookupError when it is not running: nothing to act on
    return pid


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie nobody reaped is gone too, once its other threads have exited (until then they hold
    # its sockets: a restart would find the port still bound).
    with contextlib.suppress(OSError):
        zombie = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
        if zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return True
    return False


def restart(run: Path, name: str, crash: bool = False, grace: float = 20.0) -> int:
    """Stop the component ``name`` (SIGTERM, SIGKILL after ``grace``; ``crash``: SIGKILL at once, as a
    node losing power or an OOM kill does), start it again with the same command line and environment;
    returns the new PID (also written to its pid file). The caller waits for it to serve: how to ask
    differs per component. kube-apiserver's graceful shutdown waits for its watches to drain, which
    here takes the whole ``grace``."""
    pid = _pid(run, name)
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    env: dict[bytes, bytes] = {}
    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key] = value
    cwd = os.readlink(f"/proc/{pid}/cwd")
    os.kill(pid, signal.SIGKILL if crash else signal.SIGTERM)
    try:
        wait_for(lambda: _gone(pid), grace, f"{name} (pid {pid}) to exit")
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _gone(pid), 5, f"{name} (pid {pid}) to die")
    for _ in range(20):  # a port the old process held can take a moment to be free again
        with open(run / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True,  # like cluster-up's nohup: it outlives this process
            )  # fmt: skip
        (run / f"{name}.pid").write_text(f"{proc.pid}\n")
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return proc.pid
    raise RuntimeError(f"{name} exits at once when restarted; see {run / name}.log")


@contextlib.contextmanager
def frozen(run: Path, name: str) -> Iterator[int]:
    """SIGSTOP the component for the ``with`` block (it accepts connections but answers nothing, as a
    hung or partitioned member does) and SIGCONT it afterwards, also when the block fails."""
    pid = _pid(run, name)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
