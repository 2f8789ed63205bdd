"""Prometheus metrics of the service, on an injected registry.

Every name starts with ``detector_``; durations are in seconds, sizes in
bytes, counters end in ``_total``. Labels are bounded: ``topic`` and
``partition`` for per-partition series, and otherwise only values from
closed lists (rejection reasons, incident events, types and severities,
detector signals, eviction causes, commands and their results); any value
outside its list is counted as ``other``. A route name, an incident id, a
request or trace id never becomes a label value. Nothing is registered on
prometheus-client's global default registry.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> reg = CollectorRegistry()
>>> m = Metrics(reg)
>>> m.observe_incident({"event": "opened", "incident_type": "cost", "severity": "high", "route": "checkout"})
>>> m.observe_incident({"event": "opened", "incident_type": "typo", "severity": "high", "route": "checkout"})
>>> text = generate_latest(reg).decode()
>>> for line in text.splitlines():
...     if line.startswith("detector_incident_events_total"):
...         print(line)
detector_incident_events_total{event="opened",incident_type="cost",severity="high"} 1.0
detector_incident_events_total{event="opened",incident_type="other",severity="high"} 1.0
>>> "checkout" in text
False
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector.detectors.canary import CANARY_SIGNALS
from detector.detectors.routes import SIGNALS
from detector.events import INCIDENT_TYPES
from detector.incidents.commands import COMMANDS
from detector.ingest.decode import REJECT_REASONS
from detector.pipeline import Stats

__all__ = [
    "Metrics",
    "OTHER",
    "REASONS",
    "INCIDENT_EVENTS",
    "SEVERITIES",
    "INCIDENT_TYPE_NAMES",
    "SIGNAL_NAMES",
    "EVICTION_CAUSES",
    "COMMAND_NAMES",
    "COMMAND_RESULTS",
    "bounded",
    "DeliveryMetrics",
    "DELIVERY_OUTCOMES",
]

#: The label value of anything outside its closed list.
OTHER = "other"
#: Rejection and dead-letter reasons (telemetry and command decoding share them).
REASONS: frozenset[str] = frozenset(REJECT_REASONS)
INCIDENT_EVENTS: frozenset[str] = frozenset(
    {"opened", "updated", "escalated", "acknowledged", "contained", "resolved"})
SEVERITIES: frozenset[str] = frozenset({"critical", "high", "medium", "low"})
INCIDENT_TYPE_NAMES: frozenset[str] = frozenset(INCIDENT_TYPES)
#: Every signal a route's detector set can fire on (``detector.detectors.routes``).
SIGNAL_NAMES: frozenset[str] = frozenset(s.name for s in SIGNALS) | {
    "slo_burn_rate", "guardrail_spend", "guardrail_p95", "guardrail_error_rate", "guardrail_rejection_rate",
    *CANARY_SIGNALS}
EVICTION_CAUSES: frozenset[str] = frozenset({"idle", "capacity"})
#: Operator commands, and ``invalid`` for a control message that did not decode.
COMMAND_NAMES: frozenset[str] = frozenset(COMMANDS) | {"invalid"}
#: ``applied``; ``not_here`` (the incident is not on this instance's partitions, another may hold it);
#: ``unknown_incident`` (no instance holds it) or another rejection reason of an invalid command.
COMMAND_RESULTS: frozenset[str] = frozenset({"applied", "not_here"}) | REASONS
#: Incident events as the command that causes them (the loop may pass either).
_COMMAND_OF_EVENT = {"acknowledged": "acknowledge", "contained": "contain", "resolved": "resolve"}

_PARTITION = ["topic", "partition"]
_BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1000, 2500, 5000)
_CHECKPOINT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RESTORE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def bounded(value: Any, allowed: Iterable[str]) -> str:
    """``value`` as a label value when it is in ``allowed``, else ``other``.

    >>> bounded("late", REASONS), bounded("route-a", REASONS), bounded(None, REASONS)
    ('late', 'other', 'other')
    """
    v = value if isinstance(value, str) else ""
    return v if v in allowed else OTHER


class Metrics:
    """Every metric of ``detector run``, registered on ``registry``, with typed update methods.

    The service loop calls the methods; the attributes are the prometheus-client objects (for
    tests and for reading values back). Counters that come from a pipeline's :class:`Stats` are
    fed by :meth:`add_stats_delta` with copies taken before and after a batch.

    >>> from collections import Counter
    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> m = Metrics(reg)
    >>> m.add_stats_delta("ai.telemetry", 3, Stats(), Stats(read=5, accepted=3, rejected=Counter(late=2)))
    >>> reg.get_sample_value("detector_events_consumed_total", {"topic": "ai.telemetry", "partition": "3"})
    5.0
    >>> reg.get_sample_value("detector_events_rejected_total", {"reason": "late"})
    2.0
    """

    def __init__(self, registry: CollectorRegistry):
        r = registry
        # -- input ----------------------------------------------------------------------------------
        self.consumed = Counter("detector_events_consumed_total",
                                "Telemetry messages read from the partition, valid or not.", _PARTITION, registry=r)
        self.accepted = Counter("detector_events_accepted_total",
                                "Telemetry events accepted into windows.", _PARTITION, registry=r)
        self.rejected = Counter("detector_events_rejected_total",
                                "Telemetry messages rejected, by reason (late ones included).", ["reason"],
                                registry=r)
        self.spans_ignored = Counter("detector_spans_ignored_total",
                                     "OpenTelemetry spans without GenAI attributes on OTLP topics (ignored).",
                                     registry=r)
        self.spans_rejected = Counter("detector_spans_rejected_total",
                                      "GenAI spans rejected (no route, absurd values); their message is dead-lettered.",
                                      registry=r)
        self.late = Counter("detector_events_late_total",
                            "Events whose window had already closed (also in rejected, reason late).", registry=r)
        self.duplicates = Counter("detector_events_duplicate_total",
                                  "Events dropped because their event_id was seen before.", registry=r)
        self.skewed = Counter("detector_skewed_clock_events_total",
                              "Events from skewed producer clocks: more than windows.max_skew_s ahead of their "
                              "partition's stream time (accepted up to windows.max_future_s, else rejected as "
                              "future_timestamp), or behind a closed window (rejected as late); the routes "
                              "are in /routes.", ["direction"], registry=r)
        for way in ("ahead", "behind"):
            self.skewed.labels(way)
        self.lag = Gauge("detector_consumer_lag_messages",
                         "Messages between the partition's high watermark and the next offset to process.",
                         _PARTITION, registry=r)
        self.batch_seconds = Histogram("detector_batch_duration_seconds",
                                       "Time to process one poll's records of one partition.", registry=r,
                                       buckets=_BATCH_BUCKETS)
        self.batch_messages = Histogram("detector_batch_messages",
                                        "Records in one poll's batch of one partition.", registry=r,
                                        buckets=_BATCH_SIZE_BUCKETS)
        # -- detection ------------------------------------------------------------------------------
        self.windows_closed = Counter("detector_windows_closed_total", "Route windows closed and judged.",
                                      registry=r)
        self.firings = Counter("detector_firings_total", "Detector firings (one per signal and window), by signal.",
                               ["signal"], registry=r)
        self.evictions = Counter("detector_route_evictions_total",
                                 "Routes dropped from memory, by cause (idle, capacity).", ["cause"], registry=r)
        self.incidents = Counter("detector_incident_events_total",
                                 "Incident events published, by event, incident type and severity.",
                                 ["event", "incident_type", "severity"], registry=r)
        self.open_incidents = Gauge("detector_open_incidents",
                                    "Incidents open now on this instance's partitions, by incident type.",
                                    ["incident_type"], registry=r)
        # -- state ----------------------------------------------------------------------------------
        self.checkpoint_seconds = Histogram("detector_checkpoint_duration_seconds",
                                            "Time to write one checkpoint (changelog records, flush, commit).",
                                            registry=r, buckets=_CHECKPOINT_BUCKETS)
        self.checkpoint_bytes = Counter("detector_checkpoint_bytes_total",
                                        "Bytes of keys and values written to the changelog.", registry=r)
        self.checkpoint_records = Counter("detector_checkpoint_records_total",
                                          "Records (tombstones included) written to the changelog.", registry=r)
        self.restore_seconds = Histogram("detector_restore_duration_seconds",
                                         "Time to restore newly assigned partitions from the changelog "
                                         "(one observation per restore).", registry=r, buckets=_RESTORE_BUCKETS)
        self.restore_records = Counter("detector_restore_records_total",
                                       "Changelog records read by restores.", registry=r)
        self.restore_bytes = Counter("detector_restore_bytes_total", "Changelog bytes read by restores.",
                                     registry=r)
        # -- outputs and commands -------------------------------------------------------------------
        self.dead_letters = Counter("detector_dead_letters_total",
                                    "Messages sent to the dead-letter topic, by reason.", ["reason"], registry=r)
        self.produce_errors = Counter("detector_produce_errors_total",
                                      "Failed sends to Kafka (the session restarts; inputs are processed again).",
                                      registry=r)
        self.commands = Counter("detector_commands_total", "Operator commands seen, by command and result.",
                                ["command", "result"], registry=r)
        # -- process state --------------------------------------------------------------------------
        self.idle_partitions = Gauge("detector_idle_partitions",
                                     "Assigned partitions idle long enough for the wall clock to move "
                                     "their watermark.", registry=r)
        self.assigned = Gauge("detector_assigned_partitions", "Input partitions assigned to this instance.",
                              registry=r)
        self.connected = Gauge("detector_broker_connected", "1 while a session with the brokers is up, else 0.",
                               registry=r)
        self.ready = Gauge("detector_ready", "1 while partitions are assigned, restored and consumed, else 0.",
                           registry=r)
        self.reload_failed = Gauge("detector_config_reload_failed",
                                   "1 when the last config reload was refused (the previous config stays), else 0.",
                                   registry=r)
        # Series that should read 0 rather than be absent before the first event.
        for t in sorted(INCIDENT_TYPE_NAMES | {OTHER}):
            self.open_incidents.labels(t)
        for reason in sorted(REASONS):
            self.rejected.labels(reason)
        for cause in sorted(EVICTION_CAUSES):
            self.evictions.labels(cause)

    # -- per batch ----------------------------------------------------------------------------------
    def observe_batch(self, topic: str, partition: int, seconds: float, consumed: int) -> None:
        """One poll's records of one partition were processed in ``seconds``.

        The messages themselves are counted by :meth:`add_stats_delta` (from the pipeline's
        ``read``); here only the batch's duration and size are observed.
        """
        self.batch_seconds.observe(max(0.0, seconds))
        self.batch_messages.observe(max(0, consumed))

    def add_stats_delta(self, topic: str, partition: int, before: Stats, after: Stats) -> None:
        """Add the change in one pipeline's counters between two copies of its :class:`Stats`.

        ``before`` must be a copy (its Counters too) taken before the batch. Used: ``read``,
        ``accepted``, ``duplicates``, ``rejected`` (late also feeds its own counter), ``skewed_ahead``
        and ``skewed_behind``, ``windows_closed``, ``firings`` and
        ``routes_evicted``. Firings are labelled by signal when the stats carry a ``firings_by_signal``
        Counter (else ``other``), evictions by cause when they carry an ``evictions`` Counter keyed
        ``idle``/``capacity`` (else ``other``).
        Incident events are counted by :meth:`observe_incident`, not here.
        """
        p = str(partition)
        d = after.read - before.read
        if d > 0:
            self.consumed.labels(topic, p).inc(d)
        d = after.accepted - before.accepted
        if d > 0:
            self.accepted.labels(topic, p).inc(d)
        d = after.duplicates - before.duplicates
        if d > 0:
            self.duplicates.inc(d)
        for reason, d in _delta(before.rejected, after.rejected).items():
            self.rejected.labels(bounded(reason, REASONS)).inc(d)
            if reason == "late":
                self.late.inc(d)
        for way, d in (("ahead", after.skewed_ahead - before.skewed_ahead),
                       ("behind", after.skewed_behind - before.skewed_behind)):
            if d > 0:
                self.skewed.labels(way).inc(d)
        d = after.windows_closed - before.windows_closed
        if d > 0:
            self.windows_closed.inc(d)
        for counter, name in ((self.spans_ignored, "ignored_spans"), (self.spans_rejected, "rejected_spans")):
            d = getattr(after, name, 0) - getattr(before, name, 0)
            if d > 0:
                counter.inc(d)
        self._labelled_delta(self.firings, SIGNAL_NAMES, after.firings - before.firings,
                             getattr(before, "firings_by_signal", None), getattr(after, "firings_by_signal", None))
        self._labelled_delta(self.evictions, EVICTION_CAUSES, after.routes_evicted - before.routes_evicted,
                             getattr(before, "evictions", None), getattr(after, "evictions", None))

    @staticmethod
    def _labelled_delta(counter: Counter, allowed: frozenset[str], total: int,
                        before: Mapping[str, int] | None, after: Mapping[str, int] | None) -> None:
        """``total`` spread over the labels of the ``after - before`` breakdown; what it does not
        explain goes to ``other``."""
        if total <= 0:
            return
        explained = 0
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            for key, d in _delta(before, after).items():
                counter.labels(bounded(key, allowed)).inc(d)
                explained += d
        if total > explained:
            counter.labels(OTHER).inc(total - explained)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Messages behind the high watermark for one partition (negative values read as 0)."""
        self.lag.labels(topic, str(partition)).set(max(0, lag))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a partition's gauges when it is revoked (its new owner reports them); counters stay."""
        try:
            self.lag.remove(topic, str(partition))
        except KeyError:
            pass

    # -- incidents ----------------------------------------------------------------------------------
    def observe_incident(self, incident: Mapping[str, Any]) -> None:
        """Count one published incident event (SPEC section 2 dict): its event, type and severity."""
        self.incidents.labels(bounded(incident.get("event"), INCIDENT_EVENTS),
                              bounded(incident.get("incident_type"), INCIDENT_TYPE_NAMES),
                              bounded(incident.get("severity"), SEVERITIES)).inc()

    def set_open_incidents(self, counts: Mapping[str, int]) -> None:
        """Set the open-incident gauge from counts by incident type; every type not given reads 0."""
        by_type: Tally[str] = Tally()
        for itype, n in counts.items():
            by_type[bounded(itype, INCIDENT_TYPE_NAMES)] += n
        for t in sorted(INCIDENT_TYPE_NAMES | {OTHER}):
            self.open_incidents.labels(t).set(by_type.get(t, 0))

    # -- state --------------------------------------------------------------------------------------
    def observe_checkpoint(self, seconds: float, written_bytes: int, records: int) -> None:
        """One checkpoint took ``seconds`` and wrote ``records`` changelog records of ``written_bytes``."""
        self.checkpoint_seconds.observe(max(0.0, seconds))
        if written_bytes > 0:
            self.checkpoint_bytes.inc(written_bytes)
        if records > 0:
            self.checkpoint_records.inc(records)

    def observe_restore(self, seconds: float, records: int, read_bytes: int = 0) -> None:
        """A restore of newly assigned partitions read ``records`` changelog records (``read_bytes``) in
        ``seconds``."""
        self.restore_seconds.observe(max(0.0, seconds))
        if records > 0:
            self.restore_records.inc(records)
        if read_bytes > 0:
            self.restore_bytes.inc(read_bytes)

    # -- outputs and commands -----------------------------------------------------------------------
    def observe_dead_letter(self, reason: str) -> None:
        """One message went to the dead-letter topic with this rejection reason."""
        self.dead_letters.labels(bounded(reason, REASONS)).inc()

    def observe_produce_errors(self, n: int = 1) -> None:
        """``n`` sends to Kafka failed."""
        if n > 0:
            self.produce_errors.inc(n)

    def observe_command(self, command: str, result: str) -> None:
        """One operator command and what became of it.

        ``command`` is a command name (``acknowledge`` ...; the incident event it made,
        ``acknowledged`` ..., is taken as its command) or ``invalid``; ``result`` is ``applied``,
        ``not_here``, ``unknown_incident`` or the rejection reason of an invalid one.
        """
        self.commands.labels(bounded(_COMMAND_OF_EVENT.get(command, command), COMMAND_NAMES),
                             bounded(result, COMMAND_RESULTS)).inc()

    # -- process state ------------------------------------------------------------------------------
    def set_idle_partitions(self, n: int) -> None:
        """Assigned partitions currently idle (moved by the wall clock)."""
        self.idle_partitions.set(n)

    def set_assigned(self, n: int) -> None:
        """Input partitions assigned to this instance."""
        self.assigned.set(n)

    def set_connected(self, up: bool) -> None:
        """Whether a session with the brokers is up."""
        self.connected.set(1 if up else 0)

    def set_ready(self, up: bool) -> None:
        """Whether partitions are assigned, restored and being consumed."""
        self.ready.set(1 if up else 0)

    def set_reload_failed(self, failed: bool) -> None:
        """Whether the last config reload was refused."""
        self.reload_failed.set(1 if failed else 0)


