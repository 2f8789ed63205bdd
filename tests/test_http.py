"""detector.service.http: the endpoints over real HTTP on loopback (no mocks of HTTP)."""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from detector.config import Config
from detector.metrics import Metrics
from detector.pipeline import Pipeline, Stats
from detector.service.http import Health, MetricsServer, start

CANARY = "canary-route-secret"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(server: MetricsServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; error statuses are returned, not raised."""
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


@pytest.fixture
def setup() -> Iterator[tuple[Metrics, Health, Clock, Callable[..., MetricsServer]]]:
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    clock = Clock()
    health = Health(stale_after_s=30, clock=clock)
    servers: list[MetricsServer] = []

    def serve(routes: Callable[[], Any] | None = None) -> MetricsServer:
        s = start(0, registry=reg, health=health, host="127.0.0.1", routes=routes)
        servers.append(s)
        return s

    yield metrics, health, clock, serve
    for s in servers:
        s.close()


def test_metrics_serves_the_registry_as_prometheus_text(setup: Any) -> None:
    metrics, _, _, serve = setup
    server = serve()
    metrics.add_stats_delta("ai.telemetry", 0, Stats(), Stats(read=5, accepted=4, rejected=Counter(not_json=1)))
    metrics.observe_incident({"event": "opened", "incident_type": "performance", "severity": "low"})
    metrics.set_ready(True)
    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    assert 'detector_events_consumed_total{partition="0",topic="ai.telemetry"} 5.0' in body
    assert 'detector_events_rejected_total{reason="not_json"} 1.0' in body
    assert 'detector_incident_events_total{event="opened",incident_type="performance",severity="low"} 1.0' in body
    assert "detector_ready 1.0" in body
    assert "detector_config_reload_failed 0.0" in body
    assert "python_gc" not in body and "process_" not in body  # the injected registry only


def test_metrics_speaks_openmetrics_when_asked(setup: Any) -> None:
    _, _, _, serve = setup
    status, ctype, body = get(serve(), "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_healthz_follows_the_loop_beats_on_the_injected_clock(setup: Any) -> None:
    _, health, clock, serve = setup
    server = serve()
    status, _, body = get(server, "/healthz")
    assert (status, body) == (503, "the service loop has not started\n")
    health.beat()
    assert get(server, "/healthz")[::2] == (200, "ok\n")
    clock.now += 30  # exactly stale_after_s: still alive
    assert get(server, "/healthz")[0] == 200
    clock.now += 0.5
    status, _, body = get(server, "/healthz")
    assert status == 503 and body == "the service loop has not run for 30 s\n"
    health.beat()
    assert get(server, "/healthz")[0] == 200


def test_readyz_is_503_with_a_reason_until_ready(setup: Any) -> None:
    _, health, _, serve = setup
    server = serve()
    assert get(server, "/readyz")[::2] == (503, "starting\n")
    health.set_ready(False, "restoring partitions")
    assert get(server, "/readyz")[::2] == (503, "restoring partitions\n")
    health.set_ready(False, "kafka error\n(KafkaTimeoutError)")  # one line, always
    assert get(server, "/readyz")[::2] == (503, "kafka error (KafkaTimeoutError)\n")
    health.set_ready(True, "consuming")
    assert get(server, "/readyz")[::2] == (200, "consuming\n")
    health.set_ready(False, "stopped")
    assert get(server, "/readyz")[0] == 503


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/extra", "/routes", "/healthz/../metrics", "/favicon.ico"])
def test_anything_else_is_404(setup: Any, path: str) -> None:
    _, _, _, serve = setup
    assert get(serve(), path)[0] == 404


def test_routes_serves_the_injected_inventory_and_survives_its_failure(setup: Any) -> None:
    _, health, _, serve = setup
    calls = [0]

    def inventory() -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("dictionary changed size during iteration")
        return {"routes": [{"route": "support.chat", "topic": "ai.telemetry", "partition": 0, "open_incidents": 1}]}

    server = serve(inventory)
    status, ctype, body = get(server, "/routes")
    assert status == 200 and ctype == "application/json"
    assert json.loads(body)["routes"][0]["route"] == "support.chat"
    assert get(server, "/routes")[0] == 503
    assert get(server, "/routes?x=1")[0] == 200
    health.beat()
    assert get(server, "/healthz")[0] == 200


def test_query_strings_are_ignored(setup: Any) -> None:
    _, _, _, serve = setup
    assert get(serve(), "/metrics?name[]=detector_ready")[0] == 200


def test_nothing_is_written_to_stderr_or_stdout(setup: Any, capfd: pytest.CaptureFixture[str]) -> None:
    _, health, _, serve = setup

    def broken() -> Any:
        raise RuntimeError(CANARY)

    server = serve(broken)
    for path in ("/metrics", "/healthz", "/readyz", "/routes", "/nope"):
        get(server, path)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # a client that hangs up mid-request
        sock.sendall(b"GET /metr")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:  # a method not served
        sock.sendall(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 501")
    get(server, "/readyz")  # the server still answers after all that
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_close_releases_the_port_and_is_idempotent() -> None:
    health = Health()
    server = start(0, registry=CollectorRegistry(), health=health, host="127.0.0.1")
    port = server.port
    assert port > 0
    server.close()
    server.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
    again = start(port, registry=CollectorRegistry(), health=health, host="127.0.0.1")  # the port is free
    again.close()


def _fed_metrics() -> tuple[CollectorRegistry, Metrics]:
    """Metrics after a real pipeline ran telemetry whose every route and id is the canary."""
    reg = CollectorRegistry()
    m = Metrics(reg)
    pipe = Pipeline(Config())
    t0 = 1_795_770_000_000
    lines = [json.dumps({"event_id": f"{CANARY}-{i}", "type": "usage", "ts": t0 + i * 1000,
                         "route": f"{CANARY}-{i % 3}", "request_id": f"{CANARY}-r{i}",
                         "trace_id": f"{CANARY}-t{i}"}).encode() for i in range(900)]
    lines.insert(10, f"{CANARY} not json".encode())
    before = copy.deepcopy(pipe.stats)
    found = pipe.process_many(lines) + pipe.flush()
    m.add_stats_delta("ai.telemetry", 0, before, pipe.stats)
    for inc in found:
        m.observe_incident(inc)
    m.observe_incident({"event": "opened", "incident_type": "cost", "severity": "high", "route": CANARY,
                        "incident_id": CANARY})
    m.observe_dead_letter(CANARY)
    m.observe_command(CANARY, CANARY)
    assert pipe.stats.windows_closed > 0
    return reg, m


def test_the_metrics_body_never_holds_a_route_name(setup: Any) -> None:
    reg, _ = _fed_metrics()
    server = start(0, registry=reg, health=Health(), host="127.0.0.1")
    try:
        status, _, body = get(server, "/metrics")
    finally:
        server.close()
    assert status == 200 and "detector_windows_closed_total" in body
    assert CANARY not in body


def test_promtool_accepts_the_exposition(setup: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (Debian package prometheus)")
    reg, m = _fed_metrics()
    m.observe_batch("ai.telemetry", 0, 0.01, 900)
    m.set_lag("ai.telemetry", 0, 3)
    m.observe_checkpoint(0.02, 100, 2)
    m.observe_restore(0.2, 10, 1000)
    m.observe_produce_errors(1)
    m.set_open_incidents({"cost": 1})
    server = start(0, registry=reg, health=Health(), host="127.0.0.1")
    try:
        status, _, body = get(server, "/metrics")
    finally:
        server.close()
    assert status == 200
    res = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "" and res.stderr.strip() == "", res.stdout + res.stderr  # no lint findings
