"""detector.metrics: names, bounded labels, and the pipeline's counters turned into metrics."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from detector.config import Config, RouteConfig
from detector.detectors.routes import _RouteState
from detector.events import INCIDENT_TYPES
from detector.metrics import OTHER, SIGNAL_NAMES, Metrics
from detector.pipeline import Pipeline, Stats

ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary-route-secret"

#: Every metric the service is documented to export (README metrics table).
EXPECTED = {
    "detector_events_consumed_total": "counter",
    "detector_events_accepted_total": "counter",
    "detector_events_rejected_total": "counter",
    "detector_events_late_total": "counter",
    "detector_events_duplicate_total": "counter",
    "detector_skewed_clock_events_total": "counter",
    "detector_consumer_lag_messages": "gauge",
    "detector_batch_duration_seconds": "histogram",
    "detector_batch_messages": "histogram",
    "detector_windows_closed_total": "counter",
    "detector_firings_total": "counter",
    "detector_route_evictions_total": "counter",
    "detector_incident_events_total": "counter",
    "detector_open_incidents": "gauge",
    "detector_checkpoint_duration_seconds": "histogram",
    "detector_checkpoint_bytes_total": "counter",
    "detector_checkpoint_records_total": "counter",
    "detector_restore_duration_seconds": "histogram",
    "detector_restore_records_total": "counter",
    "detector_restore_bytes_total": "counter",
    "detector_dead_letters_total": "counter",
    "detector_produce_errors_total": "counter",
    "detector_commands_total": "counter",
    "detector_idle_partitions": "gauge",
    "detector_assigned_partitions": "gauge",
    "detector_broker_connected": "gauge",
    "detector_ready": "gauge",
    "detector_config_reload_failed": "gauge",
    "detector_spans_ignored_total": "counter",
    "detector_spans_rejected_total": "counter",
}
#: The only label names a metric may have.
ALLOWED_LABELS = {"topic", "partition", "reason", "signal", "cause", "event", "incident_type", "severity", "direction",
                  "command", "result", "le"}


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    got = reg.get_sample_value(name, labels)
    return 0.0 if got is None else got


def exercise(m: Metrics) -> None:
    """Call every update method once, with ordinary values."""
    m.observe_batch("ai.telemetry", 0, 0.004, 120)
    m.add_stats_delta("ai.telemetry", 0, Stats(), Stats(read=3, accepted=2, duplicates=1,
                                                         rejected=Counter(late=1), windows_closed=4, firings=1))
    m.set_lag("ai.telemetry", 0, 42)
    m.observe_incident({"event": "opened", "incident_type": "cost", "severity": "high"})
    m.set_open_incidents({"cost": 1})
    m.observe_checkpoint(0.02, 2048, 5)
    m.observe_restore(0.5, 12, 4096)
    m.observe_dead_letter("not_json")
    m.observe_produce_errors(1)
    m.observe_command("acknowledge", "applied")
    m.set_idle_partitions(1)
    m.set_assigned(2)
    m.set_connected(True)
    m.set_ready(True)
    m.set_reload_failed(False)


def test_every_documented_metric_is_registered_with_its_type_and_bounded_label_names() -> None:
    reg = CollectorRegistry()
    exercise(Metrics(reg))
    found = {}
    for fam in reg.collect():
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        found[name] = fam.type
        for s in fam.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (fam.name, s.labels)
    assert found == EXPECTED
    assert all(n.startswith("detector_") for n in found)


def test_the_global_default_registry_is_never_used() -> None:
    before = generate_latest(REGISTRY)
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())  # a second instance on its own registry: no duplicate-name error
    assert b"detector_" not in generate_latest(REGISTRY) and generate_latest(REGISTRY).count(b"\n") == \
        before.count(b"\n")


def _canary_lines() -> list[bytes]:
    """The example telemetry with every route, tenant, request and trace id carrying the canary,
    plus bad lines of several kinds that carry it too."""
    lines = []
    for raw in (ROOT / "examples" / "events.jsonl").read_text().splitlines():
        d = json.loads(raw)
        d["route"] = CANARY
        for k in ("request_id", "trace_id", "tenant"):
            if k in d:
                d[k] = f"{CANARY}-{d[k]}"
        lines.append(json.dumps(d).encode())
    first = json.loads(lines[0])
    bad = [
        f"{CANARY} is not json".encode(),
        json.dumps({"event_id": CANARY, "type": "usage", "route": CANARY}).encode(),  # missing ts
        json.dumps({**first, "event_id": f"{CANARY}-late"}).encode(),  # its window closed long ago
        json.dumps({**first, "event_id": f"{CANARY}-future", "ts": "2199-01-01T00:00:00Z"}).encode(),
        lines[599],  # a duplicate event_id (of a recent event: an old one would be late first)
    ]
    return lines[:600] + bad + lines[600:]


def test_labels_never_carry_a_route_or_an_id_even_when_everything_carries_the_canary() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    pipe = Pipeline(Config())
    lines = _canary_lines()
    incidents: list[dict[str, Any]] = []
    for i in range(0, len(lines), 100):  # batches, as the service polls
        before = copy.deepcopy(pipe.stats)
        found = pipe.process_many(lines[i:i + 100])
        m.add_stats_delta("ai.telemetry", 7, before, pipe.stats)
        incidents += found
    before = copy.deepcopy(pipe.stats)
    incidents += pipe.flush()
    m.add_stats_delta("ai.telemetry", 7, before, pipe.stats)
    for inc in incidents:
        assert inc["route"] == CANARY
        m.observe_incident(inc)
    m.observe_dead_letter(CANARY)
    m.observe_command(CANARY, CANARY)
    m.set_open_incidents({CANARY: 2})
    assert incidents and pipe.stats.firings > 0
    body = generate_latest(reg).decode()
    assert CANARY not in body
    tp = {"topic": "ai.telemetry", "partition": "7"}
    assert value(reg, "detector_events_consumed_total", **tp) == pipe.stats.read == len(lines)
    assert value(reg, "detector_events_accepted_total", **tp) == pipe.stats.accepted
    assert dict(pipe.stats.rejected) == {"not_json": 1, "missing_field": 1, "late": 1, "future_timestamp": 1}
    for reason, n in pipe.stats.rejected.items():
        assert value(reg, "detector_events_rejected_total", reason=reason) == n
    assert value(reg, "detector_events_late_total") == 1
    assert value(reg, "detector_skewed_clock_events_total", direction="ahead") == pipe.stats.skewed_ahead >= 1
    assert value(reg, "detector_skewed_clock_events_total", direction="behind") == pipe.stats.skewed_behind
    assert value(reg, "detector_events_duplicate_total") == pipe.stats.duplicates == 1
    assert value(reg, "detector_windows_closed_total") == pipe.stats.windows_closed
    for signal, n in pipe.stats.firings_by_signal.items():  # signal names are a closed list
        assert value(reg, "detector_firings_total", signal=signal) == n
    assert sum(pipe.stats.firings_by_signal.values()) == pipe.stats.firings
    assert value(reg, "detector_incident_events_total", event="opened", incident_type="tool_failure",
                 severity="medium") == 1
    assert value(reg, "detector_dead_letters_total", reason=OTHER) == 1
    assert value(reg, "detector_commands_total", command=OTHER, result=OTHER) == 1
    assert value(reg, "detector_open_incidents", incident_type=OTHER) == 2


@pytest.mark.parametrize(("call", "metric", "labels"), [
    # an unknown rejection reason (a newer decoder) is counted as other
    (lambda m: m.add_stats_delta("t", 0, Stats(), Stats(read=1, rejected=Counter(weird=1))),
     "detector_events_rejected_total", {"reason": OTHER}),
    # unknown event, type and severity each become other
    (lambda m: m.observe_incident({"event": "exploded", "incident_type": "nonsense", "severity": 5}),
     "detector_incident_events_total", {"event": OTHER, "incident_type": OTHER, "severity": OTHER}),
    # a missing field is other too
    (lambda m: m.observe_incident({}),
     "detector_incident_events_total", {"event": OTHER, "incident_type": OTHER, "severity": OTHER}),
    # an unknown dead-letter reason
    (lambda m: m.observe_dead_letter("because"), "detector_dead_letters_total", {"reason": OTHER}),
    # an unknown command and result
    (lambda m: m.observe_command("drop_tables", "maybe"), "detector_commands_total",
     {"command": OTHER, "result": OTHER}),
    # an invalid command keeps its decoding reason
    (lambda m: m.observe_command("invalid", "not_json"), "detector_commands_total",
     {"command": "invalid", "result": "not_json"}),
    # a command for an incident another instance may hold
    (lambda m: m.observe_command("resolve", "not_here"), "detector_commands_total",
     {"command": "resolve", "result": "not_here"}),
    # the incident event a command made counts as that command
    (lambda m: m.observe_command("acknowledged", "applied"), "detector_commands_total",
     {"command": "acknowledge", "result": "applied"}),
    # a signal outside the detector set
    (lambda m: m.add_stats_delta("t", 0, Stats(), Stats(firings=1, firings_by_signal=Counter(made_up=1))),
     "detector_firings_total", {"signal": OTHER}),
    # an eviction cause outside idle/capacity
    (lambda m: m.add_stats_delta("t", 0, Stats(), Stats(routes_evicted=1, evictions=Counter(cosmic=1))),
     "detector_route_evictions_total", {"cause": OTHER}),
    # evictions without a breakdown
    (lambda m: m.add_stats_delta("t", 0, Stats(), Stats(routes_evicted=2)), "detector_route_evictions_total",
     {"cause": OTHER}),
])
def test_unknown_label_values_map_to_other(call: Any, metric: str, labels: dict[str, str]) -> None:
    reg = CollectorRegistry()
    call(Metrics(reg))
    assert value(reg, metric, **labels) >= 1


def test_breakdowns_by_signal_and_cause_when_the_stats_provide_them() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    before = Stats(firings=2, firings_by_signal=Counter(latency_p95=2), routes_evicted=1,
                       evictions=Counter(idle=1))
    after = Stats(firings=6, firings_by_signal=Counter(latency_p95=3, errors_tool=2, spend=1), routes_evicted=4,
                      evictions=Counter(idle=2, capacity=2))
    m.add_stats_delta("t", 0, before, after)
    assert value(reg, "detector_firings_total", signal="latency_p95") == 1
    assert value(reg, "detector_firings_total", signal="errors_tool") == 2
    assert value(reg, "detector_firings_total", signal="spend") == 1
    assert value(reg, "detector_firings_total", signal=OTHER) == 0
    assert value(reg, "detector_route_evictions_total", cause="idle") == 1
    assert value(reg, "detector_route_evictions_total", cause="capacity") == 2


def test_no_change_adds_nothing() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    s = Stats(read=10, accepted=9, rejected=Counter(not_json=1), windows_closed=3, firings=1)
    m.add_stats_delta("t", 0, s, copy.deepcopy(s))
    assert all(v.value == 0 for fam in reg.collect() if fam.type == "counter" for v in fam.samples
               if v.name.endswith("_total"))


def test_signal_names_cover_every_detector_a_route_can_have() -> None:
    rc = RouteConfig.model_validate({"slo": {"error_rate": 0.01}, "guardrails": {
        "max_p95_ms": 1000, "max_error_rate": 0.1, "max_spend_per_hour": 10, "max_rejection_rate": 0.2}})
    st = _RouteState(Config(), rc)
    assert set(st.alarms) | set(st.dets) <= SIGNAL_NAMES


def test_open_incidents_by_type_reads_zero_for_types_not_given() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_open_incidents({"cost": 2, "performance": 1})
    m.set_open_incidents({"cost": 1})
    assert value(reg, "detector_open_incidents", incident_type="cost") == 1
    for t in INCIDENT_TYPES:
        assert reg.get_sample_value("detector_open_incidents", {"incident_type": t}) is not None
    assert value(reg, "detector_open_incidents", incident_type="performance") == 0


def test_a_revoked_partition_drops_its_lag() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_lag("t", 1, 5)
    m.set_lag("t", 2, -3)
    assert value(reg, "detector_consumer_lag_messages", topic="t", partition="2") == 0
    m.forget_partition("t", 1)
    m.forget_partition("t", 9)  # never seen: nothing to do
    assert reg.get_sample_value("detector_consumer_lag_messages", {"topic": "t", "partition": "1"}) is None


def test_gauges_are_zero_or_one() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg)
    m.set_reload_failed(True)
    m.set_connected(True)
    m.set_ready(False)
    assert value(reg, "detector_config_reload_failed") == 1
    assert value(reg, "detector_broker_connected") == 1
    assert value(reg, "detector_ready") == 0
