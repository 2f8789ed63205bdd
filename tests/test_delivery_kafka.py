"""Delivery from the incidents topic on a real broker, to a real Alertmanager and a real HTTP receiver.

What these protect: an incident reaches Alertmanager as an alert with the labels that identify it, its
severity change replaces the alert, and its resolution ends it (seen through Alertmanager's own API, and
in the notification Alertmanager itself sends on); a restart, clean or after a crash, neither loses a
message nor sends a receiver anything it cannot drop by (incident_id, seq); a first start announces the
incidents open then, not the past; and `detector run`'s service and delivery together bring a receiver
exactly the incident messages the service published.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from detector.config import Config, with_overrides
from detector.delivery.consumer import Delivery
from detector.delivery.payloads import rfc3339
from detector.metrics import DeliveryMetrics
from detector.service.embedded import EmbeddedBroker, free_port
from detector.sinks.kafka import incident_value
from tests.http_receiver import Receiver as Server
from tests.kafka_util import create_topics, incidents, produce, read_all, start_service, wait_for
from tests.test_delivery import incident

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Server]]:
    """A real Alertmanager on loopback whose one route notifies a local HTTP server (firing and resolved)."""
    if AM_BINARY is None:
        pytest.skip("Alertmanager is not installed (Debian package prometheus-alertmanager)")
    with Server() as hook:
        (tmp_path / "am.yml").write_text(
            "route:\n  receiver: hook\n  group_by: [incident_id]\n  group_wait: 0s\n  group_interval: 1s\n"
            "  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n"
            f"      - url: {hook.url}\n        send_resolved: true\n", encoding="utf-8")
        port = free_port()
        proc = subprocess.Popen(
            [AM_BINARY, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _up(base), 30, "Alertmanager up")
            yield base, hook
        finally:
            proc.kill()
            proc.wait(10)


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def am_alerts(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5) as r:
        return list(json.load(r))


def config(bootstrap: str, receivers: list[dict[str, Any]], **delivery: Any) -> Config:
    cfg = with_overrides(Config(), {"kafka": {"bootstrap_servers": [bootstrap], "session_timeout_ms": 6000,
                                              "heartbeat_interval_ms": 1000, "partitions": 2},
                                    "delivery": {"commit_interval_s": 0.2, **delivery}})
    return Config.model_validate({**cfg.model_dump(), "receivers": receivers})


class Running:
    def __init__(self, cfg: Config):
        self.registry = CollectorRegistry()
        self.delivery = Delivery(cfg, DeliveryMetrics(self.registry, [r.name for r in cfg.receivers]))
        self.thread = threading.Thread(target=self.delivery.run, daemon=True)
        self.thread.start()
        wait_for(self.delivery.ready.is_set, 60, "delivery assigned and caught up")

    def stop(self, crash: bool = False) -> None:
        if crash:  # a crash: nothing more is committed
            self.delivery.commit = lambda: None  # type: ignore[method-assign]
        self.delivery.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def publish(bootstrap: str, incs: list[dict[str, Any]], topic: str = "ai.incidents", age_s: float = 0) -> None:
    """Write incident events the way the service does (key = incident_id), dated ``age_s`` ago."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for inc in incs:
        producer.send(topic, incident_value(inc), key=inc["incident_id"].encode(),
                      timestamp_ms=int((time.time() - age_s) * 1000))
    producer.flush()
    producer.close()


def now_incident(event: str, seq: int, **kw: Any) -> dict[str, Any]:
    t = time.time()
    return incident(event, seq, started_at=rfc3339(t - 120), detected_at=rfc3339(t - 60), at=rfc3339(t),
                    resolved_at=rfc3339(t) if event == "resolved" else None, **kw)


def keys(got: list[Any]) -> list[str]:
    return [g.headers["X-Detector-Message"] for g in got]


