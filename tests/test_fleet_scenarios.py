"""The fleet suite: a week of gateway traffic over 28-30 routes (cast, plan, events, scorer, bench)."""

from __future__ import annotations

import io
import json
import random
import re
import statistics
import sys
import types
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detector.bench.scenarios.fleet import FLEET_START_MS, KINDS, expected_events, make_fleet, route_rates
from detector.bench.scenarios.fleet_generate import _fleet_label, generate_fleet
from detector.bench.scenarios.fleet_plan import FleetChange, FleetInjection, FleetPlan, make_fleet_plan
from detector.bench.scenarios.model import INCIDENT_TYPES, Label, Scenario, read_labels, write_scenario
from detector.bench.scenarios.plan import GAP_MIN
from detector.bench.scenarios.score import aggregate, score

MIN = 60_000
SMALL = (101, 102, 103)  # 2 days, 8 routes: about a second each
WEEK = (101, 102, 103)
VERSION_FIELD = {"prompt": "prompt_version", "model": "model", "config": "config_version"}
FREE_TEXT = ("reason", "actor", "prompt", "output", "user_email", "message")
CANARY = re.compile(r"CANARY-\d+-\d+")


@pytest.fixture(scope="module")
def smalls() -> dict[int, Scenario]:
    return {seed: generate_fleet(seed, days=2, routes=8) for seed in SMALL}


@pytest.fixture(scope="module")
def plans() -> dict[int, tuple[list[Any], FleetPlan]]:
    """The full fleet's 7-day plans (no events: fast)."""
    out = {}
    for seed in WEEK:
        fleet = make_fleet(seed)
        out[seed] = (fleet, make_fleet_plan(random.Random(seed * 31 + 7), fleet, 7))
    return out


def ts_ms(ev: dict[str, Any]) -> int:
    ts = ev["ts"]
    if isinstance(ts, int):
        return ts
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def required(s: Scenario) -> list[Label]:
    return [lb for lb in s.labels if not lb.details.get("optional")]


# -- the cast --------------------------------------------------------------------------------


def test_cast_routes_rates_and_volume() -> None:
    """28-30 routes of every kind, rates log-spread 0.05..120/min, 1.5-3 M events a week,
    and both big providers present."""
    for seed in (101, 102, 103, 104, 105):
        fleet = make_fleet(seed)
        assert 28 <= len(fleet) <= 30 and len({r.name for r in fleet}) == len(fleet)
        assert {r.kind for r in fleet} == set(KINDS)
        rates = sorted(r.peak_per_min for r in fleet)
        assert rates[0] == 0.05 and rates[-1] == 120.0
        assert sum(r < 1 for r in rates) >= 4 and sum(1 <= r <= 5 for r in rates) >= 1
        assert sum(r > 10 for r in rates) >= 3
        assert 1.5e6 <= expected_events(fleet) <= 3e6
        assert {"openai", "anthropic"} <= {r.provider for r in fleet}


def test_cast_weekly_shapes() -> None:
    """Business: office hours and quiet weekends; consumer: similar weekends; batch: zero outside
    its nightly window (and on weekends when weekdays-only)."""
    fleet = make_fleet(102)
    for r in fleet:
        rates = route_rates(r, 7)
        days = rates.reshape(7, 1440)  # Thu Fri Sat Sun Mon Tue Wed (UTC)
        if r.kind == "business":
            local = (12 - r.utc_offset_h) % 24 * 60  # local noon in UTC minutes
            tue_noon, tue_3am = days[5][local], days[5][(local + 15 * 60) % 1440]
            assert tue_3am < 0.1 * tue_noon
            local_days = np.roll(rates, 60 * r.utc_offset_h).reshape(7, 1440)  # in the route's own time
            weekend = local_days[2].sum() + local_days[3].sum()
            assert 0.08 <= weekend / (local_days[4].sum() + local_days[5].sum()) <= 0.37
        elif r.kind == "consumer":
            assert 0.9 <= days[2].sum() / days[5].sum() <= 1.3
        elif r.kind == "batch":
            inside = range(r.window_start_min, r.window_start_min + r.window_len_min)
            assert all(rates[m] == 0 for d in range(7) for m in range(d * 1440, (d + 1) * 1440)
                       if m % 1440 not in inside)
            assert 60 <= r.window_len_min <= 180 and 0 <= r.window_start_min < 240
            assert (days[2].sum() == 0) == r.weekdays_only
        else:
            assert days[5].min() >= 0.5 * days[5].max()


