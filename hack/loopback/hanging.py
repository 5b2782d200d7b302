"""A Prometheus that hangs: a TCP server that accepts connections and never answers.

What a Prometheus stuck in a long query, a half-dead proxy or a black-holed route looks like to a
client: the connection is made, the request sent, and nothing ever comes back, so only the
client's own timeout ends the wait. (A stopped process refuses connections at once; that is the
easy case.) ``held`` counts the connections it holds, so a test can show the hang was exercised.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class HangingPrometheus:
    """Accepts and holds connections until stopped; ``address`` is its ``http://`` URL."""

    def __init__(self, backlog: int = 128) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.address = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                self.held.append(self.sock.accept()[0])

    def __enter__(self) -> HangingPrometheus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()