def test_alertmanager_shows_the_alert_replaces_it_on_escalation_and_ends_it(
        broker: EmbeddedBroker, alertmanager: tuple[str, Server]) -> None:
    base, hook = alertmanager
    create_topics(broker.bootstrap, {"ai.incidents": 2})
    run = Running(config(broker.bootstrap, [{"name": "am", "kind": "alertmanager", "url": base, "resend_s": 1}]))
    try:
        publish(broker.bootstrap, [now_incident("opened", 1)])
        wait_for(lambda: any(a["labels"].get("incident_id") == "inc-1" for a in am_alerts(base)), 30, "alert")
        (alert,) = am_alerts(base)
        assert alert["labels"] == {"alertname": "AIIncident", "route": "support.reply", "incident_type": "bad_output",
                                   "severity": "medium", "incident_id": "inc-1", "owner": "support-ai"}
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["summary"] == "Reviewers reject most drafts."
        assert alert["annotations"]["recommendations"].startswith("1. rollback prompt to v3")
        time.sleep(5)  # longer than endsAt of one send (4 re-send intervals): the re-sends keep it active
        assert [a["labels"]["severity"] for a in am_alerts(base)] == ["medium"]

        publish(broker.bootstrap, [now_incident("escalated", 2, severity="high")])
        wait_for(lambda: [a["labels"]["severity"] for a in am_alerts(base)] == ["high"], 30, "escalated alert")

        publish(broker.bootstrap, [now_incident("resolved", 3, severity="high")])
        wait_for(lambda: am_alerts(base) == [], 30, "alert ended")
        # Alertmanager's own notification says it resolved
        wait_for(lambda: any(json.loads(g.body)["status"] == "resolved" for g in hook.ok()), 30, "resolved note")
    finally:
        run.stop()
    firing = [json.loads(g.body) for g in hook.ok() if json.loads(g.body)["status"] == "firing"]
    assert firing and firing[0]["alerts"][0]["labels"]["incident_id"] == "inc-1"


def test_restarts_clean_or_crashed_lose_nothing_and_repeat_only_what_receivers_drop(
        broker: EmbeddedBroker) -> None:
    create_topics(broker.bootstrap, {"ai.incidents": 2})
    with Server() as srv:
        cfg = config(broker.bootstrap, [{"name": "hook", "kind": "webhook", "url": srv.url, "secret": "k"}])
        old = [incident("opened", 1, iid="past"), incident("resolved", 2, iid="past"),
               incident("opened", 1, iid="still-open")]
        publish(broker.bootstrap, old, age_s=3600)  # an hour before delivery ever ran: the past
        run = Running(cfg)
        # first start: the incident still open is announced, the resolved one is not paged
        assert keys(srv.wait(1)) == ["still-open:1"]
        publish(broker.bootstrap, [incident("opened", 1, iid="a"), incident("updated", 2, iid="a")])
        srv.wait(3)
        time.sleep(1)  # committed
        run.stop()

        publish(broker.bootstrap, [incident("opened", 1, iid="b")])  # while nobody delivers
        run = Running(cfg)
        srv.wait(4)
        time.sleep(0.5)
        assert sorted(keys(srv.ok())) == ["a:1", "a:2", "b:1", "still-open:1"]  # a clean restart repeats nothing

        run.stop(crash=True)  # delivered b:1 may be read again: nothing committed from now on
        publish(broker.bootstrap, [incident("resolved", 2, iid="b"), incident("resolved", 2, iid="still-open")])
        run = Running(cfg)
        srv.wait(6)
        time.sleep(1)
        run.stop()
    sent = keys(srv.ok())
    assert set(sent) == {"still-open:1", "a:1", "a:2", "b:1", "b:2", "still-open:2"}
    assert "past:1" not in sent and "past:2" not in sent
    # what was sent twice came after the last commit, and has the same bytes
    bodies: dict[str, bytes] = {}
    for g in srv.ok():
        k = g.headers["X-Detector-Message"]
        assert bodies.setdefault(k, g.body) == g.body


def test_the_service_and_delivery_bring_a_receiver_what_the_service_published(broker: EmbeddedBroker) -> None:
    """`detector run`'s two halves on one broker: telemetry in, and the webhook receives each incident
    message published on the incidents topic, once."""
    from detector.bench.scenarios.generate import generate_scenario

    lines = [json.dumps(e).encode() for e in generate_scenario(3, days=1).events]
    create_topics(broker.bootstrap, {"ai.telemetry": 2, "ai.incidents": 2})
    with Server() as srv:
        cfg = config(broker.bootstrap, [{"name": "hook", "kind": "webhook", "url": srv.url, "secret_env": "HOOK_KEY"}])
        cfg = with_overrides(cfg, {"kafka": {"checkpoint_interval_s": 0.5, "idle_timeout_s": 0}})
        delivery = Delivery(cfg, DeliveryMetrics(CollectorRegistry(), ["hook"]), environ={"HOOK_KEY": "k"})
        thread = threading.Thread(target=delivery.run, daemon=True)
        thread.start()
        service = start_service(cfg)
        try:
            wait_for(delivery.ready.is_set, 60, "delivery ready")
            n = produce(broker.bootstrap, "ai.telemetry", lines, 2)
            wait_for(lambda: service.consumed() >= n, 180, "telemetry consumed")
            published = incidents(read_all(broker.bootstrap, "ai.incidents", quiet_s=2.0))
            assert any(m["event"] == "opened" for m in published)
            srv.wait(len(published), 60)
            time.sleep(0.5)
        finally:
            service.stop()
            delivery.stop()
            thread.join(30)
    want = sorted(f"{m['incident_id']}:{m['seq']}" for m in published)
    assert sorted(keys(srv.ok())) == want
    assert {json.loads(g.body)["incident_id"] for g in srv.ok()} == {m["incident_id"] for m in published}


