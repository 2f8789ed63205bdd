"""`/metrics`, `/healthz`, `/readyz` and `/routes` on the metrics port.

``/healthz`` answers 200 while the service loop beats (it calls
:meth:`Health.beat` every turn) and 503 when it has not for
``stale_after_s``: a stuck loop is restarted by the orchestrator.
``/readyz`` answers 200 only while partitions are assigned, restored and
being consumed, with a one-line reason otherwise.

>>> h = Health(stale_after_s=10, clock=lambda: 100.0)
>>> h.beat(); h.alive(), h.ready
(True, False)
>>> h.set_ready(True, "consuming"); h.ready
True
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["Health", "MetricsServer", "start"]


class Health:
    """Liveness (loop beats) and readiness (partitions restored and consumed), on an injected clock."""

    def __init__(self, stale_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._last_beat: float | None = None
        self.ready = False
        self.reason = "starting"

    def beat(self) -> None:
        self._last_beat = self.clock()

    def alive(self) -> bool:
        return self._last_beat is not None and self.clock() - self._last_beat <= self.stale_after_s

    def set_ready(self, ready: bool, reason: str) -> None:
        self.ready = ready
        self.reason = reason


class MetricsServer:
    """A threaded HTTP server in a daemon thread."""

    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.port = int(server.server_address[1])
        self.thread = threading.Thread(target=server.serve_forever, name="detector-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(port: int, *, registry: CollectorRegistry, health: Health, host: str = "0.0.0.0",
          routes: Callable[[], Any] | None = None) -> MetricsServer:
    """Serve on ``port`` (0: any free port; see ``.port``)."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = health.alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"the service loop is not running\n")
            elif path == "/readyz":
                self._send(200 if health.ready else 503, f"{health.reason}\n".encode())
            elif path == "/routes" and routes is not None:
                self._send(200, json.dumps(routes(), ensure_ascii=False).encode(), "application/json")
            else:
                self._send(404, b"not found\n")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - never log request lines
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return MetricsServer(server)
