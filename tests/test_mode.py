"""Containment state per route (SPEC 2b ``ai.containment``): the record and the tracker."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest

from detector.config import RouteConfig
from detector.events import ACTIONS, Recommendation
from detector.incidents.engine import IncidentEngine
from detector.incidents.mode import MODES, ContainmentTracker, containment_record, mode_of
from tests.test_incident_engine import cfg, feed, firing_run, healthy_run

AT = "2026-01-01T00:00:00Z"
KEYS = {"route", "mode", "open_incidents", "actions", "updated_at"}


def rec(action: str, target: Any = None, auto: bool = False) -> dict[str, Any]:
    return {"action": action, "target": target, "rationale": f"why {action}", "auto_applicable": auto}


def inc(iid: str, *recs: dict[str, Any], severity: str = "medium") -> dict[str, Any]:
    return {"incident_id": iid, "severity": severity, "recommendations": list(recs)}


def msg(event: str, iid: str, *recs: dict[str, Any], route: str = "r", at: str = AT,
        severity: str = "medium") -> dict[str, Any]:
    status = {"opened": "open", "updated": "open", "escalated": "open"}.get(event, event)
    return {"event": event, "incident_id": iid, "route": route, "status": status, "at": at, "severity": severity,
            "recommendations": [] if event == "resolved" else list(recs)}


# -- the record -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "mode"),
    [("pause_feature", "paused"), ("draft_only", "draft_only"), ("manual_review", "manual_review"),
     ("rollback", "restricted"), ("disable_tool", "restricted"), ("narrow_sources", "restricted"),
     ("rate_limit", "restricted"), ("failover_route", "restricted")],
)
def test_each_action_has_its_mode(action: str, mode: str) -> None:
    """SPEC 2b's modes: pause, draft-only and manual review are modes of their own; the rest restrict."""
    assert mode_of(action) == mode
    r = containment_record("r", [inc("i", rec(action))], AT)
    assert r["mode"] == mode and set(r) == KEYS


def test_every_action_is_covered() -> None:
    assert {mode_of(a) for a in ACTIONS} <= set(MODES) - {"normal"}


def test_no_open_incident_is_normal() -> None:
    assert containment_record("r", [], AT) == {"route": "r", "mode": "normal", "open_incidents": [],
                                               "actions": [], "updated_at": AT}


def test_an_incident_without_recommendations_is_listed_but_changes_no_mode() -> None:
    assert containment_record("r", [inc("i")], AT)["mode"] == "normal"
    assert containment_record("r", [inc("i")], AT)["open_incidents"] == ["i"]


def test_the_first_recommendation_sets_the_mode_later_ones_are_fallbacks() -> None:
    """A cost incident recommends a rate limit first and pausing only after: the route is restricted."""
    r = containment_record("r", [inc("i", rec("rate_limit"), rec("pause_feature"), rec("rollback", "t"))], AT)
    assert r["mode"] == "restricted"
    assert [a["action"] for a in r["actions"]] == ["rate_limit", "pause_feature", "rollback"]


def test_the_most_restrictive_incident_wins() -> None:
    """Across open incidents, the strongest first action: paused > draft_only > manual_review > restricted."""
    incidents = [inc("a", rec("rollback", {"kind": "prompt", "to_version": "p1"})),
                 inc("b", rec("manual_review")), inc("c", rec("draft_only")), inc("d", rec("pause_feature"))]
    for k in range(1, len(incidents) + 1):
        got = containment_record("r", incidents[:k], AT)
        assert got["mode"] == ["restricted", "manual_review", "draft_only", "paused"][k - 1]
        assert got["open_incidents"] == sorted(i["incident_id"] for i in incidents[:k])