# -- the week's plan ------------------------------------------------------------------------------


def test_week_plan_counts_and_spread(plans: dict[int, tuple[list[Any], FleetPlan]]) -> None:
    """About 35-40 labelled incidents a week, none in the first 18 h, on every day but the
    short first one, all six types, one at a time per route with a gap."""
    for _, plan in plans.values():
        req = [i for i in plan.injections if not i.optional]
        assert 33 <= len(req) <= 42
        assert all(i.start_ms >= 18 * 60 * MIN for i in plan.injections)
        days = Counter(i.start_ms // (1440 * MIN) for i in req)
        assert set(range(1, 7)) <= set(days), days  # Fri..Wed, the weekend included
        assert {i.incident_type for i in req} == set(INCIDENT_TYPES)
        by_route: dict[str, list[FleetInjection]] = {}
        for i in plan.injections:
            assert isinstance(i, FleetInjection)
            by_route.setdefault(i.route, []).append(i)
        for injs in by_route.values():
            injs.sort(key=lambda i: i.start_ms)
            for a, b in zip(injs, injs[1:], strict=False):
                same_outage = a.group is not None and a.group == b.group and a.start_ms == b.start_ms
                assert same_outage or b.start_ms >= a.end_ms + GAP_MIN * MIN


def test_week_plan_special_incidents(plans: dict[int, tuple[list[Any], FleetPlan]]) -> None:
    """Canaries (some on quiet routes), benign canaries, outages with a benign release before,
    ramps, slow review rejections, benign releases and late flushes: each in its numbers."""
    for fleet, plan in plans.values():
        rate = {r.name: r.peak_per_min for r in fleet}
        req = [i for i in plan.injections if not i.optional]
        canaries = [i for i in req if i.canary_share]
        assert len(canaries) >= 3 and any(1.0 <= rate[i.route] <= 5.0 for i in canaries)
        assert all(0.1 <= i.canary_share <= 0.3 and i.variant.startswith("canary_") for i in canaries)
        roles = Counter(c.role for c in plan.changes)
        assert 2 <= roles["canary"] == roles["promote"] <= 4
        outages = {(i.group["value"], i.start_ms) for i in plan.injections if i.group}
        assert 1 <= len(outages) <= 2
        for provider, start in outages:
            group = [i for i in plan.injections if i.group and i.start_ms == start]
            assert all(i.group == {"kind": "provider", "value": provider} for i in group)
            assert sum(not i.optional for i in group) >= 2
            assert all(i.rollback is None and 20 * MIN <= i.end_ms - i.start_ms <= 60 * MIN for i in group)
            traps = [c for c in plan.changes if c.role == "benign" and 5 * MIN <= start - c.at_ms <= 20 * MIN
                     and c.route in {i.route for i in group if not i.optional}]
            assert len(traps) == 1 and traps[0].kind in ("config", "prompt")
        ramps = [i for i in req if i.variant.startswith("ramp_")]
        assert 2 <= len(ramps) <= 4 and all(30 * MIN <= i.ramp_ms <= 60 * MIN for i in ramps)
        assert all(20 * MIN <= i.end_ms - i.start_ms - i.ramp_ms <= 40 * MIN for i in ramps)
        slow = [i for i in req if i.variant == "slow_review"]
        assert 1 <= len(slow) <= 2 and all(i.change is not None and i.change.kind == "prompt" for i in slow)
        benign = [c for c in plan.changes if c.role == "benign" and c.kind != "source_index"]
        assert len(benign) >= 5 and roles["benign"] - len(benign) >= 7  # nightly index refreshes
        assert 2 <= len(plan.flushes) <= 4
        delays = [f.arrive_ms - f.end_ms for f in plan.flushes]
        assert any(d > 120_000 for d in delays) and sum(d < 120_000 for d in delays) >= len(delays) / 2
        assert all(3 * MIN <= f.end_ms - f.start_ms <= 10 * MIN for f in plan.flushes)


def test_week_plan_volume_where_placed(plans: dict[int, tuple[list[Any], FleetPlan]]) -> None:
    """An incident only where its route has traffic then: never outside a batch window, never
    a traffic stop at night."""
    for fleet, plan in plans.values():
        by_name = {r.name: r for r in fleet}
        for i in plan.injections:
            rates = route_rates(by_name[i.route], 7)[i.start_ms // MIN : i.end_ms // MIN]
            if not i.optional:
                assert rates.min() > 0, (i.route, i.variant)
            if i.variant == "traffic_stop":
                assert rates.min() >= max(2.0, 0.3 * by_name[i.route].peak_per_min)


def test_week_labels_details(plans: dict[int, tuple[list[Any], FleetPlan]]) -> None:
    """Labels carry what the scorer and a developer need: canary, group, ramp, rollback targets."""
    for _, plan in plans.values():
        labels = [_fleet_label(i, None) for i in plan.injections if isinstance(i, FleetInjection)]
        for lb in labels:
            if lb.variant.startswith("canary_"):
                c = lb.details["canary"]
                assert set(c) == {"share", "kind", "from_version", "to_version"}
                assert lb.rollback == {"kind": c["kind"], "to_version": c["from_version"]}
                assert c["from_version"] != c["to_version"]
                assert lb.incident_type == {"latency": "performance", "error_rate": "bad_output",
                                            "review_rejection": "bad_output", "cost_per_request": "cost"}[lb.signal]
            if lb.variant == "provider_outage":
                assert lb.rollback is None and lb.details["group"]["kind"] == "provider"
            if lb.variant.startswith("ramp_"):
                assert 30 <= lb.details["ramp_min"] <= 60 and lb.rollback is None
            if lb.variant == "slow_review":
                assert lb.rollback is not None and lb.rollback["kind"] == "prompt"
        assert sum(lb.rollback is not None for lb in labels) >= 10


def test_ramp_scales_linearly() -> None:
    """A ramp's effects grow from nothing to their final level, then hold."""
    inj = FleetInjection("r", "performance", "ramp_timeouts", 0, 90 * MIN, error_rates={"timeout": 0.3},
                         latency_mult=3.0, ramp_ms=40 * MIN)
    assert inj.at(0).error_rates["timeout"] == 0.0 and inj.at(0).latency_mult == 1.0
    half = inj.at(20 * MIN)
    assert half.error_rates["timeout"] == pytest.approx(0.15) and half.latency_mult == pytest.approx(2.0)
    assert inj.at(60 * MIN) is inj


# -- generated events ----------------------------------------------------------------------------


def test_same_seed_same_fleet(smalls: dict[int, Scenario]) -> None:
    """Determinism: same seed, days and routes give identical events, labels and canaries."""
    s = smalls[101]
    again = generate_fleet(101, days=2, routes=8)
    assert again.labels == s.labels and again.labels
    assert again.events[:2000] == s.events[:2000] and again.events[-2000:] == s.events[-2000:]
    assert len(again.events) == len(s.events) and again.canaries == s.canaries
    assert again.meta() == s.meta()
    assert [lb.start_ms for lb in smalls[102].labels] != [lb.start_ms for lb in s.labels]


def test_starts_on_thursday_and_kinds(smalls: dict[int, Scenario]) -> None:
    """The week starts on Thursday 00:00 UTC; every route kind is present and recorded."""
    for s in smalls.values():
        start = datetime.fromtimestamp(s.start_ms / 1000, tz=UTC)
        assert s.start_ms == FLEET_START_MS and start.strftime("%a %H:%M") == "Thu 00:00"
        assert s.extra["start_weekday"] == "Thu"
        assert min(ts_ms(e) for e in s.events[:1000]) >= s.start_ms
        assert max(ts_ms(e) for e in s.events[-1000:]) < s.start_ms + s.days * 1440 * MIN
        assert set(s.route_kinds) == set(s.routes) and set(s.route_kinds.values()) == set(KINDS)
        assert {e["type"] for e in s.events} == {"usage", "error", "latency", "cost", "review", "change"}


def test_labels_json_round_trip(tmp_path: Path, smalls: dict[int, Scenario]) -> None:
    """route_kinds and extra survive labels.json; an old labels.json without them still loads."""
    s = smalls[101]
    _, labels_path = write_scenario(s, tmp_path)
    back = read_labels(labels_path)
    assert back.labels == s.labels and back.route_kinds == s.route_kinds and back.extra == s.extra
    meta = json.loads(labels_path.read_text())
    del meta["route_kinds"], meta["extra"]
    labels_path.write_text(json.dumps(meta))
    old = read_labels(labels_path)
    assert old.route_kinds == {} and old.extra == {} and old.labels == s.labels


def test_batch_routes_silent_outside_window(smalls: dict[int, Scenario]) -> None:
    """A batch route's requests all fall inside its nightly window (and not on weekends if
    weekdays only)."""
    seen = 0
    for s in smalls.values():
        for route, info in s.extra["route_info"].items():
            if info["kind"] != "batch":
                continue
            lo, hi = info["window_start_min"], info["window_start_min"] + info["window_len_min"]
            usage = [ts_ms(e) for e in s.events if e["route"] == route and e["type"] == "usage"]
            minutes = [(t - s.start_ms) // MIN for t in usage]
            assert usage and all(lo <= m % 1440 < hi for m in minutes), route
            if info["weekdays_only"]:
                assert all((3 + m // 1440) % 7 < 5 for m in minutes)
            seen += 1
    assert seen >= 3


def test_canary_share_and_effects(smalls: dict[int, Scenario]) -> None:
    """During a canary 10-30% of requests carry the new version, before and after none do; the
    change opens it and a rollback closes it; only canary requests are hurt."""
    checked = 0
    for s in smalls.values():
        for lb in required(s):
            if not lb.variant.startswith("canary_"):
                continue
            c = lb.details["canary"]
            field = VERSION_FIELD[c["kind"]]
            rows = [(ts_ms(e), e) for e in s.events if e["route"] == lb.route]
            usage = [(t, e) for t, e in rows if e["type"] == "usage"]
            win = [e for t, e in usage if lb.start_ms <= t < lb.end_ms]
            new = [e for e in win if e[field] == c["to_version"]]
            share = len(new) / len(win)
            sigma = (c["share"] * (1 - c["share"]) / len(win)) ** 0.5
            assert 0.1 <= c["share"] <= 0.3 and abs(share - c["share"]) <= 4 * sigma + 0.01, (lb.description, share)
            around = [e for t, e in usage if lb.start_ms - 60 * MIN <= t < lb.start_ms or
                      lb.end_ms <= t < lb.end_ms + 60 * MIN]
            assert around and all(e[field] == c["from_version"] for e in around)
            changes = [(t, e) for t, e in rows if e["type"] == "change"]
            assert (lb.start_ms, c["from_version"], c["to_version"]) in [
                (t, e["from_version"], e["to_version"]) for t, e in changes]
            assert (lb.end_ms, c["to_version"], c["from_version"]) in [
                (t, e["from_version"], e["to_version"]) for t, e in changes]
            if lb.signal == "cost_per_request":
                cost = {e["request_id"]: e["cost_usd"] for t, e in rows
                        if e["type"] == "cost" and lb.start_ms <= t < lb.end_ms}
                canary_cost = statistics.mean(cost[e["request_id"]] for e in new)
                stable_cost = statistics.mean(cost[e["request_id"]] for e in win if e not in new)
                assert canary_cost >= 3 * stable_cost
            if lb.signal == "latency":
                lat = {e["request_id"]: e["latency_ms"] for t, e in rows
                       if e["type"] == "latency" and lb.start_ms <= t < lb.end_ms}
                ratio = statistics.median(lat[e["request_id"]] for e in new) / statistics.median(
                    lat[e["request_id"]] for e in win if e not in new)
                assert 1.6 <= ratio <= 4.0, ratio
            checked += 1
    assert checked >= 3


def test_benign_canary_promoted(smalls: dict[int, Scenario]) -> None:
    """A benign canary: a canary change, then a promote with the same versions, after which all
    traffic runs the new version; no label on it."""
    seen = 0
    for s in smalls.values():
        changes = s.extra["changes"]
        for c in (c for c in changes if c["role"] == "canary"):
            promote = next(p for p in changes if p["role"] == "promote" and p["route"] == c["route"]
                           and p["at_ms"] > c["at_ms"])
            assert (promote["from_version"], promote["to_version"]) == (c["from_version"], c["to_version"])
            assert 0.1 <= c["share"] <= 0.3
            assert not any(lb.route == c["route"] and lb.start_ms <= promote["at_ms"] and c["at_ms"] <= lb.end_ms
                           for lb in s.labels)
            field = VERSION_FIELD[c["kind"]]
            after = [e for e in s.events if e["route"] == c["route"] and e["type"] == "usage"
                     and promote["at_ms"] <= ts_ms(e) < promote["at_ms"] + 60 * MIN]
            assert all(e[field] == c["to_version"] for e in after)
            seen += 1
    assert seen >= 3


def test_provider_outage_group(smalls: dict[int, Scenario]) -> None:
    """An outage hits every route of one provider with traffic at once; its labels share one group,
    have no rollback target, and a benign release on one of them comes 5-20 min before."""
    seen = 0
    for s in smalls.values():
        info = s.extra["route_info"]
        outage = [lb for lb in s.labels if lb.variant == "provider_outage"]
        for start in {lb.start_ms for lb in outage}:
            group = [lb for lb in outage if lb.start_ms == start]
            assert len(required(Scenario(0, 0, 0, [], group, [], []))) >= 2  # a group of one is no group
            provider = group[0].details["group"]["value"]
            assert all(lb.details["group"] == {"kind": "provider", "value": provider} for lb in group)
            assert len({lb.end_ms for lb in group}) == 1 and all(lb.rollback is None for lb in group)
            assert all(info[lb.route]["provider"] == provider for lb in group)
            end = group[0].end_ms
            busy = {e["route"] for e in s.events if e["type"] == "usage" and e.get("provider") == provider
                    and start <= ts_ms(e) < end}
            assert busy <= {lb.route for lb in group}
            cls = next(iter(group[0].details["error_rates"]))
            for lb in group:
                n = sum(1 for e in s.events
                        if e["route"] == lb.route and e["type"] == "usage" and start <= ts_ms(e) < end)
                errs = sum(1 for e in s.events if e["route"] == lb.route and e["type"] == "error"
                           and e["error_class"] == cls and start <= ts_ms(e) < end)
                if not lb.details.get("optional"):
                    assert errs / n >= 0.1, (lb.description, errs, n)
            traps = [c for c in s.extra["changes"] if c["role"] == "benign"
                     and 5 * MIN <= start - c["at_ms"] <= 20 * MIN and c["route"] in {lb.route for lb in group}]
            assert len(traps) == 1
            seen += 1
    assert seen >= 3


def test_late_flush_arrives_as_one_burst(smalls: dict[int, Scenario]) -> None:
    """A late flush's events sit together in the file, in their own order, after events
    1-5 minutes newer than the stretch: out of ts order."""
    for s in smalls.values():
        assert s.extra["late_flushes"]
        times = [ts_ms(e) for e in s.events]
        for f in s.extra["late_flushes"]:
            idx = [i for i, e in enumerate(s.events) if e["route"] == f["route"] and e["type"] != "change"
                   and f["start_ms"] <= times[i] < f["end_ms"]]
            assert len(idx) >= 10 and idx[-1] - idx[0] + 1 == len(idx)  # contiguous
            block = [times[i] for i in idx if s.events[i]["type"] != "review"]
            assert block == sorted(block)
            before = max(times[idx[0] - 50 : idx[0]])
            assert before >= f["end_ms"] and 60_000 <= f["arrive_ms"] - f["end_ms"] <= 300_000
            assert before <= f["arrive_ms"]  # the burst sits where its arrival time falls


def test_canaries_only_in_free_text(smalls: dict[int, Scenario]) -> None:
    """Canary strings appear in every free-text field and nowhere else."""
    s = smalls[102]
    found: Counter[str] = Counter()
    pat = re.compile(rf"CANARY-{s.seed}-\d+")
    for e in s.events:
        for k, v in e.items():
            if k in FREE_TEXT:
                assert isinstance(v, str) and pat.search(v), (k, v)
                found[k] += 1
            else:
                assert not (isinstance(v, str) and CANARY.search(v)), (k, v)
    assert all(found[f] > 0 for f in ("reason", "actor", "prompt", "output", "user_email", "message"))
    assert len(set(s.canaries)) == len(s.canaries) > 1000


# -- the scorer's fleet figures ------------------------------------------------------------------


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def msgs(iid: str, route: str, itype: str, start: int, delay_min: float, severity: str = "high",
         signal: str = "error_rate", group: dict[str, str] | None = None,
         rollback: dict[str, str] | None = None) -> list[dict[str, Any]]:
    det = start + int(delay_min * MIN)
    recs = [{"action": "rollback", "target": rollback}] if rollback else []
    base = {"incident_id": iid, "route": route, "incident_type": itype, "started_at": iso(start),
            "detected_at": iso(det), "signals": [{"signal": signal}], "group": None, "recommendations": recs}
    later = dict(base, event="resolved", seq=2, severity="medium", signals=[{"signal": "latency"}],
                 recommendations=[],
                 group={"group_id": "g", "cause": group, "routes": [route]} if group else None)
    return [dict(base, event="opened", seq=1, severity=severity), later]


@pytest.fixture()
def tiny() -> Scenario:
    grp = {"kind": "provider", "value": "openai"}
    labels = [
        Label("a", "performance", 100 * MIN, 140 * MIN, None, "outage a", "provider_outage", details={"group": grp}),
        Label("b", "performance", 100 * MIN, 140 * MIN, None, "outage b", "provider_outage", details={"group": grp}),
        Label("q", "performance", 100 * MIN, 140 * MIN, None, "outage q", "provider_outage",
              details={"group": grp, "optional": True}),
        Label("c", "cost", 300 * MIN, 360 * MIN, {"kind": "model", "to_version": "m1"}, "canary c",
              "canary_cost_per_request", details={"canary": {"share": 0.2}}),
        Label("d", "bad_output", 500 * MIN, 600 * MIN, {"kind": "prompt", "to_version": "p1"}, "slow d", "slow_review"),
    ]
    return Scenario(7, 1, 0, [], labels, ["a", "b", "c", "d", "q"], [], {"a": "consumer"})


def test_score_fleet_figures(tiny: Scenario) -> None:
    """p90 delay, critical false incidents, group right, canaries found, optional labels, rollback %."""
    grp = {"kind": "provider", "value": "openai"}
    incidents = (
        msgs("ia", "a", "performance", 100 * MIN, 2, group=grp)
        + msgs("ib", "b", "performance", 100 * MIN, 3, group={"kind": "model", "value": "x"})
        + msgs("iq", "q", "performance", 100 * MIN, 9)  # optional label: matched, not false
        + msgs("ic", "c", "cost", 300 * MIN, 4, rollback={"kind": "model", "to_version": "m1"})
        + msgs("id", "d", "bad_output", 500 * MIN, 40, rollback={"kind": "prompt", "to_version": "p0"})
        + msgs("f1", "a", "cost", 800 * MIN, 0, severity="critical", signal="spend")
        + msgs("f2", "b", "performance", 900 * MIN, 0, severity="low")
    )
    s = score(incidents, tiny)
    assert (s.labels, s.found) == (4, 4)  # the optional label is left out
    assert s.delays_min == [2.0, 3.0, 4.0, 40.0] and s.p90_delay_min == 40.0 and s.median_delay_min == 3.5
    assert sorted(s.false_ids) == ["f1", "f2"] and s.false_critical == 1
    assert [v.signal for v in s.false_views] == ["spend", "error_rate"]
    assert (s.group_right, s.group_expected) == (1, 2)
    assert (s.canary_found, s.canary_expected) == (1, 1)
    assert (s.rollback_right, s.rollback_expected, s.rollback_wrong) == (1, 2, 0) and s.rollback_accuracy == 50.0
    agg = aggregate([s], suite="fleet")
    bars = {name: ok for name, _, _, ok in agg.bars()}
    assert bars == {
        "found with right type": True,
        "false incidents / route-day": False,  # 2 false over 5 route-days, one critical
        "median detection delay": True,
        "p90 detection delay": False,
        "rollback targets right": False,
        "canary regressions found": True,
        "group right": False,
        "leaks": True,
    }
    assert len(aggregate([s]).bars()) == 5  # the default suite's bars are unchanged


def test_score_fleet_perfect_passes(tiny: Scenario) -> None:
    """Right groups, rollbacks and quick detection pass every fleet bar; a rollback on an outage fails."""
    grp = {"kind": "provider", "value": "openai"}
    good = (
        msgs("ia", "a", "performance", 100 * MIN, 2, group=grp)
        + msgs("ib", "b", "performance", 100 * MIN, 3, group=grp)
        + msgs("ic", "c", "cost", 300 * MIN, 4, rollback={"kind": "model", "to_version": "m1"})
        + msgs("id", "d", "bad_output", 500 * MIN, 15, rollback={"kind": "prompt", "to_version": "p1"})
    )
    assert aggregate([score(good, tiny)], suite="fleet").passed
    trap = [dict(m, recommendations=[{"action": "rollback", "target": {"kind": "config", "to_version": "c9"}}])
            if m["incident_id"] == "ia" else m for m in good]
    s = score(trap, tiny)
    assert s.rollback_wrong == 1 and not aggregate([s], suite="fleet").passed


# -- the bench -----------------------------------------------------------------------------------


def test_bench_fleet_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench scenarios --suite fleet`: an oracle replay passes every fleet bar; a false incident
    is explained on its own line (route, kind, type, severity, signal, weekday)."""
    from detector.bench.scenarios import bench

    truth = generate_fleet(101, days=2, routes=8)
    oracle: list[dict[str, Any]] = []
    for i, lb in enumerate(required(truth)):
        oracle += msgs(f"inc-{i}", lb.route, lb.incident_type, lb.start_ms, 3,
                       group=lb.details.get("group"), rollback=lb.rollback)
    batch = next(r for r, k in truth.route_kinds.items() if k == "batch")
    false = msgs("false-1", batch, "performance", truth.start_ms + 26 * 60 * MIN, 0, severity="critical",
                 signal="traffic_stop")
    runs = iter([oracle, oracle + false])
    fake_replay = types.ModuleType("detector.replay")
    fake_replay.replay_lines = lambda lines, config: types.SimpleNamespace(  # type: ignore[attr-defined]
        incidents=(sum(1 for _ in lines), next(runs))[1]
    )
    fake_config = types.ModuleType("detector.config")
    fake_config.load_config = lambda path: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "detector.replay", fake_replay)
    monkeypatch.setitem(sys.modules, "detector.config", fake_config)
    args = ["--suite", "fleet", "--seeds", "101", "--days", "2", "--routes", "8"]
    out = io.StringIO()
    assert bench.main(args, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "overall: PASS" in text and "p90 detection delay" in text and "canary regressions found" in text
    assert "false incidents: none" in text
    out = io.StringIO()
    assert bench.main(args, out=out) == 1
    text = out.getvalue()
    line = next(x for x in text.splitlines() if "false:" in x)
    assert f"{batch} (batch) performance sev=critical signal=traffic_stop detected 2025-03-07 02:00 Fri" in line
    assert "by route kind: batch 1 (2 routes)" in text and "by weekday: Fri 1" in text
    assert bench.main(["--routes", "8"], out=io.StringIO()) == 2  # --routes is for the fleet only


def test_a_change_to_the_version_already_serving_expects_no_rollback() -> None:
    """The planner may plan a model upgrade on a route a canary already moved to that model (seed 1101,
    invoice-extract: gemini-1.5-flash-002 -> gemini-1.5-flash-002). Such a change changes nothing: its
    label expects no rollback (the only target would be the version failing); a real change still does."""
    inj = FleetInjection("r", "performance", "model_snapshot", 0, 60 * 60_000, signal="latency")
    inj.change = FleetChange(0, "r", "model", "cause", from_version="m-002", to_version="m-002")
    assert _fleet_label(inj, None).rollback is None
    inj.change = FleetChange(0, "r", "model", "cause", from_version="m-001", to_version="m-002")
    assert _fleet_label(inj, None).rollback == {"kind": "model", "to_version": "m-001"}


def test_a_second_model_upgrade_to_the_model_serving_changes_the_version() -> None:
    """The fleet planner takes a model change's target from the model the route starts with; when an earlier
    release already moved the route there, the change went from that model to itself (a canary no version
    comparison can see, labelled as one). It goes back to the route's first model instead."""
    from detector.bench.scenarios.plan import ROUTES, Change, _resolve_versions, initial_versions

    route = ROUTES[0]
    first = initial_versions(route)["model"]
    changes = [Change(60_000, route.name, "model", "benign", target_model="m-new"),
               Change(120_000, route.name, "model", "canary", target_model="m-new")]
    _resolve_versions(changes, ROUTES)
    assert [(c.from_version, c.to_version) for c in changes] == [(first, "m-new"), ("m-new", first)]