def test_an_announcement_survives_a_restart_while_the_receiver_is_down(broker: EmbeddedBroker) -> None:
    """First start, receiver down: nothing is committed while the announcement waits, so the next start
    announces it again (before, the commit moved past it and it was never sent)."""
    create_topics(broker.bootstrap, {"ai.incidents": 1})
    srv = Server()  # not started: down
    cfg = config(broker.bootstrap, [{"name": "hook", "kind": "webhook", "url": srv.url, "secret": "k",
                                     "max_backoff_s": 0.2}])
    publish(broker.bootstrap, [incident("opened", 1, iid="still-open")], age_s=3600)
    run = Running(cfg)
    time.sleep(2)  # several commit intervals
    run.stop()
    srv.start()
    try:
        run = Running(cfg)
        got = srv.wait(1)
        run.stop()
    finally:
        srv.stop()
    assert keys(got) == ["still-open:1"]


def test_a_message_dated_before_the_start_by_a_slow_clock_is_delivered(broker: EmbeddedBroker) -> None:
    create_topics(broker.bootstrap, {"ai.incidents": 1})
    with Server() as srv:
        run = Running(config(broker.bootstrap, [{"name": "hook", "kind": "webhook", "url": srv.url, "secret": "k"}]))
        try:
            publish(broker.bootstrap, [incident("opened", 1, iid="skewed")], age_s=60)  # another host, behind
            publish(broker.bootstrap, [incident("opened", 1, iid="normal")])
            srv.wait(2)
        finally:
            run.stop()
    assert sorted(keys(srv.ok())) == ["normal:1", "skewed:1"]


def test_alertmanager_resends_go_on_after_a_rebalance(broker: EmbeddedBroker) -> None:
    """Another member joins the delivery group and leaves: the partition comes back, and the open incident's
    alert is still re-sent every resend_s."""
    from kafka import KafkaConsumer

    create_topics(broker.bootstrap, {"ai.incidents": 1})
    with Server() as am:
        run = Running(config(broker.bootstrap, [{"name": "am", "kind": "alertmanager",
                                                 "url": am.url.rsplit("/", 1)[0], "resend_s": 1}]))
        try:
            publish(broker.bootstrap, [incident("opened", 1)])
            am.wait(3)  # delivered, then re-sent
            other = KafkaConsumer("ai.incidents", bootstrap_servers=broker.bootstrap,
                                  group_id=run.delivery.group_id, enable_auto_commit=False,
                                  session_timeout_ms=6000, heartbeat_interval_ms=1000)
            deadline = time.monotonic() + 30
            while not other.assignment() and time.monotonic() < deadline:
                other.poll(200)
            other.close()
            wait_for(run.delivery.ready.is_set, 60, "delivery has the partition back")
            n = len(am.got)
            wait_for(lambda: len(am.got) - n >= 3, 20, "re-sends after the rebalance")
        finally:
            run.stop()


def test_a_message_that_is_not_an_incident_event_is_skipped_and_counted(broker: EmbeddedBroker) -> None:
    """Junk on the incidents topic (not JSON, an object without incident_id or seq) is skipped and counted
    (detector_delivery_invalid_total); the incident events around it are delivered."""
    from kafka import KafkaProducer

    create_topics(broker.bootstrap, {"ai.incidents": 1})
    with Server() as srv:
        run = Running(config(broker.bootstrap, [{"name": "hook", "kind": "webhook", "url": srv.url, "secret": "k"}]))
        try:
            publish(broker.bootstrap, [incident("opened", 1, iid="before")])
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
            for junk in (b"not json", b'{"route": "r"}', b'{"incident_id": "x", "seq": "1", "route": "r"}', b""):
                producer.send("ai.incidents", junk)
            producer.flush()
            producer.close()
            publish(broker.bootstrap, [incident("opened", 1, iid="after")])
            srv.wait(2)
            wait_for(lambda: run.registry.get_sample_value("detector_delivery_invalid_total") == 4, 30,
                     "junk counted")
        finally:
            run.stop()
    assert keys(srv.ok()) == ["before:1", "after:1"]