def test_auto_applicable_does_not_choose_the_mode() -> None:
    """The mode is what is recommended; the flags say what a gateway may apply by itself."""
    manual = containment_record("r", [inc("i", rec("draft_only"), rec("manual_review", auto=True))], AT)
    auto = containment_record("r", [inc("i", rec("draft_only", auto=True), rec("manual_review"))], AT)
    assert manual["mode"] == auto["mode"] == "draft_only"
    assert [a["auto_applicable"] for a in manual["actions"]] == [False, True]
    assert [a["auto_applicable"] for a in auto["actions"]] == [True, False]


def test_actions_are_deduplicated_by_action_and_target() -> None:
    """The same action and target once (the higher-priority copy); another target is another action."""
    p1 = {"kind": "prompt", "to_version": "p1"}
    m1 = {"kind": "model", "to_version": "m1"}
    r = containment_record("r", [inc("a", rec("rollback", p1), rec("draft_only")),
                                 inc("b", rec("draft_only"), rec("rollback", dict(p1)), rec("rollback", m1)),
                                 inc("c", rec("disable_tool", "crm"), rec("disable_tool", "search"))], AT)
    assert [(a["action"], a["target"]) for a in r["actions"]] == [
        ("draft_only", None), ("rollback", p1), ("disable_tool", "crm"), ("disable_tool", "search"),
        ("rollback", m1)]


def test_actions_are_in_priority_order_and_the_first_sets_the_mode() -> None:
    """Random sets of incidents: actions[0] is always a first recommendation whose mode is the route's,
    every action comes before any of lower priority, and the result does not depend on input order."""
    rng = random.Random(7)
    actions = sorted(ACTIONS)
    for _ in range(300):
        incidents = [inc(f"inc-{k}", *(rec(a, None, rng.random() < 0.3)
                                       for a in rng.sample(actions, rng.randint(1, 4))),
                         severity=rng.choice(["low", "medium", "high", "critical"]))
                     for k in range(rng.randint(1, 4))]
        got = containment_record("r", incidents, AT)
        firsts = {i["recommendations"][0]["action"] for i in incidents}
        assert got["actions"][0]["action"] in firsts
        assert mode_of(got["actions"][0]["action"]) == got["mode"]
        assert MODES.index(got["mode"]) == max(MODES.index(mode_of(a)) for a in firsts)
        pos = {a: min(i["recommendations"].index(r) for i in incidents for r in i["recommendations"]
                      if r["action"] == a) for a in {x["action"] for x in got["actions"]}}
        assert [pos[a["action"]] for a in got["actions"]] == sorted(pos[a["action"]] for a in got["actions"])
        assert len({a["action"] for a in got["actions"]}) == len(got["actions"])
        assert containment_record("r", list(reversed(incidents)), AT) == got
        for a in got["actions"]:
            msgspec.convert(a, Recommendation)


def test_the_record_shares_nothing_with_its_input() -> None:
    i = inc("i", rec("rollback", {"kind": "prompt", "to_version": "p1"}))
    r = containment_record("r", [i], AT)
    r["actions"][0]["target"]["to_version"] = "changed"
    assert i["recommendations"][0]["target"]["to_version"] == "p1"


# -- the tracker ----------------------------------------------------------------------------------------


