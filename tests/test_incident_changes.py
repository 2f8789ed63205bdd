"""ChangeTracker: change timelines, last-healthy versions and rollback targets."""

from __future__ import annotations

import json
from itertools import count

from detector.events import ChangeEvent, CostEvent, ErrorEvent, LatencyEvent, ReviewEvent, UsageEvent
from detector.incidents.changes import TIMELINE_CAP, ChangeTracker
from detector.windows.aggregate import WindowAggregate

MIN = 60_000
LOOKBACK = 7_200_000
_ids = count()


def window(
    i: int,
    versions: dict[str, int],
    *,
    errors: dict[str, int] | None = None,
    field: str = "prompt_version",
    change: tuple[str, str, str] | None = None,
    route: str = "r",
) -> WindowAggregate:
    """Window ``i`` with ``versions[v]`` usage events per version and ``errors[v]`` error events."""
    w = WindowAggregate(route, i * MIN, (i + 1) * MIN)
    if change is not None:
        kind, old, new = change
        w.add(
            ChangeEvent(
                event_id=f"chg{i}",
                ts=0.0,
                route=route,
                change_kind=kind,  # type: ignore[arg-type]
                from_version=old,
                to_version=new,
                actor="someone",
            ),
            i * MIN + 1,
        )
    for v, n in versions.items():
        for _ in range(n):
            w.add(UsageEvent(event_id=f"u{next(_ids)}", ts=0.0, route=route, **{field: v}))
    for v, n in (errors or {}).items():
        for _ in range(n):
            w.add(
                ErrorEvent(
                    event_id=f"e{next(_ids)}", ts=0.0, route=route, error_class="tool_error", **{field: v}
                )
            )
    return w


def run(t: ChangeTracker, healthy: list[WindowAggregate], bad: list[WindowAggregate]) -> None:
    for w in healthy:
        t.observe(w, healthy=True)
    for w in bad:
        t.observe(w, healthy=False)


def test_explicit_change_with_concentrated_failures_targets_previous_healthy_version() -> None:
    """An explicit change whose new version carries the failures rolls back to the last healthy one."""
    t = ChangeTracker()
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    bad = [
        window(10, {"p2": 20}, errors={"p2": 10}, change=("prompt", "p1", "p2")),
        window(11, {"p2": 20}, errors={"p2": 12}),
    ]
    run(t, healthy, bad)
    assert t.explain("r", "bad_output", 10 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}
    assert [c["event_id"] for c in t.recent_changes("r", 0, 20 * MIN)] == ["chg10"]


def test_canary_failing_alone_is_rolled_back() -> None:
    """A new version on part of the traffic with a clearly worse error rate is blamed."""
    t = ChangeTracker()
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    bad = [
        window(10, {"p1": 18, "p2": 6}, errors={"p1": 1, "p2": 5}, change=("prompt", "p1", "p2")),
        window(11, {"p1": 18, "p2": 6}, errors={"p2": 6}),
    ]
    run(t, healthy, bad)
    assert t.explain("r", "tool_failure", 10 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}


def test_switch_seen_only_in_version_fields_gives_target() -> None:
    """A model switch with no change event is inferred from the events' model field."""
    t = ChangeTracker()
    healthy = [window(i, {"m1": 20}, field="model") for i in range(10)]
    bad = [
        window(10, {"m2": 20}, errors={"m2": 9}, field="model"),
        window(11, {"m2": 20}, errors={"m2": 9}, field="model"),
    ]
    run(t, healthy, bad)
    changes = t.recent_changes("r", 0, 20 * MIN)
    assert [(c["kind"], c["from_version"], c["to_version"], c["event_id"]) for c in changes] == [
        ("model", "m1", "m2", None)
    ]
    assert t.explain("r", "performance", 10 * MIN, bad, LOOKBACK) == {"kind": "model", "to_version": "m1"}


def test_explain_before_observe_still_sees_new_version() -> None:
    """A version first seen in the anomalous windows counts even if they were not observed yet."""
    t = ChangeTracker()
    run(t, [window(i, {"m1": 20}, field="model") for i in range(10)], [])
    bad = [window(10, {"m2": 20}, errors={"m2": 9}, field="model")]
    assert t.explain("r", "performance", 10 * MIN, bad, LOOKBACK) == {"kind": "model", "to_version": "m1"}


