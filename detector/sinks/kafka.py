"""Everything the service writes to Kafka goes through one producer (acks=all).

Topics (SPEC sections 2 and 2b): incident events (key = incident_id),
dead letters (the original bytes and key, with ``detector.reason``,
``detector.detail`` and ``detector.source`` headers), containment state
(compacted, key = route) and the changelog (compacted).

A send that fails is remembered; :meth:`Outputs.flush` raises
:class:`ProduceFailed` if any send since the previous flush failed, so the
caller never commits input offsets whose outputs may be missing.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

from detector.ingest.decode import Rejection

__all__ = ["Outputs", "ProduceFailed", "Producer", "dead_letter_headers", "incident_value"]


class ProduceFailed(Exception):
    """A message could not be delivered; its inputs must be processed again."""


class _Future(Protocol):
    def add_errback(self, f: Any, *args: Any, **kwargs: Any) -> Any: ...


class Producer(Protocol):
    """What :class:`Outputs` needs of ``kafka.KafkaProducer``."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...


def incident_value(incident: dict[str, Any]) -> bytes:
    """An incident event as its message value (stable key order, UTF-8)."""
    return json.dumps(incident, ensure_ascii=False, separators=(",", ":")).encode()


def dead_letter_headers(rejection: Rejection, source: str) -> list[tuple[str, bytes]]:
    """SPEC 2b headers: reason, detail (field path, never a value), source ``topic/partition/offset``.

    >>> dead_letter_headers(Rejection("invalid_field", "$.latency_ms: expected a number"), "t/0/5")
    [('detector.reason', b'invalid_field'), ('detector.detail', b'$.latency_ms: expected a number'), \
('detector.source', b't/0/5')]
    """
    return [("detector.reason", rejection.reason.encode()), ("detector.detail", rejection.detail.encode()),
            ("detector.source", source.encode())]


class Outputs:
    """Typed sends over one producer, with failure tracking per flush."""

    def __init__(self, producer: Producer, *, incidents: str, dlq: str, containment: str, changelog: str):
        self.producer = producer
        self.incidents_topic = incidents
        self.dlq_topic = dlq
        self.containment_topic = containment
        self.changelog_topic = changelog
        self._lock = threading.Lock()
        self._failures = 0
        self._first_failure = ""
        self.failures_total = 0
        self.inventory_failures = 0
        self.sent_bytes = 0

    def _errback(self, exc: BaseException) -> None:
        with self._lock:
            if not self._failures:
                self._first_failure = exc.__class__.__name__  # the kind only: a message may quote a value
            self._failures += 1
            self.failures_total += 1

    def _send(self, topic: str, value: bytes | None, key: bytes | None,
              headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        try:
            fut = self.producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        except Exception as err:  # noqa: BLE001 - buffer full, broker gone, too large: never silently lost
            self._errback(err)
            return
        fut.add_errback(self._errback)
        self.sent_bytes += len(value or b"") + len(key or b"")

    def incident(self, incident: dict[str, Any]) -> None:
        self._send(self.incidents_topic, incident_value(incident), str(incident["incident_id"]).encode())

    def dead_letter(self, raw: bytes, key: bytes | None, rejection: Rejection, source: str) -> None:
        self._send(self.dlq_topic, raw, key, dead_letter_headers(rejection, source))

    def containment(self, record: dict[str, Any]) -> None:
        self._send(self.containment_topic, json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode(),
                   str(record["route"]).encode())

    def inventory(self, topic: str, record: dict[str, Any]) -> None:
        """One route's inventory row (key = route; the topic is compacted). Best effort: a failed send (the
        topic missing where topics are not created) is counted in ``inventory_failures``, never fails a
        flush, so detection is not restarted for a view."""
        try:
            fut = self.producer.send(topic, value=json.dumps(record, ensure_ascii=False,
                                                             separators=(",", ":")).encode(),
                                     key=str(record["route"]).encode())
        except Exception:  # noqa: BLE001
            self._inventory_failed(None)
            return
        fut.add_errback(self._inventory_failed)

    def _inventory_failed(self, exc: BaseException | None) -> None:
        with self._lock:
            self.inventory_failures += 1

    def changelog(self, key: bytes, value: bytes | None, partition: int) -> None:
        self._send(self.changelog_topic, value, key, partition=partition)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every send; raise :class:`ProduceFailed` if any failed since the last flush."""
        self.producer.flush(timeout=timeout)
        with self._lock:
            failed, self._failures, first = self._failures, 0, self._first_failure
        if failed:
            raise ProduceFailed(f"{failed} message(s) could not be delivered, first: {first}")
