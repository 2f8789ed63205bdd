"""Read operator views back from Kafka: one incident's messages (`detector incident review`) and the route
inventory the instances write (`detector routes --bootstrap-servers`).

Every partition is read from its beginning up to the high watermark its fetch responses report (not
``end_offsets``, which some Kafka-compatible brokers answer wrongly), or until nothing came for ``quiet_s``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from detector.config import Config
from detector.service.clients import client_kwargs

__all__ = ["read_incident", "read_inventory"]


def _read(config: Config, topic: str, keep: Callable[[bytes | None], bool], quiet_s: float,
          timeout_s: float) -> list[tuple[bytes | None, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **client_kwargs(config.kafka))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:  # no such topic (yet): nothing written to it
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning()
        out: list[tuple[bytes | None, Any]] = []
        last = start = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - start < timeout_s:
            got = consumer.poll(timeout_ms=200)
            for msgs in got.values():
                for m in msgs:
                    if not keep(m.key):
                        continue
                    try:
                        out.append((m.key, json.loads(m.value) if m.value is not None else None))
                    except (ValueError, TypeError):
                        continue
            if got:
                last = time.monotonic()
            hws = [consumer.highwater(tp) for tp in tps]
            if all(hw is not None and consumer.position(tp) >= hw for tp, hw in zip(tps, hws, strict=True)):
                break  # caught up with what was there when read
        return out
    finally:
        consumer.close()


def read_incident(config: Config, incident_id: str, quiet_s: float = 2.0, timeout_s: float = 120.0) -> list[Any]:
    """The parsed messages on the incidents topic whose key is ``incident_id``."""
    key = incident_id.encode()
    return [v for _, v in _read(config, config.kafka.incidents_topic, lambda k: k == key, quiet_s, timeout_s)]


def read_inventory(config: Config, now_s: float, max_age_s: float = 600.0, quiet_s: float = 2.0,
                   timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """The latest inventory row of each route, written less than ``max_age_s`` ago (older ones come from an
    instance that stopped, or a route no longer held)."""
    latest: dict[bytes | None, Any] = {}
    for key, value in _read(config, config.kafka.inventory_topic, lambda k: True, quiet_s, timeout_s):
        latest[key] = value
    out = []
    for row in latest.values():
        if not isinstance(row, dict):
            continue
        try:
            age = now_s - datetime.fromisoformat(str(row.get("at"))).timestamp()
        except ValueError:
            continue
        if age <= max_age_s:
            out.append(row)
    return sorted(out, key=lambda r: str(r.get("route")))
