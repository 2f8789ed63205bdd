"""Creating the topics the service needs when they are missing (``kafka.create_topics``).

The changelog gets at least as many partitions as the largest telemetry topic
(input partition p keeps its state in changelog partition p, or p modulo the
changelog's count when it already exists with fewer), ``cleanup.policy=compact``
and ``min.compaction.lag.ms`` of an hour, so the version before a checkpoint
cut short by a crash is not compacted away under it. The containment topic is
compacted too; the control topic has one partition, so commands keep one order.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from detector.config import KafkaConfig

__all__ = ["ensure_topics"]

COMPACT = {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000"}


def ensure_topics(k: KafkaConfig, kw: dict[str, Any]) -> None:
    """Create what is missing (several instances may race: an existing topic is fine)."""
    admin = KafkaAdminClient(**{key: v for key, v in kw.items() if key in KafkaAdminClient.DEFAULT_CONFIG},
                             request_timeout_ms=10_000)
    try:
        have = set(admin.list_topics())
        n, rf = k.partitions, k.replication_factor
        wanted = [NewTopic(t, n, rf) for t in k.telemetry_topics]
        wanted += [NewTopic(k.incidents_topic, n, rf), NewTopic(k.dlq_topic, n, rf),
                   NewTopic(k.control_topic, 1, rf),
                   NewTopic(k.containment_topic, n, rf, topic_configs={"cleanup.policy": "compact"}),
                   NewTopic(k.inventory_topic, 1, rf, topic_configs={"cleanup.policy": "compact"})]
        input_parts = n
        for t in k.telemetry_topics:
            if t in have:
                desc = admin.describe_topics([t])
                input_parts = max(input_parts, len(desc[0].get("partitions", ())) if desc else n)
        wanted.append(NewTopic(k.changelog_topic, input_parts, rf, topic_configs=COMPACT))
        for t in wanted:
            if t.name in have:
                continue
            try:
                admin.create_topics([t])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