def test_tracker_says_when_a_route_changes() -> None:
    """A record when the mode, the open set or the actions change; None for messages that change none."""
    t = ContainmentTracker()
    q = rec("draft_only")
    first = t.observe(msg("opened", "a", q, at="T1"))
    assert first is not None and (first["mode"], first["open_incidents"], first["updated_at"]) == (
        "draft_only", ["a"], "T1")
    assert t.observe(msg("updated", "a", q, at="T2")) is None
    assert t.observe(msg("acknowledged", "a", q, at="T3")) is None
    assert t.observe(msg("contained", "a", q, at="T4")) is None
    more = t.observe(msg("updated", "a", rec("rollback", {"kind": "prompt", "to_version": "p1"}), q, at="T5"))
    assert more is not None and more["mode"] == "restricted"  # a rollback target came first: the record follows
    two = t.observe(msg("opened", "b", rec("pause_feature"), at="T6"))
    assert two is not None and (two["mode"], two["open_incidents"]) == ("paused", ["a", "b"])
    other = t.observe(msg("opened", "x", rec("rate_limit"), route="other", at="T6"))
    assert other is not None and other["route"] == "other" and other["open_incidents"] == ["x"]
    back = t.observe(msg("resolved", "b", at="T7"))
    assert back is not None and back["mode"] == "restricted" and back["open_incidents"] == ["a"]
    end = t.observe(msg("resolved", "a", at="T8"))
    assert end == {"route": "r", "mode": "normal", "open_incidents": [], "actions": [], "updated_at": "T8"}
    assert t.observe(msg("resolved", "a", at="T9")) is None  # a redelivered resolve changes nothing
    assert t.open_counts() == {"other": 1}
    assert t.record("r") == end and t.record("nowhere") is None
    assert t.take_dirty() == {"r", "other"} and t.take_dirty() == set()


def test_tracker_state_round_trips_per_route_and_whole() -> None:
    """route_state/restore_route and snapshot/restore are plain JSON, and a restored tracker answers the rest
    of the stream exactly as the original does."""
    stream = [msg("opened", "a", rec("draft_only")), msg("opened", "b", rec("disable_tool", "crm"), route="q"),
              msg("opened", "c", rec("pause_feature"), severity="critical"),
              msg("resolved", "c"), msg("updated", "b", rec("disable_tool", "crm"), rec("rollback", "t"), route="q"),
              msg("resolved", "a"), msg("resolved", "b", route="q")]
    for cut in range(len(stream) + 1):
        t = ContainmentTracker()
        for m in stream[:cut]:
            t.observe(m)
        whole = ContainmentTracker()
        whole.restore(json.loads(json.dumps(t.snapshot())))
        parts = ContainmentTracker()
        for route in ("r", "q", "never"):
            st = t.route_state(route)
            if route == "never":
                assert st is None
            elif st is not None:
                parts.restore_route(route, json.loads(json.dumps(st)))
        assert whole.snapshot() == parts.snapshot() == t.snapshot()
        rest = [[x.observe(m) for m in stream[cut:]] for x in (t, whole, parts)]
        assert rest[0] == rest[1] == rest[2]


def test_forget_drops_a_route() -> None:
    t = ContainmentTracker()
    t.observe(msg("opened", "a", rec("draft_only")))
    t.forget("r")
    assert t.route_state("r") is None and t.open_counts() == {}


@pytest.mark.parametrize(
    ("itype", "route_cfg", "mode"),
    [
        ("access_privacy", RouteConfig(), "paused"),
        ("bad_output", RouteConfig(), "draft_only"),
        ("performance", RouteConfig(), "restricted"),
        ("cost", RouteConfig(), "restricted"),
        ("performance", RouteConfig(containment={"performance": ["manual_review", "rate_limit"]}), "manual_review"),
    ],
)
def test_tracker_follows_the_engine(itype: str, route_cfg: RouteConfig, mode: str) -> None:
    """Fed the engine's messages, the route's mode follows its open incident and is normal once it resolves;
    every record has exactly SPEC 2b's fields and its actions are valid recommendations."""
    engine = IncidentEngine(cfg(routes={"r": route_cfg}))
    t = ContainmentTracker()
    out = feed(engine, firing_run(1, 3, itype) + healthy_run(4, 20))
    assert [m["event"] for m in out] == ["opened", "resolved"]
    records = [r for r in (t.observe(m) for m in out) if r is not None]
    assert [r["mode"] for r in records] == [mode, "normal"]
    assert records[0]["open_incidents"] == [out[0]["incident_id"]]
    assert records[0]["actions"] == out[0]["recommendations"]  # one incident: its list, in its order
    for r in records:
        assert set(r) == KEYS and r["updated_at"] in {m["at"] for m in out}
        for a in r["actions"]:
            msgspec.convert(a, Recommendation)
