"""Delivery reads the incidents topic back, in a consumer group of its own, and feeds the receivers.

The incidents topic is the record of what happened; delivery is derived
from it, so detection never waits for a receiver and a restart neither
loses nor repeats a page beyond what receivers drop by (incident_id, seq):

- Offsets are committed (every ``delivery.commit_interval_s``) only up to
  the first message some receiver has not handled yet (delivered, refused
  with a 4xx, or dropped from a full queue). After a crash, the messages
  after the last commit are read again; a worker that already delivered one
  skips it by (incident_id, seq), and a new process sends it again, which
  the receiver drops by the same pair (PagerDuty by dedup_key and action,
  Alertmanager by label set, a webhook by ``X-Detector-Message``).
- On assignment a partition is read from its beginning (messages older
  than ``delivery.lookback_s`` skipped) up to the committed offset, to know
  which incidents are open (Alertmanager re-sends their alerts) and what
  was delivered. Without a committed offset (the first start, or a new
  group), the messages written more than ``FIRST_START_MARGIN_S`` before
  this process started are that past (read up to the first newer message,
  or to the partition's high watermark), and the incidents still open in it
  are delivered once: a receiver added today learns of the incidents open
  today, not of last week's pages. Nothing is committed for the partition
  until those announcements are handled, so a restart announces them again
  rather than losing them. A past message that arrives after the read-back
  (a producer clock far behind) is delivered, never dropped.
- With several instances in the group, each delivers the partitions it is
  assigned; on revocation the handled positions are committed and a worker
  drops the messages of the partitions it lost (their new owner reads them
  from that commit).

A message on the incidents topic that is not an incident event (not JSON,
no incident_id, seq or route) is skipped and counted; it never stops
delivery.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from detector.config import Config
from detector.delivery.worker import TP, Item, Worker
from detector.metrics import DeliveryMetrics
from detector.service.clients import client_kwargs, secret_value

__all__ = ["Delivery", "receiver_secret", "parse_incident"]

log = logging.getLogger("detector.delivery")

#: Without a committed position, messages written this long before the start are still delivered as new
#: (clocks of other instances may be behind; delivering a recent message twice is harmless, losing it is not).
FIRST_START_MARGIN_S = 300
#: Bad messages logged in full per session; after that, one line every LOG_EVERY.
LOG_FIRST, LOG_EVERY = 10, 1000


def receiver_secret(config: Config, index: int, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The secret of ``config.receivers[index]`` (raises SecretError naming the setting)."""
    r = config.receivers[index]
    got = secret_value(f"receivers.{index}.secret", r.secret, r.secret_env, r.secret_file, environ)
    return None if got is None else got.encode()


def parse_incident(value: bytes | None) -> dict[str, Any] | None:
    """An incident event from a message value; None when it is not one.

    >>> parse_incident(b'{"incident_id": "i", "seq": 2, "route": "r", "event": "opened"}')["seq"]
    2
    >>> parse_incident(b'not json') is None, parse_incident(b'{"incident_id": "i"}') is None
    (True, True)
    """
    if not value:
        return None
    try:
        inc = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(inc, dict) or not isinstance(inc.get("incident_id"), str) \
            or not isinstance(inc.get("route"), str) or type(inc.get("seq")) is not int:
        return None
    return inc