def test_benign_change_with_failures_spread_evenly_gives_no_target() -> None:
    """Failures shared evenly by old and new versions do not blame the change."""
    t = ChangeTracker()
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    bad = [
        window(10, {"p1": 10, "p2": 10}, errors={"p1": 5, "p2": 5}, change=("prompt", "p1", "p2")),
        window(11, {"p1": 10, "p2": 10}, errors={"p1": 6, "p2": 6}),
    ]
    run(t, healthy, bad)
    assert t.explain("r", "tool_failure", 10 * MIN, bad, LOOKBACK) is None


def test_failures_without_change_give_none() -> None:
    """No change in the lookback: nothing to roll back."""
    t = ChangeTracker()
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    bad = [window(10, {"p1": 20}, errors={"p1": 10}), window(11, {"p1": 20}, errors={"p1": 10})]
    run(t, healthy, bad)
    assert t.recent_changes("r", 0, 20 * MIN) == []
    assert t.explain("r", "tool_failure", 10 * MIN, bad, LOOKBACK) is None


def test_change_long_before_lookback_gives_none() -> None:
    """A change older than the lookback, whose version then ran healthy, is not a candidate."""
    t = ChangeTracker()
    run(t, [window(i, {"p1": 20}) for i in range(5)], [])
    run(t, [window(5, {"p2": 20}, change=("prompt", "p1", "p2"))], [])
    late = 5 + LOOKBACK // MIN + 30
    run(t, [window(i, {"p2": 20}) for i in range(6, late)], [])
    bad = [window(late, {"p2": 20}, errors={"p2": 10}), window(late + 1, {"p2": 20}, errors={"p2": 10})]
    run(t, [], bad)
    assert t.explain("r", "bad_output", late * MIN, bad, LOOKBACK) is None


