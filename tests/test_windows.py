"""Event-time windows: ordering, lateness, duplicates, gaps, quiet routes, eviction, aggregates."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from detector.config import Config, WindowsConfig
from detector.events import ChangeEvent, CostEvent, ErrorEvent, LatencyEvent, ReviewEvent, UsageEvent
from detector.pipeline import Pipeline
from detector.windows.aggregate import KEY_CAP, SAMPLE_CAP, WindowAggregate
from detector.windows.windower import Windower

MIN = 60_000
T0 = 1_795_770_000_000 - 1_795_770_000_000 % MIN


def usage(route: str, ts: int, i: int = 0, **kw: object) -> UsageEvent:
    return UsageEvent(event_id=f"{route}-{ts}-{i}", ts=float(ts), route=route, **kw)  # type: ignore[arg-type]


def line(route: str, ts: int, eid: str, **kw: object) -> bytes:
    return json.dumps({"event_id": eid, "type": "usage", "ts": ts, "route": route, **kw}).encode()


class Collect:
    """A detector stage that records every closed window it is given."""

    def __init__(self) -> None:
        self.windows: list[WindowAggregate] = []
        self.evicted: list[str] = []

    def on_window(self, w: WindowAggregate) -> list:
        self.windows.append(w)
        return []

    def on_evict(self, route: str) -> None:
        self.evicted.append(route)

    def heighten(self, route: str, until_ms: int, incident_type: str | None = None,
                 signals: Sequence[str] = ()) -> None:
        return None

    def snapshot(self) -> dict:
        return {}

    def restore(self, snap: dict) -> None:
        pass


def pipeline(**windows: int) -> tuple[Pipeline, Collect]:
    c = Collect()
    from detector.pipeline import NullIncidents

    return Pipeline(Config(windows=WindowsConfig(**windows)), detectors=c, incidents=NullIncidents()), c


def test_out_of_order_within_lateness_counted() -> None:
    """Events up to the allowed lateness out of order land in their own window."""
    p, c = pipeline(allowed_lateness_s=120)
    for i, off in enumerate([10, 70, 30, 100, 50, 170]):
        p.process(line("r", T0 + off * 1000, f"e{i}"))
    p.flush()
    counts = {(w.start - T0) // MIN: w.requests for w in c.windows}
    assert counts == {0: 3, 1: 2, 2: 1}
    assert p.stats.late == 0


def test_late_events_counted_and_dropped() -> None:
    """An event for an already closed window is dropped as late and does not alter it."""
    p, c = pipeline(allowed_lateness_s=60)
    p.process(line("r", T0 + 1000, "a"))
    p.process(line("r", T0 + 3 * MIN, "b"))
    for i in range(1, 8):  # nine events start stream time: the route's clock (3rd newest) and the
        p.process(line("r", T0 + 3 * MIN + i, f"c{i}"))  # event times' median are T0+3min: window 0 closes
    p.process(line("r", T0 + 5000, "late"))
    p.flush()
    assert p.stats.late == 1
    assert c.windows[0].requests == 1


def test_one_absurd_timestamp_cannot_move_time() -> None:
    """A single far-future event, even the first, neither closes windows nor makes later events late: the
    first events wait until stream time can start, then it is rejected like any other."""
    p, c = pipeline(allowed_lateness_s=0)
    p.process(line("r", T0 + 86_400_000 * 365 * 100, "absurd"))
    for m in range(10):
        p.process(line("r", T0 + m * MIN, f"e{m}"))
    p.process(line("r", T0 + 86_400_000 * 365 * 50, "absurd-too"))
    # stream time: the route's third-newest event (minute 7)
    assert [(w.start - T0) // MIN for w in c.windows] == list(range(7))
    assert p.waiting == 2  # both held, in case the stream really jumped; the end of the stream says not
    p.flush()
    assert p.stats.late == 0 and p.stats.rejected["future_timestamp"] == 2


def test_duplicates_dropped() -> None:
    """A re-sent event_id is counted once, even when resent later."""
    p, c = pipeline()
    for eid in ["a", "b", "a", "c", "b"]:
        p.process(line("r", T0 + 1000, eid))
    p.flush()
    assert p.stats.duplicates == 2
    assert sum(w.requests for w in c.windows) == 3


def test_gaps_and_quiet_routes_get_empty_windows() -> None:
    """A route that stops sending still has its (empty) windows closed while others move time on."""
    p, c = pipeline(allowed_lateness_s=0)
    p.process(line("quiet", T0 + 1000, "q"))
    for m in range(10):
        p.process(line("busy", T0 + m * MIN + 500, f"b{m}"))
    quiet = [w for w in c.windows if w.route == "quiet"]  # stream time: busy's 3rd-newest event (minute 7)
    assert [(w.start - T0) // MIN for w in quiet] == list(range(7))
    assert [w.requests for w in quiet] == [1] + [0] * 6
    busy = [w for w in c.windows if w.route == "busy"]
    assert all(w.requests == 1 for w in busy)


def test_time_jump_closes_gap_windows_in_order() -> None:
    """A jump in event time closes every intermediate window, in time order, once."""
    p, c = pipeline(allowed_lateness_s=0)
    p.process(line("r", T0, "a"))
    p.process(line("r", T0 + 30 * MIN, "b"))
    for i in range(1, 8):  # the route's events after the jump (nine start stream time) confirm it
        p.process(line("r", T0 + 30 * MIN + i, f"c{i}"))
    starts = [w.start for w in c.windows]
    assert starts == sorted(starts) and len(starts) == len(set(starts)) == 30


def test_idle_routes_evicted() -> None:
    """A route idle past idle_evict_s is forgotten (memory stays bounded) and reported."""
    p, c = pipeline(allowed_lateness_s=0, idle_evict_s=600)
    p.process(line("old", T0, "o"))
    for m in range(30):
        p.process(line("live", T0 + m * MIN, f"l{m}"))
    assert "old" not in p.windower.routes and "live" in p.windower.routes
    assert c.evicted == ["old"]
    assert len([w for w in c.windows if w.route == "old"]) == 10
    assert p.stats.routes_evicted == 1


def test_many_routes_capped() -> None:
    """With max_routes set, the least recently seen routes are evicted."""
    p, _ = pipeline(max_routes=50)
    for i in range(500):
        p.process(line(f"route-{i}", T0 + i, f"e{i}"))
    assert 45 <= len(p.windower.routes) <= 50  # the least recent tenth goes at once
    assert p.stats.routes_evicted + len(p.windower.routes) == 500
    assert "route-499" in p.windower.routes and "route-0" not in p.windower.routes


def test_future_timestamp_rejected() -> None:
    """A timestamp absurdly far ahead of the watermark is rejected, not used to move time."""
    p, _ = pipeline(max_future_s=3600)
    for i in range(5):  # stream time starts from five events
        p.process(line("r", T0 + i * 100, f"a{i}"))
    p.process(line("r", T0 + 86_400_000 * 365, "far"))
    for i in range(16):  # held until the events after it outnumber it
        assert p.stats.rejected["future_timestamp"] == 0
        p.process(line("r", T0 + 1000 + i, f"b{i}"))
    assert p.stats.rejected["future_timestamp"] == 1
    assert p.stats.late == 0


def test_aggregate_fields() -> None:
    """Every figure the detectors and evidence need is accumulated."""
    w = WindowAggregate("r", T0, T0 + MIN)
    w.add(usage("r", T0, 1, requests=2, input_tokens=100, output_tokens=20, retries=1, tenant="t1",
                trace_id="loop", request_id="q1", model="m1", prompt_version="p1"), T0)
    w.add(usage("r", T0, 2, tenant="t2", trace_id="loop", model="m2"), T0)
    w.add(ErrorEvent(event_id="e", ts=1.0, route="r", error_class="tool_error", tool="crm", tenant="t3",
                     request_id="q9"), T0)
    for i, ms in enumerate([100.0, 200.0, 300.0, 4000.0]):
        w.add(LatencyEvent(event_id=f"l{i}", ts=1.0, route="r", latency_ms=ms, model="m1"), T0)
    w.add(CostEvent(event_id="c", ts=1.0, route="r", cost_usd=0.5), T0)
    w.add(ReviewEvent(event_id="v1", ts=1.0, route="r", outcome="rejected", reason="free text"), T0)
    w.add(ReviewEvent(event_id="v2", ts=1.0, route="r", outcome="accepted"), T0)
    w.add(ChangeEvent(event_id="ch", ts=1.0, route="r", change_kind="prompt", from_version="p0",
                      to_version="p1", actor="alice@example.com"), T0 + 5)
    assert (w.requests, w.input_tokens, w.output_tokens, w.retries) == (3, 100, 20, 1)
    assert w.errors == {"tool_error": 1} and w.errors_by_tool == {"crm": 1}
    assert math.isclose(w.error_rate, 1 / 3)
    assert 190 <= w.p50 <= 310 and w.p99 > 3000
    assert w.cost_usd == 0.5 and math.isclose(w.cost_per_request, 0.5 / 3)
    assert w.rejection_rate == 0.5
    assert w.distinct_tenants == 2 and w.affected_tenants == {"t3"}
    assert w.affected_tenants_of(("tool_error",)) == {"t3"} and not w.affected_tenants_of(("timeout",))
    assert w.max_key_share == 1.0 and w.top_key() == ("trace_id", "loop", 3)
    assert w.versions["model"]["m1"][0] == 5 and w.versions["model"]["m1"][5] == 4 and w.versions["model"]["m2"][1] == 1
    assert w.changes == [{"ts": T0 + 5, "kind": "prompt", "from_version": "p0", "to_version": "p1",
                          "event_id": "ch"}]
    assert "alice@example.com" not in json.dumps(w.to_dict()) and "free text" not in json.dumps(w.to_dict())
    assert w.flagged_request_ids == ["q9"]


def test_versions_read_mid_window_follow_later_events() -> None:
    """The per-version sums are cached when read; an event added afterwards, even to a version already seen,
    is in the next read (a read mid-window once kept the sums of the moment)."""
    w = WindowAggregate("r", T0, T0 + MIN)
    w.add(usage("r", T0, 1, model="m1"), T0)
    assert w.versions["model"]["m1"][:2] == [1, 1]
    w.add(usage("r", T0, 2, model="m1"), T0)
    w.add(LatencyEvent(event_id="l", ts=1.0, route="r", latency_ms=250.0, model="m1"), T0)
    assert w.versions["model"]["m1"][:2] == [3, 2] and w.versions["model"]["m1"][5] == 1


def test_aggregate_bounded() -> None:
    """Samples, key counts and version maps stay bounded under heavy traffic."""
    w = WindowAggregate("r", T0, T0 + MIN)
    for i in range(20_000):
        w.add(usage("r", T0, i, trace_id=f"t{i}", request_id=f"q{i}", model=f"m{i}", tenant=f"x{i}"), T0)
    assert len(w.request_ids) == SAMPLE_CAP and len(w.trace_counts) == KEY_CAP
    assert len(w.versions["model"]) <= 33 and len(w.tenants) <= 1000
    assert len(json.dumps(w.to_dict())) < 400_000


def test_windower_snapshot_roundtrip() -> None:
    """A restored windower continues exactly like the original."""
    cfg = WindowsConfig(allowed_lateness_s=60)
    a = Windower(cfg)
    for i in range(50):
        a.add(usage(f"r{i % 3}", T0 + i * 7000, i), T0 + i * 7000)
    a.advance()
    b = Windower(cfg)
    b.restore(json.loads(json.dumps(a.to_dict())))
    for i in range(50, 100):
        for w in (a, b):
            w.add(usage(f"r{i % 3}", T0 + i * 7000, i), T0 + i * 7000)
    assert [x.to_dict() for x in a.advance()] == [x.to_dict() for x in b.advance()]