@dataclass
class _Part:
    """A partition being delivered: read back up to ``until`` (the past), then live."""

    #: Messages before this offset are the past (None: written before ``Delivery.boundary_ms``).
    until: int | None
    #: Messages older than this (epoch ms) are not read back (``delivery.lookback_s``).
    since_ms: int
    #: Next offset to read.
    position: int = 0
    rebuilding: bool = True
    #: incident_id -> latest message of the incidents open in the past read so far
    latest: dict[str, Item] = field(default_factory=dict)
    committed: int | None = None
    #: No position was committed at assignment: messages written before ``Delivery.boundary_ms`` are the past.
    first: bool = False
    #: First start: the first offset after the past; announcements (of offsets below it) hold the commit back.
    boundary: int | None = None


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types
    def __init__(self, delivery: Delivery):
        self.delivery = delivery

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Commit what was handled of the partitions going (their next owner starts there), then drop them.
        This runs on the consumer's IO thread: the coordinator's awaitable commit, as the service does."""
        tps = {(tp.topic, tp.partition) for tp in revoked}
        offsets = self.delivery.handled(tps)
        consumer = self.delivery._consumer
        if offsets and consumer is not None:
            try:
                await consumer._coordinator._commit_offsets_sync_async(offsets)
            except Exception as err:  # noqa: BLE001 - the next owner re-reads from the last commit
                log.warning("delivery: commit on revoke failed (%s)", err.__class__.__name__)
        self.delivery._on_revoked(tps)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.delivery._on_assigned({(tp.topic, tp.partition) for tp in assigned})


class Delivery:
    """Reads the incidents topic and hands each incident event to the receivers whose globs match its route.

    ``run()`` blocks until :meth:`stop` (a thread of `detector run`); Kafka errors reconnect after a capped
    backoff. The workers live across reconnections.
    """

    def __init__(self, config: Config, metrics: DeliveryMetrics, *, environ: Mapping[str, str] | None = None,
                 workers: list[Worker] | None = None, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic):
        self.config = config
        self.k = config.kafka
        self.metrics = metrics
        self.environ = environ
        self.wall = wall
        self.mono = mono
        self.workers = workers if workers is not None else [
            Worker(r, receiver_secret(config, i, environ), metrics=metrics) for i, r in enumerate(config.receivers)]
        self.group_id = config.delivery.group_id or f"{self.k.group_id}.delivery"
        self.started_ms = int(wall() * 1000)
        self.boundary_ms = self.started_ms - FIRST_START_MARGIN_S * 1000
        self.parts: dict[TP, _Part] = {}
        self._pending: set[TP] = set()
        self._consumer: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._last_commit = 0.0
        self.skipped = 0
        #: Set when partitions are assigned and read back (tests and the demo wait for it).
        self.ready = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        for w in self.workers:
            w.start()
        backoff = 0.5
        try:
            while not self._stop.is_set():
                started = self.mono()
                try:
                    self._session()
                except Exception as err:  # noqa: BLE001 - Kafka, network, a secret file: retried, never fatal
                    if self.mono() - started > 60:
                        backoff = 0.5
                    log.warning("delivery: kafka error (%s); retrying in %.1f s", err.__class__.__name__, backoff)
                    self._close()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.k.max_backoff_s)
        finally:
            self._close()
            for w in self.workers:
                w.stop()
        return 0

    def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        self.parts.clear()
        self._pending.clear()
        self.ready.clear()
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:  # noqa: BLE001 - closing a broken client must not stop recovery
                pass

    def _session(self) -> None:
        kw = client_kwargs(self.k, self.environ)
        self._consumer = KafkaConsumer(
            group_id=self.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.k.session_timeout_ms, heartbeat_interval_ms=self.k.heartbeat_interval_ms,
            request_timeout_ms=max(30_000, self.k.session_timeout_ms + 5000), **kw)
        self._consumer.subscribe([self.k.incidents_topic], listener=_Listener(self))
        log.info("delivery: reading %s in group %s for %d receiver(s)", self.k.incidents_topic, self.group_id,
                 len(self.workers))
        while not self._stop.is_set():
            self.step()
        self.commit()
        self._close()

    # -- rebalance --------------------------------------------------------------------------------------
    def _on_assigned(self, assigned: set[TP]) -> None:
        assert self._consumer is not None
        self._pending |= assigned
        self._consumer.pause(*[TopicPartition(t, p) for t, p in assigned])
        self.ready.clear()

    def _on_revoked(self, revoked: set[TP]) -> None:
        self._pending -= revoked
        for tp in revoked:
            self.parts.pop(tp, None)
        for w in self.workers:
            w.forget(revoked)

    def _prepare(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        since = int((self.wall() - self.config.delivery.lookback_s) * 1000)
        for tp in sorted(self._pending):
            part = TopicPartition(*tp)
            committed = consumer.committed(part)
            self.parts[tp] = _Part(until=committed, since_ms=since, committed=committed, first=committed is None)
            consumer.seek_to_beginning(part)
        consumer.resume(*[TopicPartition(t, p) for t, p in self._pending])
        self._pending.clear()

    # -- the loop's step --------------------------------------------------------------------------------
    def step(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        batch = consumer.poll(timeout_ms=200, max_records=1000)
        if self._pending:
            self._prepare()
        for part, msgs in batch.items():
            tp = (part.topic, part.partition)
            p = self.parts.get(tp)
            if p is None:
                continue
            for m in msgs:
                self._handle(tp, p, m.offset, m.value, m.timestamp)
        for tp, p in list(self.parts.items()):
            if not p.rebuilding or batch.get(TopicPartition(*tp)):
                continue
            part = TopicPartition(*tp)
            hw = consumer.highwater(part)  # from the last fetch response
            pos = consumer.position(part)
            if (p.until is not None and pos >= p.until) or (hw is not None and pos >= hw):
                p.position = max(p.position, pos)
                self._finish(tp)  # read up to the committed offset, or all there is
        if not self._pending and self.parts and not any(p.rebuilding for p in self.parts.values()):
            self.ready.set()
        if self.mono() - self._last_commit >= self.config.delivery.commit_interval_s:
            self.commit()

    def _handle(self, tp: TP, p: _Part, offset: int, value: bytes | None, ts_ms: int) -> None:
        p.position = offset + 1
        inc = parse_incident(value)
        if inc is None:
            self.skipped += 1
            self.metrics.invalid.inc()
            if self.skipped <= LOG_FIRST or self.skipped % LOG_EVERY == 0:
                log.warning("delivery: %s/%d/%d is not an incident event; skipped (%d so far)", tp[0], tp[1],
                            offset, self.skipped)
            return
        self.metrics.consumed.inc()
        item = Item(inc, value or b"", tp, offset)
        if p.rebuilding:
            past = offset < p.until if p.until is not None else ts_ms < self.boundary_ms
            if past:
                if ts_ms >= p.since_ms:
                    if inc.get("status") == "resolved":
                        p.latest.pop(item.key[0], None)
                    else:
                        p.latest[item.key[0]] = item
                if p.until is not None and offset + 1 >= p.until:
                    self._finish(tp)
                return
            self._finish(tp, end=offset)  # this message is the first after the past
        route = inc["route"]
        for w in self.workers:
            if w.receiver.matches(route):
                w.offer(item)

    def _finish(self, tp: TP, end: int | None = None) -> None:
        """The past of a partition (up to ``end``, else the position read) is read: its open incidents are
        known to the receivers."""
        p = self.parts[tp]
        if not p.rebuilding:
            return
        p.rebuilding = False
        first, announced = p.first, len(p.latest)
        if first:
            p.boundary = p.position if end is None else end
        for item in p.latest.values():
            for w in self.workers:
                if w.receiver.matches(str(item.incident["route"])):
                    if first:  # never delivered by this group: announced (commits wait for it)
                        w.offer(Item(item.incident, item.body, item.tp, item.offset, announce=True))
                    else:
                        w.remember(item)
        p.latest.clear()
        if first:
            log.info("delivery: %s/%d: no committed position; %d open incident(s) announced", tp[0], tp[1],
                     announced)

    def handled(self, tps: set[TP] | None = None) -> dict[TopicPartition, OffsetAndMetadata]:
        """Per partition (of ``tps``, or all), the first offset some receiver has not handled yet, when it is
        past the committed one. A first start's partition has none while its announcements are pending."""
        pending: dict[TP, int] = {}
        for w in self.workers:
            for tp, off in w.pending().items():
                pending[tp] = min(off, pending.get(tp, off))
        offsets = {}
        for tp, p in self.parts.items():
            if p.rebuilding or (tps is not None and tp not in tps):
                continue
            pend = pending.get(tp)
            if p.boundary is not None and pend is not None and pend < p.boundary:
                continue  # announcements not handled yet: a restart must announce them again
            off = p.position if pend is None else min(p.position, pend)
            if p.committed is None or off > p.committed:
                offsets[TopicPartition(*tp)] = OffsetAndMetadata(off, "", -1)
        return offsets

    def commit(self) -> None:
        """Commit what every receiver has handled."""
        consumer = self._consumer
        self._last_commit = self.mono()
        if consumer is None:
            return
        offsets = self.handled()
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except KafkaError as err:  # read again after a restart; receivers drop what they have
            log.warning("delivery: commit failed (%s)", err.__class__.__name__)
            return
        self._committed(offsets)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        for part, om in offsets.items():
            p = self.parts.get((part.topic, part.partition))
            if p is not None:
                p.committed = om.offset
