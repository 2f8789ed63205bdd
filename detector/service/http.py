"""`/metrics`, `/healthz`, `/readyz` and `/routes` on the metrics port.

``/healthz`` answers 200 while the service loop beats (it calls
:meth:`Health.beat` every turn) and 503 when it has not for
``stale_after_s``: a stuck loop is restarted by the orchestrator.
``/readyz`` answers 200 only while partitions are assigned, restored and
being consumed, and 503 with a one-line reason otherwise. ``/metrics`` is
the Prometheus exposition of the injected registry; ``/routes`` the JSON of
an injected callable (404 when there is none). Anything else is 404.
Request lines are never logged, and a failing request never prints a
traceback.

>>> from urllib.request import urlopen
>>> from prometheus_client import CollectorRegistry
>>> now = [100.0]
>>> health = Health(stale_after_s=10, clock=lambda: now[0])
>>> with start(0, registry=CollectorRegistry(), health=health, host="127.0.0.1") as server:
...     health.beat()
...     with urlopen(f"http://127.0.0.1:{server.port}/healthz") as resp:
...         print(resp.status, resp.read().decode().strip())
200 ok
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["Health", "MetricsServer", "start"]

log = logging.getLogger("detector.service.http")

#: Longest readiness reason served (it is one line, never a configured value).
MAX_REASON = 200


class Health:
    """Liveness (loop beats) and readiness (partitions restored and consumed), on an injected clock.

    Pure: no I/O, and the only time it reads is ``clock()`` (monotonic seconds).

    >>> now = [0.0]
    >>> h = Health(stale_after_s=10, clock=lambda: now[0])
    >>> h.alive(), h.ready, h.reason
    (False, False, 'starting')
    >>> h.beat(); now[0] = 10.0; h.alive()
    True
    >>> now[0] = 10.5; h.alive(), h.since_beat()
    (False, 10.5)
    >>> h.set_ready(True, "consuming"); h.status()
    (True, 'consuming')
    >>> h.set_ready(False, "restoring\\npartitions"); h.reason
    'restoring partitions'
    """

    def __init__(self, stale_after_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.stale_after_s = stale_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last_beat: float | None = None
        self._ready = False
        self._reason = "starting"

    def beat(self) -> None:
        """The service loop is alive (called every turn of the loop, and while it waits)."""
        self._last_beat = self.clock()

    def since_beat(self) -> float | None:
        """Seconds since the last beat; None before the first."""
        last = self._last_beat
        return None if last is None else self.clock() - last

    def alive(self) -> bool:
        """True when the loop beat within ``stale_after_s``."""
        since = self.since_beat()
        return since is not None and since <= self.stale_after_s

    def set_ready(self, ready: bool, reason: str) -> None:
        """Readiness and why, as one line (newlines become spaces; at most 200 characters)."""
        line = " ".join(str(reason).split())[:MAX_REASON] or ("ready" if ready else "not ready")
        with self._lock:
            self._ready = bool(ready)
            self._reason = line

    def status(self) -> tuple[bool, str]:
        """Readiness and its reason, read together."""
        with self._lock:
            return self._ready, self._reason

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def reason(self) -> str:
        return self._reason


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr (a client that hangs up, a routes callable that fails).
        log.debug("http: request failed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """A threaded HTTP server in a daemon thread; ``port`` is the bound port, :meth:`close` stops it."""

    def __init__(self, server: ThreadingHTTPServer):
        self.server = server
        self.port = int(server.server_address[1])
        self._closed = False
        # A short poll interval: close() waits for the serving loop to notice it.
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="detector-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start(port: int, *, registry: CollectorRegistry, health: Health, host: str = "0.0.0.0",
          routes: Callable[[], Any] | None = None) -> MetricsServer:
    """Serve the endpoints on ``host:port`` (port 0: any free port; see ``.port``) in a daemon thread.

    ``routes`` returns the JSON-able inventory served at ``/routes``; it runs on a request thread,
    so it must read the service's state safely (503 when it raises).
    """

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that sends nothing does not hold a thread forever
        server_version = "detector"
        sys_version = ""

        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the http.server interface
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                self._send(200, encoder(registry), ctype)
            elif path == "/healthz":
                since = health.since_beat()
                if since is not None and since <= health.stale_after_s:
                    self._send(200, b"ok\n")
                elif since is None:
                    self._send(503, b"the service loop has not started\n")
                else:
                    self._send(503, f"the service loop has not run for {since:.0f} s\n".encode())
            elif path == "/readyz":
                ready, reason = health.status()
                self._send(200 if ready else 503, f"{reason}\n".encode())
            elif path == "/routes" and routes is not None:
                try:
                    body = json.dumps(routes(), ensure_ascii=False).encode()
                except Exception:  # noqa: BLE001 - the inventory is best effort; the service goes on
                    log.debug("http: /routes failed", exc_info=True)
                    self._send(503, b"the route inventory is not available now\n")
                    return
                self._send(200, body, "application/json")
            else:
                self._send(404, b"not found\n")

        do_HEAD = do_GET  # noqa: N815 - the http.server interface

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - never log request lines
            return None

    cls = _Server6 if ":" in host else _Server
    return MetricsServer(cls((host, port), Handler))
