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
  group), the messages written before this process started are that past,
  and the incidents still open in it are delivered once: a receiver added
  today learns of the incidents open today, not of last week's pages.
- With several instances in the group, each delivers the partitions it is
  assigned; on revocation a worker drops the messages of the partitions it
  lost (their new owner reads them from the last commit).

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

from detector.config import Config, Receiver
from detector.delivery.worker import TP, Item, Worker
from detector.metrics import DeliveryMetrics
from detector.service.clients import client_kwargs, secret_value

__all__ = ["Delivery", "receiver_secret", "parse_incident"]

log = logging.getLogger("detector.delivery")

#: Without a committed position, a partition's past ends when no message of it came for this long.
QUIET_S = 1.0


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

    #: Messages before this offset are the past (None: before the wall time ``since_ms``).
    until: int | None
    since_ms: int
    #: Next offset to read.
    position: int = 0
    rebuilding: bool = True
    #: incident_id -> latest message of the incidents open in the past read so far
    latest: dict[str, Item] = field(default_factory=dict)
    committed: int | None = None
    #: No position was committed at assignment: messages written before this process started are the past.
    first: bool = False
    #: When a message of the partition last came (monotonic), or when it was resumed.
    active: float = 0.0


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types
    def __init__(self, delivery: Delivery):
        self.delivery = delivery

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.delivery._on_revoked({(tp.topic, tp.partition) for tp in revoked})

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
                except (KafkaError, OSError) as err:
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
            self.parts[tp] = _Part(until=committed, since_ms=since, committed=committed, first=committed is None,
                                   active=self.mono())
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
        now = self.mono()
        for tp, p in self.parts.items():
            if not p.rebuilding or batch.get(TopicPartition(*tp)):
                continue
            if p.until is not None:  # read up to the committed offset (or nothing older is left)
                if consumer.position(TopicPartition(*tp)) >= p.until:
                    self._finish(tp)
            elif now - p.active >= QUIET_S:  # no commit: the past ends when the partition is quiet
                self._finish(tp)
        if not self._pending and self.parts and not any(p.rebuilding for p in self.parts.values()):
            self.ready.set()
        if self.mono() - self._last_commit >= self.config.delivery.commit_interval_s:
            self.commit()

    def _handle(self, tp: TP, p: _Part, offset: int, value: bytes | None, ts_ms: int) -> None:
        p.position = offset + 1
        p.active = self.mono()
        inc = parse_incident(value)
        if inc is None:
            self.skipped += 1
            log.warning("delivery: %s/%d/%d is not an incident event; skipped", tp[0], tp[1], offset)
            return
        self.metrics.consumed.inc()
        item = Item(inc, value or b"", tp, offset)
        if p.rebuilding:
            past = offset < p.until if p.until is not None else ts_ms < self.started_ms
            if past:
                if ts_ms >= p.since_ms:
                    if inc.get("status") == "resolved":
                        p.latest.pop(item.key[0], None)
                    else:
                        p.latest[item.key[0]] = item
                if p.until is not None and offset + 1 >= p.until:
                    self._finish(tp)
                return
            self._finish(tp)
        elif p.first and ts_ms < self.started_ms:
            return  # the past, come late: its open incidents were announced already
        route = inc["route"]
        for w in self.workers:
            if w.receiver.matches(route):
                w.offer(item)

    def _finish(self, tp: TP) -> None:
        """The past of a partition is read: its open incidents are known to the receivers."""
        p = self.parts[tp]
        if not p.rebuilding:
            return
        p.rebuilding = False
        first, announced = p.first, len(p.latest)
        for item in p.latest.values():
            for w in self.workers:
                if w.receiver.matches(str(item.incident["route"])):
                    if first:  # never delivered by this group: announced once, not tracked for commits
                        w.offer(Item(item.incident, item.body))
                    else:
                        w.remember(item)
        p.latest.clear()
        if first:
            log.info("delivery: %s/%d: no committed position; %d open incident(s) announced", tp[0], tp[1],
                     announced)

    def commit(self) -> None:
        """Commit, per partition, the first offset some receiver has not handled yet."""
        consumer = self._consumer
        self._last_commit = self.mono()
        if consumer is None:
            return
        pending: dict[TP, int] = {}
        for w in self.workers:
            for tp, off in w.pending().items():
                pending[tp] = min(off, pending.get(tp, off))
        offsets = {}
        for tp, p in self.parts.items():
            if p.rebuilding:
                continue
            off = min(p.position, pending.get(tp, p.position))
            if p.committed is None or off > p.committed:
                offsets[TopicPartition(*tp)] = OffsetAndMetadata(off, "", -1)
                p.committed = off
        if offsets:
            try:
                consumer.commit(offsets)
            except KafkaError as err:  # read again after a restart; receivers drop what they have
                log.warning("delivery: commit failed (%s)", err.__class__.__name__)

    @staticmethod
    def matching(receivers: list[Receiver], route: str) -> list[str]:
        """Names of the receivers an incident on ``route`` goes to.

        >>> from detector.config import Receiver
        >>> rs = [Receiver(name="am", kind="alertmanager", url="http://am:9093"),
        ...       Receiver(name="pd", kind="pagerduty", secret="k", routes=["payments.*"])]
        >>> Delivery.matching(rs, "payments.refund"), Delivery.matching(rs, "support.reply")
        (['am', 'pd'], ['am'])
        """
        return [r.name for r in receivers if r.matches(route)]