def test_a_standing_change_explains_a_slow_drift_detected_late() -> None:
    """The last change of a kind, its version still serving and worse since, explains an incident detected
    long after the lookback (bad outcomes that crept up for hours): nothing healthy came between."""
    t = ChangeTracker()
    run(t, [window(i, {"p1": 20}) for i in range(30)], [])
    run(t, [window(30, {"p2": 20}, change=("prompt", "p1", "p2"))], [])
    late = 30 + LOOKBACK // MIN + 60
    drift = [window(i, {"p2": 20}, errors={"p2": 2 + (i - 31) * 6 // (late - 31)}) for i in range(31, late)]
    run(t, drift, [])  # not yet detected: the windows count as healthy
    bad = [window(late, {"p2": 20}, errors={"p2": 8}), window(late + 1, {"p2": 20}, errors={"p2": 8})]
    run(t, [], bad)
    assert t.explain("r", "bad_output", late * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}
    assert 30 * MIN <= t.explained_at < 31 * MIN


def test_never_targets_the_bad_version_even_if_briefly_healthy() -> None:
    """The new version seen 'healthy' before the detector fired is never the target."""
    t = ChangeTracker()
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    # Window 10 has the change and errors, but is reported healthy (persistence not reached yet).
    first = window(10, {"p2": 20}, errors={"p2": 8}, change=("prompt", "p1", "p2"))
    run(t, healthy + [first], [])
    bad = [first, window(11, {"p2": 20}, errors={"p2": 9})]
    run(t, [], bad[1:])
    assert t.explain("r", "bad_output", 10 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}


def test_settled_full_rollout_is_not_blamed() -> None:
    """A fully rolled-out version that then ran healthy for a long time is not blamed by share alone."""
    t = ChangeTracker()
    run(t, [window(i, {"p1": 20}) for i in range(10)], [])
    run(t, [window(10, {"p2": 20}, change=("prompt", "p1", "p2"))], [])
    run(t, [window(i, {"p2": 20}) for i in range(11, 60)], [])
    bad = [window(60, {"p2": 20}, errors={"p2": 10}), window(61, {"p2": 20}, errors={"p2": 10})]
    run(t, [], bad)
    assert t.explain("r", "tool_failure", 60 * MIN, bad, LOOKBACK) is None


def _settled_then_bad(errors_while_healthy: int) -> tuple[ChangeTracker, list[WindowAggregate]]:
    """A prompt rolled out fully at window 10 (5% errors before, on 200 requests), then 31 quiet windows
    of three requests each with ``errors_while_healthy`` errors among them (counted healthy: nothing had
    fired), then two bad windows: the tracker, and the bad windows."""
    t = ChangeTracker()
    run(t, [window(i, {"p1": 20}, errors={"p1": 1}) for i in range(10)], [])
    run(t, [window(10, {"p2": 3}, change=("prompt", "p1", "p2"))], [])
    run(t, [window(i, {"p2": 3}, errors={"p2": 1 if i - 11 < errors_while_healthy else 0}) for i in range(11, 42)],
        [])
    bad = [window(42 + i, {"p2": 20}, errors={"p2": 10}) for i in range(2)]
    run(t, [], bad)
    return t, bad


def test_a_settled_version_already_hinting_worse_is_blamed_for_bad_output_only() -> None:
    """A slow type (bad_output: reviews drift up for an hour after a prompt change) blames a settled
    version whose healthy traffic already hinted at worse (10 errors on 93 requests against 5%: twice the
    rate, p about 0.03, not below 0.01); a fast type (access) needs it clearly worse, and a version that
    looked like the old one while healthy is blamed for neither."""
    t, bad = _settled_then_bad(10)
    assert t.explain("r", "bad_output", 42 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}
    t, bad = _settled_then_bad(10)
    assert t.explain("r", "access_privacy", 42 * MIN, bad, LOOKBACK) is None
    t, bad = _settled_then_bad(4)
    assert t.explain("r", "bad_output", 42 * MIN, bad, LOOKBACK) is None


def test_latency_concentrated_on_new_model() -> None:
    """Performance: the new model's mean latency clearly above the old one's blames the model change."""
    t = ChangeTracker()
    run(t, [window(i, {"m1": 20}, field="model") for i in range(10)], [])
    bad = []
    for i in (10, 11):
        w = window(i, {"m1": 10, "m2": 10}, field="model", change=("model", "m1", "m2") if i == 10 else None)
        for k in range(10):
            w.add(LatencyEvent(event_id=f"l{i}a{k}", ts=0.0, route="r", model="m1", latency_ms=300.0))
            w.add(LatencyEvent(event_id=f"l{i}b{k}", ts=0.0, route="r", model="m2", latency_ms=2400.0))
        bad.append(w)
    run(t, [], bad)
    assert t.explain("r", "performance", 10 * MIN, bad, LOOKBACK) == {"kind": "model", "to_version": "m1"}


def _priced(w: WindowAggregate, i: int, per_request: dict[str, float], requests: int = 20) -> WindowAggregate:
    """``w`` with a cost event for each of its ``requests`` requests of each version, at that version's price."""
    for v in per_request:
        for k in range(requests):
            w.add(CostEvent(event_id=f"c{i}{v}{k}", ts=0.0, route="r", prompt_version=v, cost_usd=per_request[v]))
    return w


def test_a_prompt_release_is_not_blamed_for_timeouts_when_its_requests_are_no_longer() -> None:
    """Performance: timeouts that start just after a prompt release (a provider outage) sit on the new prompt,
    but its requests cost no more than the old one's, so the prompt did not make them slow: no rollback.
    The same release whose requests cost 3x as much (a prompt that made every request longer) is blamed."""
    for price, expected in ((0.002, None), (0.006, {"kind": "prompt", "to_version": "p1"})):
        t = ChangeTracker()
        run(t, [_priced(window(i, {"p1": 20}), i, {"p1": 0.002}) for i in range(10)], [])
        bad = [_priced(window(i, {"p2": 20}, errors={"p2": 8}, change=("prompt", "p1", "p2") if i == 10 else None),
                       i, {"p2": price}) for i in (10, 11)]
        run(t, [], bad)
        assert t.explain("r", "performance", 10 * MIN, bad, LOOKBACK) == expected, price
        # what the rule leaves alone: the same errors on a bad_output incident still blame the prompt
        assert t.explain("r", "bad_output", 10 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}


def test_bad_output_prefers_prompt_over_config() -> None:
    """With a prompt and a config change both concentrated, bad_output rolls back the prompt."""
    t = ChangeTracker()
    healthy = []
    for i in range(10):
        w = window(i, {})
        for k in range(20):
            w.add(
                UsageEvent(event_id=f"h{i}.{k}", ts=0.0, route="r", prompt_version="p1", config_version="c1")
            )
        healthy.append(w)
    bad = []
    for i in (10, 11):
        w = window(i, {}, change=("config", "c1", "c2") if i == 10 else None)
        if i == 10:
            w.add(
                ChangeEvent(
                    event_id="chgp",
                    ts=0.0,
                    route="r",
                    change_kind="prompt",
                    from_version="p1",
                    to_version="p2",
                ),
                i * MIN + 2,
            )
        for k in range(20):
            w.add(
                UsageEvent(event_id=f"b{i}.{k}", ts=0.0, route="r", prompt_version="p2", config_version="c2")
            )
        for k in range(10):
            w.add(
                ReviewEvent(
                    event_id=f"rv{i}.{k}",
                    ts=0.0,
                    route="r",
                    prompt_version="p2",
                    config_version="c2",
                    outcome="rejected",
                )
            )
        bad.append(w)
    run(t, healthy, bad)
    assert t.explain("r", "bad_output", 10 * MIN, bad, LOOKBACK) == {"kind": "prompt", "to_version": "p1"}


def test_route_change_without_version_data_uses_from_version_when_near() -> None:
    """A route change (no version field to test) explains an incident right after it."""
    t = ChangeTracker()
    run(t, [window(i, {"p1": 20}) for i in range(10)], [])
    bad = [
        window(10, {"p1": 20}, errors={"p1": 10}, change=("route", "gw-a", "gw-b")),
        window(11, {"p1": 20}, errors={"p1": 10}),
    ]
    run(t, [], bad)
    assert t.explain("r", "performance", 10 * MIN, bad, LOOKBACK) == {"kind": "route", "to_version": "gw-a"}


def test_snapshot_round_trip() -> None:
    """State survives a JSON snapshot and restore, and answers the same."""
    t = ChangeTracker(min_events=5)
    healthy = [window(i, {"p1": 20}) for i in range(10)]
    bad = [
        window(10, {"p2": 20}, errors={"p2": 10}, change=("prompt", "p1", "p2")),
        window(11, {"p2": 20}, errors={"p2": 10}),
    ]
    run(t, healthy, bad)
    snap = json.loads(json.dumps(t.snapshot()))
    t2 = ChangeTracker.from_snapshot(snap)
    assert t2.min_events == 5
    assert t2.snapshot() == t.snapshot()
    assert t2.explain("r", "bad_output", 10 * MIN, bad, LOOKBACK) == t.explain(
        "r", "bad_output", 10 * MIN, bad, LOOKBACK
    )
    t3 = ChangeTracker()
    t3.restore(snap)
    assert t3.recent_changes("r", 0, 10**12) == t.recent_changes("r", 0, 10**12)


def test_memory_is_bounded_and_forget_drops_route() -> None:
    """Timelines keep at most TIMELINE_CAP entries per kind; forget() drops the route."""
    t = ChangeTracker()
    for i in range(100):
        t.observe(window(i, {f"p{i % 2}": 20}, change=("config", f"c{i}", f"c{i + 1}")), healthy=True)
    snap = t.snapshot()["routes"]["r"]["kinds"]
    assert all(
        len(k["timeline"]) <= TIMELINE_CAP and len(k["healthy"]) <= TIMELINE_CAP for k in snap.values()
    )
    t.forget("r")
    assert t.recent_changes("r", 0, 10**12) == []
    t = ChangeTracker(max_routes=3)
    for i in range(10):
        t.observe(window(i, {"p1": 5}, route=f"r{i}"), healthy=True)
    assert sorted(t.snapshot()["routes"]) == ["r7", "r8", "r9"]


def tool_window(i: int, calls: dict[str, int], errors: dict[str, int] | None = None,
                change: tuple[str, str] | None = None) -> WindowAggregate:
    """Window ``i`` of a multi-tool route: ``calls[v]`` usages, ``errors[v]`` errors per tool value ``v``."""
    return window(i, calls, errors=errors, field="tool", change=("tool", *change) if change else None)


def test_tool_change_targets_same_tool_when_events_carry_versions() -> None:
    """Tool versions are tracked per tool: the target is the changed tool's last healthy version."""
    t = ChangeTracker()
    healthy = [tool_window(i, {"ocr.extract@1.4.0": 10, "erp.lookup_vendor@2.0.0": 12}) for i in range(10)]
    bad = [
        tool_window(10, {"ocr.extract@1.5.0": 10, "erp.lookup_vendor@2.0.0": 12},
                    errors={"ocr.extract@1.5.0": 6}, change=("ocr.extract@1.4.0", "ocr.extract@1.5.0")),
        tool_window(11, {"ocr.extract@1.5.0": 10, "erp.lookup_vendor@2.0.0": 12},
                    errors={"ocr.extract@1.5.0": 7}),
    ]
    run(t, healthy, bad)
    assert t.explain("r", "tool_failure", 10 * MIN, bad, LOOKBACK) == {
        "kind": "tool", "to_version": "ocr.extract@1.4.0"}
    assert t.last_healthy("r", "tool", 10 * MIN, tool="ocr.extract") == "ocr.extract@1.4.0"
    assert t.last_healthy("r", "tool", 10 * MIN, tool="erp.lookup_vendor") == "erp.lookup_vendor@2.0.0"


def test_tool_change_when_events_name_the_tool_only() -> None:
    """Events naming the tool without a version: the changed tool is compared with itself before."""
    t = ChangeTracker()
    healthy = [tool_window(i, {"ocr.extract": 10, "erp.lookup_vendor": 12}) for i in range(10)]
    bad = [
        tool_window(10, {"ocr.extract": 10, "erp.lookup_vendor": 12}, errors={"ocr.extract": 6},
                    change=("ocr.extract@1.4.0", "ocr.extract@1.5.0")),
        tool_window(11, {"ocr.extract": 10, "erp.lookup_vendor": 12}, errors={"ocr.extract": 7}),
    ]
    run(t, healthy, bad)
    assert t.explain("r", "tool_failure", 10 * MIN, bad, LOOKBACK) == {
        "kind": "tool", "to_version": "ocr.extract@1.4.0"}


def test_tools_taking_turns_are_not_changes() -> None:
    """Several tools on one route dominating in turn are not tool changes, so no rollback."""
    t = ChangeTracker()
    healthy = [tool_window(i, {"crm.lookup": 5 + 5 * (i % 2), "kb.search": 10 - 5 * (i % 2)})
               for i in range(20)]
    bad = [tool_window(20 + i, {"crm.lookup": 3 + 6 * i, "kb.search": 9 - 6 * i},
                       errors={"crm.lookup": 3, "kb.search": 3}) for i in range(2)]
    run(t, healthy, bad)
    assert t.recent_changes("r", 0, 10**12) == []
    assert t.explain("r", "access_privacy", 20 * MIN, bad, LOOKBACK) is None


def test_quiet_route_full_rollout_uses_history_since_change() -> None:
    """On a quiet route the few anomalous windows are judged with all traffic since the change."""
    t = ChangeTracker()
    run(t, [window(i, {"idx-1": 4}, field="source_index") for i in range(60)], [])
    since_change = [window(60, {"idx-2": 4}, errors={"idx-2": 1}, field="source_index",
                           change=("source_index", "idx-1", "idx-2"))]
    since_change += [window(i, {"idx-2": 4}, errors={"idx-2": 1 + i % 2}, field="source_index")
                     for i in range(61, 80)]
    run(t, since_change, [])
    bad = [window(80, {"idx-2": 3}, field="source_index")]  # nothing failed in the firing window itself
    run(t, [], bad)
    assert t.explain("r", "retrieval_failure", 80 * MIN, bad, LOOKBACK) == {
        "kind": "source_index", "to_version": "idx-1"}


def test_slow_detection_still_blames_a_version_worse_from_the_start() -> None:
    """A new model slow from its first window is blamed even though the detector fired late."""
    t = ChangeTracker()

    def slow(i: int, model: str, ms: float, change: bool = False) -> WindowAggregate:
        w = window(i, {model: 3}, field="model", change=("model", "m1", "m2") if change else None)
        for k in range(3):
            w.add(LatencyEvent(event_id=f"sl{i}.{k}", ts=0.0, route="r", model=model, latency_ms=ms))
        return w

    run(t, [slow(i, "m1", 1000.0) for i in range(30)], [])
    run(t, [slow(30, "m2", 2600.0, change=True)] + [slow(i, "m2", 2600.0) for i in range(31, 80)], [])
    bad = [slow(80, "m2", 2700.0)]
    run(t, [], bad)
    assert t.explain("r", "performance", 80 * MIN, bad, LOOKBACK) == {"kind": "model", "to_version": "m1"}


def test_settled_version_with_later_unrelated_failures_is_not_blamed() -> None:
    """A version that ran healthy (and no worse) for long is not blamed for errors that come later."""
    t = ChangeTracker()
    run(t, [window(i, {"c1": 20}, errors={"c1": 0 if i % 5 else 1}, field="config_version")
            for i in range(10)], [])
    run(t, [window(10, {"c2": 20}, field="config_version", change=("config", "c1", "c2"))], [])
    run(t, [window(i, {"c2": 20}, errors={"c2": 0 if i % 5 else 1}, field="config_version")
            for i in range(11, 60)], [])
    bad = [window(60 + i, {"c2": 20}, errors={"c2": 8}, field="config_version") for i in range(2)]
    run(t, [], bad)
    assert t.explain("r", "access_privacy", 60 * MIN, bad, LOOKBACK) is None


def _release(per_min: int, clean: int, onset_errors: int, errors: int,
             onset_in_incident: bool) -> tuple[ChangeTracker, list[WindowAggregate]]:
    """A config released at window 10 on a route of ``per_min`` requests a minute (one error in ten minutes
    before), ``clean`` windows of it without an error, two windows of ``onset_errors`` errors each observed
    healthy (nothing had fired yet), then two firing windows of ``errors`` errors each: the tracker, and the
    incident's windows (the onset's among them when ``onset_in_incident``: the incident's lead)."""
    t = ChangeTracker()
    run(t, [window(i, {"c1": per_min}, errors={"c1": 1 if i % 10 == 0 else 0}, field="config_version")
            for i in range(10)], [])
    run(t, [window(10, {"c2": per_min}, field="config_version", change=("config", "c1", "c2"))], [])
    end = 11 + clean
    run(t, [window(i, {"c2": per_min}, field="config_version") for i in range(11, end)], [])
    onset = [window(end + i, {"c2": per_min}, errors={"c2": onset_errors}, field="config_version")
             for i in range(2)]
    run(t, onset, [])
    bad = [window(end + 2 + i, {"c2": per_min}, errors={"c2": errors}, field="config_version") for i in range(2)]
    run(t, [], bad)
    return t, onset + bad if onset_in_incident else bad


def test_a_release_that_served_hundreds_of_clean_requests_is_not_blamed_for_errors_that_follow() -> None:
    """A provider outage minutes after an unrelated config release: the release served 160 requests
    without an error first (8 minutes, well short of the 30 that settle a rollout by time), so the errors
    that follow are not its doing. Released a minute before the errors, it is blamed (20 requests prove
    nothing); and the incident's own first windows, observed healthy before it fired, are no part of the
    clean traffic (with 5 errors each they would otherwise hide among 200 requests)."""
    t, incident = _release(20, clean=8, onset_errors=5, errors=5, onset_in_incident=True)
    assert t.explain("r", "performance", incident[0].start, incident, LOOKBACK) is None
    t, incident = _release(20, clean=1, onset_errors=5, errors=5, onset_in_incident=True)
    assert t.explain("r", "performance", incident[0].start, incident, LOOKBACK) == {
        "kind": "config", "to_version": "c1"}


def test_a_release_clearly_better_before_the_incident_than_during_it_is_not_blamed() -> None:
    """Fewer than a hundred requests, and the incident's own onset counted among them: a release that
    served 56 requests cleanly (then 6 errors in 16 as the outage began, then half its requests failing) is
    not blamed, as even half the incident's rate would have given more than 6 errors in its 72 requests.
    A release failing from its first requests is blamed."""
    t, bad = _release(8, clean=6, onset_errors=3, errors=4, onset_in_incident=False)
    assert t.explain("r", "performance", bad[0].start, bad, LOOKBACK) is None
    t, bad = _release(8, clean=0, onset_errors=3, errors=4, onset_in_incident=False)
    assert t.explain("r", "performance", bad[0].start, bad, LOOKBACK) == {"kind": "config", "to_version": "c1"}