def _delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The positive per-key increases from ``before`` to ``after``."""
    out: dict[str, int] = {}
    for key, n in after.items():
        d = n - before.get(key, 0)
        if d > 0:
            out[key] = d
    return out


#: What became of a message handed to a receiver: ``delivered``; ``rejected`` (a 4xx, not retried);
#: ``duplicate`` (its (incident_id, seq) was delivered before); ``dropped`` (the receiver's queue was full).
DELIVERY_OUTCOMES: frozenset[str] = frozenset({"delivered", "rejected", "duplicate", "dropped"})


class DeliveryMetrics:
    """Metrics of the delivery to alert receivers; ``receiver`` is a configured receiver's name.

    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> m = DeliveryMetrics(reg, ["pd"])
    >>> m.outcome("pd", "dropped"); m.outcome("pd", "typo")
    >>> reg.get_sample_value("detector_delivery_messages_total", {"receiver": "pd", "outcome": "dropped"})
    1.0
    >>> reg.get_sample_value("detector_delivery_messages_total", {"receiver": "pd", "outcome": "other"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry, receivers: Iterable[str]):
        r = registry
        self.messages = Counter("detector_delivery_messages_total",
                                "Incident events handed to a receiver, by receiver and outcome (delivered, "
                                "rejected: a 4xx not retried, duplicate: delivered before, dropped: its queue "
                                "was full).", ["receiver", "outcome"], registry=r)
        self.retries = Counter("detector_delivery_retries_total",
                               "Attempts that failed and will be retried (5xx, 408, 429, timeouts, refused).",
                               ["receiver"], registry=r)
        self.queued = Gauge("detector_delivery_queue_messages", "Messages waiting for a receiver.", ["receiver"],
                            registry=r)
        self.resends = Counter("detector_delivery_resends_total",
                               "Re-sends of open incidents (Alertmanager), successful or not.",
                               ["receiver", "outcome"], registry=r)
        self.consumed = Counter("detector_delivery_consumed_total",
                                "Incident events read back from the incidents topic for delivery.", registry=r)
        self.invalid = Counter("detector_delivery_invalid_total",
                               "Messages on the incidents topic that are not incident events (skipped).", registry=r)
        for name in receivers:
            for outcome in sorted(DELIVERY_OUTCOMES):
                self.messages.labels(name, outcome)
            self.retries.labels(name)
            self.queued.labels(name)

    def outcome(self, receiver: str, outcome: str) -> None:
        self.messages.labels(receiver, bounded(outcome, DELIVERY_OUTCOMES)).inc()
