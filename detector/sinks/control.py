"""Write one operator command to the control topic (SPEC 2b), for `detector incident` and `detector silence`."""

from __future__ import annotations

from detector.config import Config
from detector.service.clients import client_kwargs

__all__ = ["send_command"]


def send_command(config: Config, key: bytes, value: bytes, timeout_s: float = 15.0) -> str:
    """Produce the command (acks=all) and wait for it; returns ``topic/partition/offset``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", max_block_ms=int(timeout_s * 1000),
                             request_timeout_ms=int(timeout_s * 1000), **client_kwargs(config.kafka))
    try:
        meta = producer.send(config.kafka.control_topic, key=key, value=value).get(timeout=timeout_s)
    finally:
        producer.close(timeout=5)
    return f"{meta.topic}/{meta.partition}/{meta.offset}"
