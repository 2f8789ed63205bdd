"""A real HTTP server on loopback that plays an alert receiver in tests: it records each request, and answers
with what the test scripted (statuses, a slow answer), or is shut down and started again on the same port."""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from detector.service.embedded import free_port


@dataclass
class Got:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    #: Order of arrival (when the status was taken from the script); ``got`` is kept in this order even when
    #: two handler threads record their requests the other way round.
    seq: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``with Receiver() as r: r.url``; ``r.script(503, 503)`` answers the next two requests with 503."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.got: list[Got] = []
        self.plan: deque[int] = deque()
        #: When set, requests wait for it before answering (a receiver that hangs).
        self.hold: threading.Event | None = None
        self.arrived = threading.Condition()
        self._seq = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *statuses: int) -> None:
        self.plan.extend(statuses)

    def ok(self) -> list[Got]:
        """The requests answered with 2xx."""
        return [g for g in list(self.got) if 200 <= g.status < 300]

    def wait(self, n: int, timeout_s: float = 30.0, ok: bool = True) -> list[Got]:
        """Wait until ``n`` requests (2xx ones when ``ok``) have arrived."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.ok() if ok else self.got) >= n, timeout_s)
        got = self.ok() if ok else list(self.got)
        assert len(got) >= n, f"{len(got)} request(s) arrived, {n} expected"
        return got

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if outer.hold is not None:
                    outer.hold.wait(30)
                with outer.arrived:  # the script's next status and the arrival order, taken together
                    status = outer.plan.popleft() if outer.plan else 202
                    seq = outer._seq = outer._seq + 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:  # the client gave up (timed out): it never saw this answer
                    return
                with outer.arrived:
                    got = Got(self.path, dict(self.headers.items()), body, status, seq)
                    at = len(outer.got)
                    while at and outer.got[at - 1].seq > seq:
                        at -= 1
                    outer.got.insert(at, got)
                    outer.arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.stop()
