"""A receiver's queue and the thread that empties it, apart from detection.

Whoever reads incident events (:mod:`detector.delivery.consumer`) hands
each to every receiver whose route globs match, with :meth:`Worker.offer`:
it never blocks. A queue holds at most ``queue_size`` messages; a message
offered to a full queue is dropped and counted, so a receiver that is down
for long costs memory and messages of its own, never detection's time nor
another receiver's deliveries.

The thread sends the messages in order. A message the receiver does not
take (5xx, 408, 429, timeout, refused connection) is tried again after a
capped exponential backoff with jitter, for as long as it takes: a receiver
down for minutes gets every message once it is back. A 4xx is the
receiver's refusal of that message: logged with the receiver's name and
counted, then the next one. Messages are deduplicated by (incident_id,
seq): a message read twice (after a restart) is sent once by this process,
and receivers can drop the rest by the same pair.

Each kind of receiver is an :class:`Adapter`: what to send for a message
(built again at each attempt, so a webhook signature carries the time of
the attempt), and, for Alertmanager, the open incidents re-sent every
``resend_s`` so their alerts do not end by themselves.

The clock, the wait, the randomness and the HTTP call are injected: tests
drive a worker step by step without threads.

>>> from detector.config import Receiver
>>> sent = []
>>> def post(req, timeout_s):
...     sent.append(json.loads(req.body)["event_action"])
...     return Result("ok", 202, "HTTP 202")
>>> w = Worker(Receiver(name="pd", kind="pagerduty", secret="KEY"), secret=b"KEY", post=post)
>>> inc = {"event": "opened", "incident_id": "i1", "seq": 1, "route": "r", "status": "open"}
>>> w.offer(Item(inc, b"{}")), w.offer(Item(inc, b"{}")), w.offer(Item({**inc, "event": "resolved", "seq": 2}, b"{}"))
(True, True, True)
>>> while w.step(0): pass
>>> sent, w.counts
(['trigger', 'resolve'], {'delivered': 2, 'duplicate': 1})
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from detector.config import Receiver
from detector.delivery.payloads import alert_labels, alertmanager_alert, pagerduty_event, webhook_headers
from detector.delivery.transport import Request, Result
from detector.delivery.transport import post as http_post
from detector.metrics import DeliveryMetrics

__all__ = ["Item", "Worker", "Adapter", "adapter_for", "TP", "BACKOFF_START_S"]

log = logging.getLogger("detector.delivery")

TP = tuple[str, int]
#: The first retry waits about this long; each next one twice as long, up to the receiver's max_backoff_s.
BACKOFF_START_S = 0.5
#: (incident_id, seq) pairs remembered for deduplication, at most.
REMEMBERED = 100_000
#: Alerts in one Alertmanager POST, at most.
ALERTS_PER_POST = 500


@dataclass(frozen=True)
class Item:
    """An incident event to deliver: parsed, its bytes as published, and where it was read."""

    incident: Mapping[str, Any]
    body: bytes
    tp: TP | None = None
    offset: int = -1
    #: Delivered because it was open when this group first started, not because it just happened: a
    #: receiver that has never heard of the incident must learn of it whatever its latest event.
    announce: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return str(self.incident.get("incident_id")), int(self.incident.get("seq") or 0)


class Adapter(Protocol):
    def accept(self, item: Item) -> None:
        """Update what the receiver is known to hold (once per message, before it is sent)."""

    def build(self, item: Item, now_s: float) -> list[Request]:
        """The requests for a message at this attempt, in order (made again at each attempt)."""

    def done(self, item: Item) -> None:
        """The message was taken or refused: forget what its sending needed."""

    def due(self, now_s: float) -> list[Request]:
        """Periodic re-sends due now (none for most kinds)."""

    def forget(self, tps: set[TP]) -> None:
        """Drop what came from these partitions (another instance delivers them now)."""


class _Stateless:
    def accept(self, item: Item) -> None:
        return None

    def done(self, item: Item) -> None:
        return None

    def due(self, now_s: float) -> list[Request]:
        return []

    def forget(self, tps: set[TP]) -> None:
        return None


class PagerDuty(_Stateless):
    def __init__(self, receiver: Receiver, key: bytes):
        self.url = receiver.target
        self.key = key.decode()

    def build(self, item: Item, now_s: float) -> list[Request]:
        body = pagerduty_event(item.incident, self.key)
        out = [Request(self.url, json.dumps(body).encode())]
        if item.announce and body["event_action"] == "acknowledge":  # PagerDuty drops an ack of an unknown key
            trigger = pagerduty_event({**item.incident, "event": "opened"}, self.key)
            out.insert(0, Request(self.url, json.dumps(trigger).encode()))
        return out


class Webhook(_Stateless):
    def __init__(self, receiver: Receiver, key: bytes):
        self.url = receiver.target
        self.key = key

    def build(self, item: Item, now_s: float) -> list[Request]:
        return [Request(self.url, item.body, webhook_headers(item.body, self.key, item.incident, now_s))]


@dataclass
class _Open:
    incident: Mapping[str, Any]
    labels: dict[str, str]
    tp: TP | None


class Alertmanager:
    """Alerts of open incidents, re-sent every ``resend_s``; a resolved incident's alert is sent ended, and so
    is the alert of a label set an incident no longer has (its severity changed)."""

    def __init__(self, receiver: Receiver):
        self.url = receiver.target
        self.resend_s = receiver.resend_s
        self.open: dict[str, _Open] = {}
        #: incident_id -> label sets to end with its next send
        self.ending: dict[str, list[dict[str, str]]] = {}
        self.last_resend = 0.0

    def accept(self, item: Item) -> None:
        inc = item.incident
        iid = str(inc.get("incident_id"))
        labels = alert_labels(inc)
        if not self.open:  # the re-sends start one interval after the first open incident is sent
            self.last_resend = 0.0
        before = self.open.pop(iid, None)
        if before is not None and before.labels != labels:
            self.ending.setdefault(iid, []).append(before.labels)
        if inc.get("status") != "resolved":
            self.open[iid] = _Open(inc, labels, item.tp)

    def build(self, item: Item, now_s: float) -> list[Request]:
        inc = item.incident
        alerts = [alertmanager_alert(inc, now_s, self.resend_s)]
        for old in self.ending.get(str(inc.get("incident_id")), []):
            alerts.append(alertmanager_alert(inc, now_s, self.resend_s, labels=old))
        return [Request(self.url, json.dumps(alerts).encode())]

    def done(self, item: Item) -> None:
        self.ending.pop(str(item.incident.get("incident_id")), None)

    def due(self, now_s: float) -> list[Request]:
        if not self.open:
            return []
        if not self.last_resend:
            self.last_resend = now_s
        if now_s - self.last_resend < self.resend_s:
            return []
        self.last_resend = now_s
        alerts = [alertmanager_alert(o.incident, now_s, self.resend_s) for o in self.open.values()]
        return [Request(self.url, json.dumps(alerts[i:i + ALERTS_PER_POST]).encode())
                for i in range(0, len(alerts), ALERTS_PER_POST)]

    def forget(self, tps: set[TP]) -> None:
        self.open = {k: o for k, o in self.open.items() if o.tp not in tps}
        self.ending = {k: v for k, v in self.ending.items() if k in self.open}


def _safe(text: str, limit: int = 80) -> str:
    r"""An id from the topic as a log may show it: printable ASCII, bounded (a forged id cannot forge a line).

    >>> _safe("inc-1\nFAKE LOG LINE")
    'inc-1?FAKE LOG LINE'
    """
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def adapter_for(receiver: Receiver, secret: bytes | None) -> Adapter:
    if receiver.kind == "alertmanager":
        return Alertmanager(receiver)
    assert secret is not None, "pagerduty and webhook receivers have a secret (config validation)"
    return PagerDuty(receiver, secret) if receiver.kind == "pagerduty" else Webhook(receiver, secret)


class Worker:
    """One receiver: a bounded queue, deduplication, retries, and (Alertmanager) re-sends of open incidents."""

    def __init__(self, receiver: Receiver, secret: bytes | None = None, *,
                 post: Callable[[Request, float], Result] = http_post, wall: Callable[[], float] = time.time,
                 rand: Callable[[], float] = random.random, sleep: Callable[[float], bool] | None = None,
                 metrics: DeliveryMetrics | None = None):
        self.receiver = receiver
        self.name = receiver.name
        self.adapter = adapter_for(receiver, secret)
        self.post = post
        self.wall = wall
        self.rand = rand
        self.metrics = metrics
        self._cv = threading.Condition()
        self._queue: deque[Item] = deque()
        #: ("remember", Item) or ("forget", set of partitions): applied by the worker, in order, unbounded.
        self._control: deque[tuple[str, Any]] = deque()
        self._inflight: Item | None = None
        self._stop = threading.Event()
        #: Waits between attempts; True when the worker is stopping.
        self.sleep = sleep if sleep is not None else self._stop.wait
        #: incident_id -> highest seq delivered (or refused), the most recent REMEMBERED incidents.
        self.delivered: OrderedDict[str, int] = OrderedDict()
        self.counts: dict[str, int] = {}
        self._counts_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- called by the reader (any thread) ----------------------------------------------------------
    def offer(self, item: Item) -> bool:
        """Queue a message; False (and counted as dropped) when the queue is full."""
        with self._cv:
            if len(self._queue) >= self.receiver.queue_size:
                full = True
                # not sent, but what the receiver is known to hold follows it: a dropped resolve stops the
                # Alertmanager re-sends of its alert (which then ends by itself) instead of keeping it firing
                self._control.append(("remember", item))
                self._cv.notify()
            else:
                full = False
                self._queue.append(item)
                self._cv.notify()
        if full:
            self._count("dropped")
            iid, seq = item.key
            log.warning("delivery: receiver %s: queue full (%d), message %s:%d dropped", self.name,
                        self.receiver.queue_size, _safe(iid), seq)
        self._gauge()
        return not full

    def remember(self, item: Item) -> None:
        """A message handled before (read back at a restart): never sent again; its incident's state kept."""
        with self._cv:
            self._control.append(("remember", item))
            self._cv.notify()

    def forget(self, tps: Iterable[TP]) -> None:
        """Partitions now delivered by another instance: their queued messages and open alerts go."""
        gone = set(tps)
        with self._cv:
            self._queue = deque(i for i in self._queue if i.tp not in gone)
            self._control.append(("forget", gone))
            self._cv.notify()
        self._gauge()

    def pending(self) -> dict[TP, int]:
        """The lowest offset not yet handled, per partition (queued or being sent)."""
        out: dict[TP, int] = {}
        with self._cv:
            items = list(self._queue) + ([self._inflight] if self._inflight is not None else [])
            for ctl, item in self._control:
                if ctl == "remember":
                    items.append(item)
        for i in items:
            if i.tp is not None and (i.tp not in out or i.offset < out[i.tp]):
                out[i.tp] = i.offset
        return out

    def __len__(self) -> int:
        with self._cv:
            return len(self._queue)

    # -- the worker -------------------------------------------------------------------------------------
    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run, name=f"delivery-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(1.0)
            except Exception as err:  # noqa: BLE001 - one bad message must not end delivery for the rest
                log.error("delivery: receiver %s: unexpected %s; carrying on", self.name, err.__class__.__name__)

    def step(self, block_s: float) -> bool:
        """Apply control messages, send what is due, then one message (waiting up to ``block_s`` for one).
        False when there was nothing to send."""
        with self._cv:
            if not self._queue and not self._control and block_s > 0:
                self._cv.wait(min(block_s, self._until_due()))
            controls, self._control = list(self._control), deque()
            item = self._queue.popleft() if self._queue else None
            self._inflight = item
        for ctl, arg in controls:
            if ctl == "remember":
                self._remember(arg)
            else:
                self.adapter.forget(arg)
        self._resend()
        if item is None:
            return bool(controls)
        try:
            self._deliver(item)
        finally:
            with self._cv:
                self._inflight = None
            self._gauge()
        return True

    def _until_due(self) -> float:
        """Seconds until the adapter's next re-send (an hour when it has none)."""
        a = self.adapter
        if not isinstance(a, Alertmanager) or not a.open:
            return 3600.0
        return max(0.05, a.last_resend + self.receiver.resend_s - self.wall())

    def _remember(self, item: Item) -> None:
        iid, seq = item.key
        if self.delivered.get(iid, 0) > seq:
            return  # something newer of it was delivered here since
        self.adapter.accept(item)  # again after a rebalance: the open incidents' re-sends go on
        self._mark(iid, seq)

    def _mark(self, iid: str, seq: int) -> None:
        self.delivered[iid] = seq
        self.delivered.move_to_end(iid)
        if len(self.delivered) > REMEMBERED:
            self.delivered.popitem(last=False)

    def _resend(self) -> None:
        try:
            due = self.adapter.due(self.wall())
        except Exception as err:  # noqa: BLE001 - a malformed incident must not stop the re-sends of the rest
            log.error("delivery: receiver %s: re-send failed (%s)", self.name, err.__class__.__name__)
            return
        for req in due:
            res = self.post(req, self.receiver.timeout_s)
            if self.metrics is not None:
                self.metrics.resends.labels(self.name, res.outcome).inc()
            if res.outcome != "ok":
                log.warning("delivery: receiver %s: re-send of open incidents failed: %s", self.name, res.reason)

    def _deliver(self, item: Item) -> None:
        iid, seq = item.key
        if self.delivered.get(iid, 0) >= seq:
            self._count("duplicate")
            return
        attempt = sent = 0
        try:
            self.adapter.accept(item)
        except Exception as err:  # noqa: BLE001 - a malformed incident: refused like a 4xx, never retried
            self._refused(iid, seq, err.__class__.__name__)
            self._mark(iid, seq)
            return
        while True:
            try:
                reqs = self.adapter.build(item, self.wall())
            except Exception as err:  # noqa: BLE001
                self._refused(iid, seq, err.__class__.__name__)
                break
            res = Result("ok", None, "")
            while sent < len(reqs):  # requests taken at an earlier attempt are not sent again
                res = self.post(reqs[sent], self.receiver.timeout_s)
                if res.outcome != "ok":
                    break
                sent += 1
            if res.outcome == "ok":
                self._count("delivered")
                break
            if res.outcome == "reject":
                self._refused(iid, seq, res.reason)
                break
            if self.metrics is not None:
                self.metrics.retries.labels(self.name).inc()
            wait = min(self.receiver.max_backoff_s, BACKOFF_START_S * 2 ** min(attempt, 30))
            wait *= 0.5 + 0.5 * self.rand()  # jitter: receivers coming back are not hit all at once
            if attempt == 0 or attempt % 10 == 0:
                log.warning("delivery: receiver %s: message %s:%d not taken (%s); retrying in %.1f s", self.name,
                            _safe(iid), seq, res.reason, wait)
            attempt += 1
            if self.sleep(wait):
                return  # stopping: the message is not marked, its position not committed
            self._resend()
        self.adapter.done(item)
        self._mark(iid, seq)

    def _refused(self, iid: str, seq: int, reason: str) -> None:
        self._count("rejected")
        log.warning("delivery: receiver %s refused message %s:%d (%s); not retried", self.name, _safe(iid), seq,
                    reason)

    def _count(self, outcome: str) -> None:
        with self._counts_lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.outcome(self.name, outcome)

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queued.labels(self.name).set(len(self))
