"""Read one incident's messages back from the incidents topic (for `detector incident review`).

The topic is keyed by incident_id, so the messages of one incident are on one partition; every partition
is read from its beginning until no message came for ``quiet_s`` (no end offsets are needed, which some
Kafka-compatible brokers answer wrongly).
"""

from __future__ import annotations

import json
import time
from typing import Any

from detector.config import Config
from detector.service.clients import client_kwargs

__all__ = ["read_incident"]


def read_incident(config: Config, incident_id: str, quiet_s: float = 2.0, timeout_s: float = 120.0) -> list[Any]:
    """The parsed messages on the incidents topic whose key is ``incident_id``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(config.kafka))
    try:
        topic = config.kafka.incidents_topic
        parts = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        consumer.seek_to_beginning()
        key = incident_id.encode()
        out: list[Any] = []
        last = start = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - start < timeout_s:
            got = consumer.poll(timeout_ms=200)
            for msgs in got.values():
                for m in msgs:
                    if m.key == key:
                        try:
                            out.append(json.loads(m.value))
                        except (ValueError, TypeError):
                            continue
            if got:
                last = time.monotonic()
        return out
    finally:
        consumer.close()
