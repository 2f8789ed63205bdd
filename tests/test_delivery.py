"""Delivery to alert receivers over real HTTP (a local server; nothing mocked but the clock of pure parts).

What these protect: PagerDuty gets trigger/acknowledge/resolve under one dedup_key, a webhook gets the
incident's own bytes with a signature the receiver can check, a message the receiver does not take is
retried with backoff until it does (5xx, a timeout, the receiver down and back on the same port), a 4xx
is not retried, a (incident_id, seq) is sent once, a full queue drops and counts instead of blocking the
caller, and a receiver config with a bad URL or no secret fails `detector config check` with its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from detector.config import Config, Receiver, config_errors
from detector.delivery.payloads import verify_signature
from detector.delivery.worker import Item, Worker
from detector.metrics import DeliveryMetrics
from detector.sinks.kafka import incident_value
from tests.http_receiver import Receiver as Server

ROOT = Path(__file__).resolve().parent.parent


def incident(event: str, seq: int, iid: str = "inc-1", **kw: Any) -> dict[str, Any]:
    status = {"opened": "open", "updated": "open", "escalated": "open", "acknowledged": "acknowledged",
              "contained": "contained", "resolved": "resolved"}[event]
    base: dict[str, Any] = {
        "schema_version": "1", "event": event, "incident_id": iid, "seq": seq, "route": "support.reply",
        "incident_type": "bad_output", "severity": "medium", "status": status,
        "started_at": "2026-12-02T10:00:00Z", "detected_at": "2026-12-02T10:03:00Z", "at": "2026-12-02T10:03:00Z",
        "resolved_at": "2026-12-02T10:30:00Z" if event == "resolved" else None,
        "signals": [{"signal": "review_rejection_rate", "observed": 0.4, "baseline": 0.05}],
        "blast_radius": {"requests": 40, "tenants": 3, "share": 0.5}, "evidence": {},
        "recommendations": [{"action": "rollback", "target": {"kind": "prompt", "to_version": "v3"},
                             "rationale": "prompt v4 began just before", "auto_applicable": False}],
        "owner": "support-ai", "escalation": None, "summary": "Reviewers reject most drafts.", "group": None,
        "by": None, "note": None}
    base.update(kw)
    return base


def item(inc: dict[str, Any]) -> Item:
    return Item(inc, incident_value(inc))


def worker(kind: str, url: str, **kw: Any) -> tuple[Worker, CollectorRegistry]:
    secret = None if kind == "alertmanager" else "s3cret"
    rec = Receiver.model_validate({"name": kind, "kind": kind, "url": url, "secret": secret,
                                   "max_backoff_s": 0.2, "timeout_s": 1, **kw})
    reg = CollectorRegistry()
    w = Worker(rec, secret.encode() if secret else None, metrics=DeliveryMetrics(reg, [kind]))
    return w, reg


def drain(w: Worker) -> None:
    while w.step(0):
        pass


def until(cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def sample(reg: CollectorRegistry, name: str, **labels: str) -> float:
    return reg.get_sample_value(name, labels) or 0.0


def test_pagerduty_follows_the_incident_lifecycle_under_one_dedup_key() -> None:
    with Server() as srv:
        w, _ = worker("pagerduty", srv.url)
        for i, ev in enumerate(["opened", "escalated", "acknowledged", "contained", "resolved"], 1):
            w.offer(item(incident(ev, i, severity="critical" if ev == "escalated" else "medium")))
        drain(w)
        got = [g.json() for g in srv.wait(5)]
    assert [g["event_action"] for g in got] == ["trigger", "trigger", "acknowledge", "acknowledge", "resolve"]
    assert {g["dedup_key"] for g in got} == {"inc-1"}
    assert {g["routing_key"] for g in got} == {"s3cret"}
    opened, escalated = got[0]["payload"], got[1]["payload"]
    assert (opened["severity"], escalated["severity"]) == ("warning", "critical")
    assert opened["source"] == "support.reply" and opened["summary"] == "Reviewers reject most drafts."
    details = opened["custom_details"]
    assert details["signals"][0]["signal"] == "review_rejection_rate"
    assert details["recommendations"][0]["target"] == {"kind": "prompt", "to_version": "v3"}
    assert "payload" not in got[4]  # acknowledge and resolve carry only the key


def test_webhook_sends_the_message_bytes_signed() -> None:
    with Server() as srv:
        w, _ = worker("webhook", srv.url)
        inc = incident("opened", 1)
        w.offer(item(inc))
        drain(w)
        (g,) = srv.wait(1)
    assert g.body == incident_value(inc)
    assert g.headers["X-Detector-Message"] == "inc-1:1"
    assert verify_signature(b"s3cret", g.headers["X-Detector-Timestamp"], g.body, g.headers["X-Detector-Signature"],
                            now_s=time.time())
    assert not verify_signature(b"other", g.headers["X-Detector-Timestamp"], g.body,
                                g.headers["X-Detector-Signature"], now_s=time.time())
    assert not verify_signature(b"s3cret", g.headers["X-Detector-Timestamp"], g.body + b" ",
                                g.headers["X-Detector-Signature"], now_s=time.time())


def test_5xx_is_retried_with_backoff_and_4xx_is_not() -> None:
    with Server() as srv:
        w, reg = worker("webhook", srv.url)
        srv.script(503, 500, 202, 400, 202)
        w.offer(item(incident("opened", 1, iid="a")))  # 503, 500, then taken
        w.offer(item(incident("opened", 1, iid="b")))  # 400: refused, never sent again
        w.offer(item(incident("opened", 1, iid="c")))
        drain(w)
        got = srv.wait(5, ok=False)
    assert [(json.loads(g.body)["incident_id"], g.status) for g in got] == [
        ("a", 503), ("a", 500), ("a", 202), ("b", 400), ("c", 202)]
    assert sample(reg, "detector_delivery_retries_total", receiver="webhook") == 2
    assert sample(reg, "detector_delivery_messages_total", receiver="webhook", outcome="rejected") == 1
    assert sample(reg, "detector_delivery_messages_total", receiver="webhook", outcome="delivered") == 2
    # the signature of a retried message is made again at each attempt
    a = [g for g in got if json.loads(g.body)["incident_id"] == "a"]
    assert all(verify_signature(b"s3cret", g.headers["X-Detector-Timestamp"], g.body,
                                g.headers["X-Detector-Signature"], now_s=time.time()) for g in a)


def test_a_receiver_down_then_back_gets_every_message_once() -> None:
    srv = Server()  # not started: connections are refused
    w, reg = worker("pagerduty", srv.url)
    for i, ev in enumerate(["opened", "escalated", "resolved"], 1):
        w.offer(item(incident(ev, i)))
    w.start()
    try:
        until(lambda: sample(reg, "detector_delivery_retries_total", receiver="pagerduty") >= 3,
              "retries while the receiver is down")
        srv.start()
        got = srv.wait(3)
    finally:
        w.stop()
        srv.stop()
    assert [(g.json()["dedup_key"], g.json()["event_action"]) for g in got] == [
        ("inc-1", "trigger"), ("inc-1", "trigger"), ("inc-1", "resolve")]
    assert sample(reg, "detector_delivery_messages_total", receiver="pagerduty", outcome="delivered") == 3


def test_a_receiver_that_hangs_is_timed_out_and_retried() -> None:
    with Server() as srv:
        w, reg = worker("webhook", srv.url, timeout_s=0.3)
        srv.hold = threading.Event()  # the first request hangs past the timeout
        w.offer(item(incident("opened", 1)))
        w.start()
        try:
            until(lambda: sample(reg, "detector_delivery_retries_total", receiver="webhook") >= 1,
                  "a hanging receiver timed out")
            held, srv.hold = srv.hold, None
            held.set()
            got = srv.wait(1)
            until(lambda: w.counts.get("delivered") == 1, "the message counted delivered")
        finally:
            w.stop()
    assert {json.loads(g.body)["incident_id"] for g in got} == {"inc-1"}
    assert w.counts == {"delivered": 1}


def test_each_incident_message_is_sent_once() -> None:
    with Server() as srv:
        w, reg = worker("webhook", srv.url)
        for inc in [incident("opened", 1), incident("opened", 1), incident("updated", 2), incident("opened", 1)]:
            w.offer(item(inc))
        w.remember(item(incident("opened", 1, iid="old")))  # read back at a restart: handled before
        w.offer(item(incident("opened", 1, iid="old")))
        drain(w)
        srv.wait(2)
        time.sleep(0.2)  # nothing more comes
    assert [g.headers["X-Detector-Message"] for g in srv.got] == ["inc-1:1", "inc-1:2"]
    assert sample(reg, "detector_delivery_messages_total", receiver="webhook", outcome="duplicate") == 3


def test_a_full_queue_drops_and_counts_and_never_blocks_the_caller() -> None:
    """A receiver holding every request: offers still return at once; past the bound they are dropped."""
    with Server() as srv:
        srv.hold = threading.Event()
        w, reg = worker("webhook", srv.url, queue_size=3, timeout_s=30)
        w.start()
        try:
            w.offer(item(incident("opened", 1, iid="first")))
            deadline = time.monotonic() + 10
            while w.pending() == {} and len(w) and time.monotonic() < deadline:
                time.sleep(0.01)
            while len(w) and time.monotonic() < deadline:  # the first one is in flight, held by the receiver
                time.sleep(0.01)
            taken = [w.offer(item(incident("opened", 1, iid=f"i{n}"))) for n in range(5)]
            assert taken == [True, True, True, False, False]
            assert sample(reg, "detector_delivery_messages_total", receiver="webhook", outcome="dropped") == 2
            assert sample(reg, "detector_delivery_queue_messages", receiver="webhook") == 3
            srv.hold.set()
            got = srv.wait(4)
        finally:
            w.stop()
    assert [json.loads(g.body)["incident_id"] for g in got] == ["first", "i0", "i1", "i2"]


def test_receiver_configs_are_checked_with_the_field_path(tmp_path: Path) -> None:
    errs = config_errors({"receivers": [
        {"name": "am", "kind": "alertmanager", "url": "am:9093"},
        {"name": "pd", "kind": "pagerduty"},
        {"name": "hook", "kind": "webhook", "url": "https://hooks.example.com/x", "secret_env": "HOOK_KEY"}]})
    assert [e.split(":")[0] for e in errs] == ["receivers.0.url", "receivers.1"]
    assert "routing key" in errs[1]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[receivers]]\nname = "hook"\nkind = "webhook"\nurl = "https://h.example.com/x"\n',
                   encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "config", "check", str(bad)], cwd=ROOT,
                         capture_output=True, timeout=60)
    assert out.returncode != 0
    assert b"receivers.0" in out.stdout + out.stderr and b"signing key" in out.stdout + out.stderr
    good = Config.model_validate({"receivers": [{"name": "am", "kind": "alertmanager", "url": "http://am:9093/"}]})
    assert good.receivers[0].target == "http://am:9093/api/v2/alerts"


def test_run_stops_at_start_with_one_line_when_a_receiver_secret_is_missing(tmp_path: Path) -> None:
    """`detector run` with a receiver whose secret_env names an unset variable: exit 2, one line naming the
    setting (never a value), before anything connects."""
    cfg = tmp_path / "run.toml"
    cfg.write_text('[kafka]\nbootstrap_servers = ["127.0.0.1:1"]\n[[receivers]]\nname = "pd"\nkind = "pagerduty"\n'
                   'secret_env = "DETECTOR_TEST_UNSET_KEY"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "DETECTOR_TEST_UNSET_KEY"}
    out = subprocess.run([sys.executable, "-m", "detector.cli", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines == ["config error: receivers.0.secret_env: the environment variable DETECTOR_TEST_UNSET_KEY is "
                     "not set"], out.stderr


# -- regressions found by an adversarial review -------------------------------------------------------------
TP0 = ("ai.incidents", 0)


def stepped(kind: str, url: str, clock: list[float], **kw: Any) -> Worker:
    """A worker driven step by step on an injected clock, retrying without waiting."""
    secret = None if kind == "alertmanager" else "s3cret"
    rec = Receiver.model_validate({"name": kind, "kind": kind, "url": url, "secret": secret, "resend_s": 60, **kw})
    return Worker(rec, secret.encode() if secret else None, wall=lambda: clock[0], sleep=lambda s: False,
                  rand=lambda: 0.0)


def test_alertmanager_resends_go_on_after_the_partition_comes_back() -> None:
    """A rebalance revokes and re-assigns the partition: the read-back remembers the open incident, and its
    alert is still re-sent (before, the re-sends stopped and the alert ended by itself while open)."""
    clock = [1000.0]
    with Server() as srv:
        w = stepped("alertmanager", srv.url.rsplit("/", 1)[0], clock)
        it = Item(incident("opened", 1), incident_value(incident("opened", 1)), TP0, 0)
        w.offer(it)
        drain(w)
        srv.wait(1)
        w.forget({TP0})
        w.remember(it)
        drain(w)
        clock[0] += 120
        drain(w)
        got = srv.wait(2)
    assert len(got) == 2 and [a["labels"]["incident_id"] for a in got[1].json()] == ["inc-1"]


def test_a_retried_escalation_still_ends_the_old_alert() -> None:
    clock = [1000.0]
    with Server() as srv:
        w = stepped("alertmanager", srv.url.rsplit("/", 1)[0], clock)
        w.offer(Item(incident("opened", 1), b"", TP0, 0))
        drain(w)
        srv.script(503, 202)
        w.offer(Item(incident("escalated", 2, severity="high"), b"", TP0, 1))
        drain(w)
        attempts = [[(a["labels"]["severity"], a["endsAt"]) for a in g.json()] for g in srv.wait(3, ok=False)[1:]]
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the taken attempt ends the medium alert too
    assert [s for s, _ in attempts[1]] == ["high", "medium"]


def test_pagerduty_learns_of_an_announced_incident_whatever_its_last_event() -> None:
    """A first start announces an incident whose last event is `acknowledged`: PagerDuty drops an acknowledge
    for a key it does not know, so a trigger with the payload goes first."""
    clock = [1000.0]
    with Server() as srv:
        w = stepped("pagerduty", srv.url, clock)
        w.offer(Item(incident("acknowledged", 2), b"", TP0, 5, announce=True))
        drain(w)
        got = [g.json() for g in srv.wait(2)]
    assert [g["event_action"] for g in got] == ["trigger", "acknowledge"] and "payload" in got[0]


@pytest.mark.parametrize("bad", [
    {"started_at": "0001-01-01T00:00:00+01:00"},  # out of datetime's range once in UTC
    {"incident_id": "x\r\ny:1"},                  # a header injection attempt
    {"incident_id": "inc-é€"},                   # not Latin-1
])
def test_a_malformed_incident_never_stops_a_worker(bad: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    with Server() as srv:
        for kind in ("alertmanager", "webhook"):
            w, _ = worker(kind, srv.url if kind == "webhook" else srv.url.rsplit("/", 1)[0])
            w.start()
            try:
                w.offer(item(incident("opened", 1, **bad)))
                w.offer(item(incident("opened", 1, iid="fine")))
                until(lambda: any(g.body and b'"fine"' in g.body for g in srv.ok()), f"{kind} goes on")
            finally:
                w.stop()
    assert "\r" not in caplog.text and "y:1\n" not in caplog.text


def test_a_url_urllib_cannot_send_is_refused_not_raised() -> None:
    from detector.delivery.transport import Request, post

    res = post(Request("http://a..b/hook", b"{}"), timeout_s=1)
    assert res.outcome == "reject" and res.status is None


def test_a_receiver_down_for_minutes_gets_the_message_with_capped_backoff() -> None:
    """Five minutes of a refused receiver, on an injected clock: the waits grow to the cap (60 s) and no
    further, with jitter, and the message is delivered once the receiver is back."""
    srv = Server()  # down
    waits: list[float] = []

    def sleep(s: float) -> bool:
        waits.append(s)
        if sum(waits) >= 300 and srv._server is None:
            srv.start()  # back after five minutes
        return False

    rec = Receiver.model_validate({"name": "pd", "kind": "pagerduty", "url": srv.url, "secret": "k",
                                   "max_backoff_s": 60})
    rand = iter([0.0, 1.0] * 50)
    w = Worker(rec, b"k", sleep=sleep, rand=lambda: next(rand))
    try:
        w.offer(item(incident("opened", 1)))
        drain(w)
        got = srv.wait(1)
    finally:
        srv.stop()
    assert got[0].json()["event_action"] == "trigger" and w.counts == {"delivered": 1}
    assert sum(waits) >= 300 and max(waits) <= 60
    assert waits[:4] == [0.25, 1.0, 1.0, 4.0]  # 0.5 s doubling, times a jitter in [0.5, 1]
    assert waits[-2:] and all(30 <= x <= 60 for x in waits[-2:])
