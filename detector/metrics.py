"""Prometheus metrics of the service, on an injected registry.

Names start with ``detector_``. Labels are bounded: topic and partition,
and values from closed lists (rejection reasons, incident types,
severities, signal names, commands); anything else becomes ``other``. A
route name, an incident id, a request or trace id never becomes a label.

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> reg = CollectorRegistry()
>>> m = Metrics(reg)
>>> m.observe_incident({"event": "opened", "incident_type": "cost", "severity": "high", "route": "r"})
>>> b'detector_incidents_total{event="opened",incident_type="cost",severity="high"} 1.0' in generate_latest(reg)
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detector.events import INCIDENT_TYPES
from detector.ingest.decode import REJECT_REASONS
from detector.pipeline import Stats

__all__ = ["Metrics"]

_SEVERITIES = frozenset({"critical", "high", "medium", "low"})
_EVENTS = frozenset({"opened", "updated", "escalated", "acknowledged", "contained", "resolved"})
_TYPES = frozenset(INCIDENT_TYPES)
_REASONS = frozenset(REJECT_REASONS)
_COMMANDS = frozenset({"acknowledge", "contain", "resolve", "silence", "unsilence", "invalid", "acknowledged",
                       "contained", "resolved"})
_EVICTIONS = frozenset({"idle", "capacity", "other"})


def _closed(value: Any, allowed: Iterable[str]) -> str:
    v = str(value)
    return v if v in allowed else "other"


class Metrics:
    """Every metric the service exports, with typed update methods."""

    def __init__(self, registry: CollectorRegistry):
        r = registry
        tp = ["topic", "partition"]
        self.consumed = Counter("detector_consumed", "Telemetry messages consumed.", tp, registry=r)
        self.accepted = Counter("detector_accepted", "Telemetry events accepted into windows.", tp, registry=r)
        self.rejected = Counter("detector_rejected", "Messages rejected, by reason (late included).",
                                ["reason"], registry=r)
        self.late = Counter("detector_late", "Events whose window had already closed.", registry=r)
        self.duplicates = Counter("detector_duplicates", "Events dropped as duplicate event_ids.", registry=r)
        self.lag = Gauge("detector_consumer_lag", "Messages behind the partition's high watermark.", tp, registry=r)
        self.batch_seconds = Histogram("detector_batch_seconds", "Time to process one poll's records of a partition.",
                                       registry=r, buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5))
        self.windows_closed = Counter("detector_windows_closed", "Route windows closed and judged.", registry=r)
        self.firings = Counter("detector_firings", "Detector firings.", registry=r)
        self.evictions = Counter("detector_route_evictions", "Routes dropped from memory, by cause.", ["cause"],
                                 registry=r)
        self.skewed = Counter("detector_skewed_events", "Events whose timestamps are far from their stream's time.",
                              registry=r)
        self.incidents = Counter("detector_incidents", "Incident messages published, by event, type, severity.",
                                 ["event", "incident_type", "severity"], registry=r)
        self.open_incidents = Gauge("detector_open_incidents", "Incidents open now, by type.", ["incident_type"],
                                    registry=r)
        self.checkpoint_seconds = Histogram("detector_checkpoint_seconds",
                                            "Time to write a checkpoint (changelog records and flush).", registry=r,
                                            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30))
        self.checkpoint_bytes = Counter("detector_checkpoint_bytes", "Bytes written to the changelog.", registry=r)
        self.checkpoint_records = Counter("detector_checkpoint_records", "Records written to the changelog.",
                                          registry=r)
        self.restore_seconds = Histogram("detector_restore_seconds", "Time to restore assigned partitions.",
                                         registry=r, buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120))
        self.restore_records = Counter("detector_restore_records", "Changelog records read by restores.",
                                       registry=r)
        self.dead_letters = Counter("detector_dead_letters", "Messages sent to the dead-letter topic, by reason.",
                                    ["reason"], registry=r)
        self.produce_errors = Counter("detector_produce_errors", "Sends that failed (their inputs are redone).",
                                      registry=r)
        self.commands = Counter("detector_commands", "Operator commands, by command and result.",
                                ["command", "result"], registry=r)
        self.idle_partitions = Gauge("detector_idle_partitions",
                                     "Assigned partitions idle long enough for the wall clock to move their watermark.",
                                     registry=r)
        self.assigned = Gauge("detector_assigned_partitions", "Input partitions assigned to this instance.",
                              registry=r)
        self.connected = Gauge("detector_broker_connected", "1 while a session with the brokers is up.", registry=r)
        self.ready = Gauge("detector_ready", "1 while partitions are assigned, restored and consumed.", registry=r)
        self.reload_failed = Gauge("detector_config_reload_failed", "1 when the last config reload was refused.",
                                   registry=r)
        for t in sorted(_TYPES):
            self.open_incidents.labels(t)

    # -- updates ------------------------------------------------------------------------------------
    def observe_batch(self, topic: str, partition: int, seconds: float, consumed: int) -> None:
        self.batch_seconds.observe(seconds)

    def add_stats_delta(self, topic: str, partition: int, before: Stats, after: Stats) -> None:
        """Turn the change in a pipeline's counters over a batch into counter increments."""
        p = str(partition)
        if after.read > before.read:
            self.consumed.labels(topic, p).inc(after.read - before.read)
        if after.accepted > before.accepted:
            self.accepted.labels(topic, p).inc(after.accepted - before.accepted)
        if after.duplicates > before.duplicates:
            self.duplicates.inc(after.duplicates - before.duplicates)
        for reason, n in after.rejected.items():
            d = n - before.rejected.get(reason, 0)
            if d > 0:
                self.rejected.labels(_closed(reason, _REASONS)).inc(d)
                if reason == "late":
                    self.late.inc(d)
        if after.windows_closed > before.windows_closed:
            self.windows_closed.inc(after.windows_closed - before.windows_closed)
        if after.firings > before.firings:
            self.firings.inc(after.firings - before.firings)
        for cause, n in getattr(after, "evictions", {}).items():
            d = n - getattr(before, "evictions", {}).get(cause, 0)
            if d > 0:
                self.evictions.labels(_closed(cause, _EVICTIONS)).inc(d)
        skew_after, skew_before = getattr(after, "skewed", 0), getattr(before, "skewed", 0)
        if skew_after > skew_before:
            self.skewed.inc(skew_after - skew_before)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.lag.labels(topic, str(partition)).set(lag)

    def observe_incident(self, incident: dict[str, Any]) -> None:
        self.incidents.labels(_closed(incident.get("event"), _EVENTS), _closed(incident.get("incident_type"), _TYPES),
                              _closed(incident.get("severity"), _SEVERITIES)).inc()

    def set_open_incidents(self, counts: dict[str, int]) -> None:
        for t in sorted(_TYPES):
            self.open_incidents.labels(t).set(counts.get(t, 0))

    def observe_checkpoint(self, seconds: float, written_bytes: int, records: int) -> None:
        self.checkpoint_seconds.observe(seconds)
        self.checkpoint_bytes.inc(written_bytes)
        self.checkpoint_records.inc(records)

    def observe_restore(self, seconds: float, records: int) -> None:
        self.restore_seconds.observe(seconds)
        self.restore_records.inc(records)

    def observe_dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(_closed(reason, _REASONS)).inc()

    def observe_produce_errors(self, n: int) -> None:
        if n > 0:
            self.produce_errors.inc(n)

    def observe_command(self, command: str, result: str) -> None:
        self.commands.labels(_closed(command, _COMMANDS), _closed(result, _REASONS | {"applied", "not_here"})).inc()

    def set_idle_partitions(self, n: int) -> None:
        self.idle_partitions.set(n)

    def set_assigned(self, n: int) -> None:
        self.assigned.set(n)

    def set_connected(self, up: bool) -> None:
        self.connected.set(1 if up else 0)

    def set_ready(self, up: bool) -> None:
        self.ready.set(1 if up else 0)

    def set_reload_failed(self, failed: bool) -> None:
        self.reload_failed.set(1 if failed else 0)


_ = get_args  # typing helper kept for closed-list derivations
