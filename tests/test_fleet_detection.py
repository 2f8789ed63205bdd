"""Detection on the traffic shapes real fleets have (issue: detection round two).

Each test builds a small, seeded event stream with one shape and replays it
through the same pipeline the service runs. What they protect:

* a first weekend with two days of history is not a traffic stop, and a
  drop judged without history of its kind of day is never above low; nor
  is a spike (or the spend and tokens that follow it) on a route's first day;
* a steady route that stops on its first weekend is still found;
* a provider failing on several routes at once gives one group on every
  route's incident, and the benign change one route made just before is not
  recommended as a rollback (failover and rate limiting are, with why);
* the first route of a provider's outage to fire waits two minutes for the other routes' errors before
  it blames its own change of a minute before, and a quiet route's error test judges its outage once a
  span of ten requests holds the excess, against the rate from before the outage (its first windows are
  not learned while their span is suspect);
* a canary (a fifth of the traffic on a new version, only that share bad) is
  found and rolled back to the old version, also on a quiet route whose
  per-window majority flips, and those flips are not read as changes;
* review rejections detected late keep the change that preceded them;
* a quiet route's latency ramp is found by its mean log latency (a busier route's by a log-mean test
  of its own), reviews after a change are judged at the canary comparison's level, and errors after a
  change at a tenfold looser level for two hours.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from typing import Any

from detector.config import Config
from detector.detectors.proportion import CountTest, ProportionTest
from detector.detectors.routes import SIGNALS
from detector.replay import replay_lines

MIN = 60_000
THU = 1_741_219_200_000  # 2025-03-06T00:00:00Z, a Thursday


class Stream:
    """Seeded synthetic telemetry: requests (usage, latency, cost, errors), reviews, changes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.n = 0

    def _ev(self, kind: str, t: int, route: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        ev = {"event_id": f"e{self.n}", "type": kind, "ts": t, "route": route, **fields}
        self.events.append((t, ev))
        return ev

    def requests(self, route: str, start: int, end: int, per_min: Callable[[int], float],
                 ctx: Callable[[int], dict[str, Any]], error: Callable[[int, dict[str, Any]], str | None]
                 = lambda t, c: None, latency: Callable[[int, dict[str, Any]], float] | None = None,
                 review_share: float = 0.0, reject: Callable[[int, dict[str, Any]], float] | None = None) -> None:
        rng = self.rng
        for m in range((end - start) // MIN):
            t0 = start + m * MIN
            lam = per_min(t0)
            k = _poisson(rng, lam)
            for _ in range(k):
                t = t0 + int(rng.random() * MIN)
                c = ctx(t)
                rid = f"r{self.n}"
                self._ev("usage", t, route, request_id=rid, input_tokens=500, output_tokens=100, **c)
                lat = latency(t, c) if latency else 800.0
                self._ev("latency", t, route, latency_ms=round(lat * math.exp(rng.gauss(0, 0.4)), 1), **c)
                self._ev("cost", t, route, cost_usd=0.001, **c)
                err = error(t, c)
                if err is None and rng.random() < 0.005:
                    err = "other"
                if err is not None:
                    self._ev("error", t, route, error_class=err, **c)
                if review_share and rng.random() < review_share:
                    bad = (reject(t, c) if reject else 0.04)
                    outcome = "rejected" if rng.random() < bad else "accepted"
                    self._ev("review", t + 60_000, route, outcome=outcome, request_id=rid, **c)

    def change(self, t: int, route: str, kind: str, old: str, new: str) -> None:
        self._ev("change", t, route, change_kind=kind, from_version=old, to_version=new)

    def run(self, config: Config | None = None) -> list[dict[str, Any]]:
        self.events.sort(key=lambda e: e[0])
        lines = [json.dumps(ev).encode() for _, ev in self.events]
        return list(replay_lines(lines, config or Config()).incidents)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _by_id(incidents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in incidents:
        out.setdefault(m["incident_id"], []).append(m)
    return out


def _rollbacks(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["target"] for m in msgs for r in m["recommendations"] if r["action"] == "rollback"]


def _hour(t: int) -> int:
    return t // 3_600_000 % 24


def _weekend(t: int) -> bool:
    return (t // 86_400_000 + 3) % 7 >= 5


# -- the first weekend -------------------------------------------------------------------------------
def test_quiet_first_saturday_is_not_a_stop_but_a_steady_route_stopping_is_found() -> None:
    """Two weekdays of office-hours traffic, then a Saturday at a quarter of it: no incident. A route
    with steady traffic around the clock that stops on that Saturday: an incident, of low severity
    (no history of Saturdays yet), not critical."""
    s = Stream(1)
    ctx = lambda t: {"model": "m1", "provider": "p1"}  # noqa: E731

    def business(t: int) -> float:
        office = 8 <= _hour(t) < 18
        return (30.0 if office else 0.5) * (0.25 if _weekend(t) else 1.0)

    s.requests("office", THU, THU + 3 * 86_400_000, business, ctx)
    stop_at = THU + 2 * 86_400_000 + 13 * 3_600_000  # Saturday 13:00
    s.requests("steady", THU, stop_at, lambda t: 10.0, ctx)
    s.requests("steady", stop_at + 90 * MIN, THU + 3 * 86_400_000, lambda t: 10.0, ctx)
    incidents = s.run()
    by_route: dict[str, list[dict[str, Any]]] = {}
    for m in incidents:
        by_route.setdefault(m["route"], []).append(m)
    assert "office" not in by_route, [m["signals"] for m in by_route.get("office", [])]
    opened = [m for m in by_route.get("steady", []) if m["event"] == "opened"]
    assert len(opened) == 1
    inc = opened[0]
    assert inc["incident_type"] == "performance"
    assert stop_at <= _ms(inc["detected_at"]) <= stop_at + 15 * MIN
    assert {m["severity"] for m in by_route["steady"]} == {"low"}


def test_count_test_knows_when_a_drop_is_unfamiliar() -> None:
    """The same hour on a weekday it has history of is familiar; its first Saturday is not."""
    c = CountTest()
    for m in range(2 * 1440):
        c.update(20, THU + m * MIN)
    c.evaluate(20, THU + 2 * 1440 * MIN - 30 * MIN)  # Friday 23:30
    assert c.familiar
    c.evaluate(20, THU + 2 * 1440 * MIN + 600 * MIN)  # Saturday 10:00
    assert not c.familiar


def test_first_morning_of_a_business_route_is_low_severity() -> None:
    """A business route started at midnight meets its first office hours against a level learned overnight:
    whatever that opens (a traffic spike, the spend and tokens that follow it) is low severity, never the
    high or critical cost incident a fivefold jump in tokens would otherwise be. The same morning a day later, with an
    hour of history, opens nothing."""
    s = Stream(5)
    ctx = lambda t: {"model": "m1", "provider": "p1"}  # noqa: E731
    s.requests("office", THU, THU + 2 * 86_400_000, lambda t: 30.0 if 12 <= _hour(t) < 20 else 6.0, ctx)
    incidents = s.run()
    first_day = [m for m in incidents if _ms(m["detected_at"]) < THU + 86_400_000]
    assert first_day, "the first morning's jump is judged (a spike is still found on a route's first day)"
    assert {m["severity"] for m in first_day} == {"low"}, [(m["event"], m["severity"]) for m in first_day]
    assert not [m for m in incidents if _ms(m["detected_at"]) >= THU + 86_400_000]


def test_count_test_knows_a_spike_on_the_first_day_is_measured_against_other_hours() -> None:
    """hour_known: not during the route's first day; afterwards, for an hour with history of either kind of
    day (the first Saturday's hours are known from the weekdays: a spike there is measured against them)."""
    c = CountTest()
    for m in range(2 * 1440):
        c.update(20, THU + m * MIN)
        if m == 9 * 60:
            assert not c.hour_known(THU + m * MIN)  # Thursday 09:00, the first day
    assert c.hour_known(THU + 2 * 1440 * MIN - 30 * MIN)  # Friday 23:30
    assert c.hour_known(THU + 2 * 1440 * MIN + 600 * MIN)  # Saturday 10:00


def _ms(text: str) -> int:
    from detector.bench.scenarios.score import to_ms

    v = to_ms(text)
    assert v is not None
    return v


# -- a provider failing on several routes ------------------------------------------------------------
def test_provider_outage_on_three_routes_is_one_group_and_no_rollback() -> None:
    s = Stream(2)
    start, end = THU, THU + 20 * 3_600_000
    out0, out1 = start + 18 * 3_600_000, start + 18 * 3_600_000 + 40 * MIN
    routes = {"chat": 20.0, "summaries": 8.0, "search": 4.0}
    for route, rate in routes.items():
        cfg = {"v": "cfg-1"}

        def ctx(t: int, route: str = route, cfg: dict[str, str] = cfg) -> dict[str, Any]:
            version = "cfg-2" if route == "chat" and t >= out0 - 10 * MIN else cfg["v"]
            return {"model": "m1", "provider": "acme", "config_version": version}

        def err(t: int, c: dict[str, Any]) -> str | None:
            return "provider_error" if out0 <= t < out1 and s.rng.random() < 0.35 else None

        s.requests(route, start, end, lambda t, r=rate: r, ctx, error=err)
    s.change(out0 - 10 * MIN, "chat", "config", "cfg-1", "cfg-2")  # benign, just before
    incidents = s.run()
    byid = _by_id(incidents)
    perf = {msgs[0]["route"]: msgs for msgs in byid.values() if msgs[-1]["incident_type"] == "performance"}
    assert set(perf) == set(routes), {k: [m["event"] for m in v] for k, v in perf.items()}
    groups = {json.dumps(msgs[-1]["group"], sort_keys=True) for msgs in perf.values()}
    assert len(groups) == 1
    group = perf["chat"][-1]["group"]
    assert group["cause"] == {"kind": "provider", "value": "acme"}
    assert group["routes"] == sorted(routes)
    for msgs in perf.values():
        assert _rollbacks(msgs) == [], _rollbacks(msgs)
    actions = [r["action"] for r in perf["chat"][-1]["recommendations"]]
    assert actions[:2] == ["failover_route", "rate_limit"]
    assert "several routes" in perf["chat"][-1]["recommendations"][0]["rationale"]


def test_the_first_route_of_an_outage_to_fire_waits_for_the_others_before_blaming_its_change() -> None:
    """The route that changed its config a minute before fires a minute or two before the quieter routes on
    the same provider have shown three errors: its incident blames no change while it waits for them, and
    once they show, the provider is the cause (no rollback in any message). Without the wait, each of these
    seeds recommended rolling the config back when the incident opened."""
    for seed in (11, 12, 14):
        out0, chat = _outage_after_a_change(seed)
        assert _ms(chat[0]["detected_at"]) <= out0 + 5 * MIN
        assert _rollbacks(chat) == [], (seed, [(m["event"], _rollbacks([m])) for m in chat])


def _outage_after_a_change(seed: int) -> tuple[int, list[dict[str, Any]]]:
    """A provider timing out a third of the requests of three routes, one of which changed its config a
    minute before: the outage's start and that route's incident messages."""
    s = Stream(seed)
    start, end = THU, THU + 20 * 3_600_000
    out0, out1 = start + 18 * 3_600_000, start + 18 * 3_600_000 + 30 * MIN

    def ctx(t: int, route: str) -> dict[str, Any]:
        version = "cfg-2" if route == "chat" and t >= out0 - MIN else "cfg-1"
        return {"model": "m1", "provider": "acme", "config_version": version}

    def err(t: int, c: dict[str, Any]) -> str | None:
        return "timeout" if out0 <= t < out1 and s.rng.random() < 0.35 else None

    for route, rate in {"chat": 6.0, "summaries": 1.5, "search": 1.5}.items():
        s.requests(route, start, end, lambda t, r=rate: r, lambda t, r=route: ctx(t, r), error=err)
    s.change(out0 - MIN, "chat", "config", "cfg-1", "cfg-2")  # benign, just before
    chat = [msgs for msgs in _by_id(s.run()).values()
            if msgs[0]["route"] == "chat" and msgs[0]["incident_type"] == "performance"]
    assert len(chat) == 1
    return out0, chat[0]


def test_a_quiet_route_outage_is_judged_on_its_first_windows() -> None:
    """A route of three requests a minute (one error in 150 windows) whose provider starts failing a third of
    them: its error test fires on the fourth window, once a span of ten requests holds four errors (the exact
    binomial tail and three hot windows are the guard); a span of twenty requests waited for the sixth."""
    spec = next(sp for sp in SIGNALS if sp.name == "errors_performance")
    det = spec.make(Config().route("notes"))
    assert isinstance(det, ProportionTest)
    for i in range(1440):
        det.update(1 if i % 150 == 0 else 0, 3)
    fired = [det.update(k, 3).anomalous for k in (1, 0, 1, 1, 0, 1, 1, 0, 1, 1)]
    assert fired.index(True) == 3, fired


def _woken(hold: float | None = None) -> ProportionTest:
    """The error test of a route that served a request a minute through the night (760 of them, an error in
    80): its baseline rests on about 540 requests (a half-life of 720 windows), so each error learned moves
    it; and it has learned more windows than that half-life, past which suspect windows are held back."""
    det = next(sp for sp in SIGNALS if sp.name == "errors_performance").make(Config().route("notes"))
    assert isinstance(det, ProportionTest)
    if hold is not None:
        det.hold = hold
    for i in range(760):
        det.update(1 if i % 80 == 0 else 0, 1)
    return det


#: A provider failing a third of a quiet route's requests (errors, requests per window; empty windows are not
#: judged), as seed 1001's board-deck-draft met it.
QUIET_OUTAGE = ((2, 3), (1, 2), (0, 1), (0, 3), (0, 2), (1, 2), (0, 1), (1, 2), (0, 1), (0, 1), (0, 2), (0, 1),
                (1, 2), (0, 1), (3, 3), (1, 1))


def test_an_outage_pooling_its_evidence_is_not_learned_as_baseline() -> None:
    """The first windows of an outage on a quiet route are held back from the error baseline while their
    span is suspect (p < 1e-3), so the span is judged against the rate from before: it fires on the eighth
    window. Learned at once, they raised the baseline by half, and the test waited for the fifteenth."""
    held, learned = _woken(), _woken(hold=0.0)
    before = held.baseline
    fired_held = [held.update(k, n).anomalous for k, n in QUIET_OUTAGE]
    fired_learned = [learned.update(k, n).anomalous for k, n in QUIET_OUTAGE]
    assert fired_held.index(True) == 7, fired_held
    assert fired_learned.index(True) >= 14, fired_learned
    assert held.baseline == before
    assert learned.baseline > 1.3 * before


def test_held_windows_are_learned_in_order_once_calm() -> None:
    """A suspect blip that passes is no incident: once a window is calm again, the windows held back are
    learned in their order, and the baseline is the one a test that never held would have."""
    held, learned = _woken(), _woken(hold=0.0)
    stream = [(2, 3), (1, 2)] + [(0, 2)] * 40
    suspect = []
    for k, n in stream:
        r = held.update(k, n)
        suspect.append(held.held is not None)
        assert not r.anomalous and not learned.update(k, n).anomalous
    assert suspect[1] and not suspect[-1]
    assert held.baseline == learned.baseline


def test_a_busy_route_small_lasting_rise_is_learned() -> None:
    """A route of 5,000 requests a minute whose error rate steps from 1% to 1.75% (under the effect size:
    never an incident) has windows whose own count is suspect at 1e-3 now and then; they are not held (a
    window is held on its own count only when it clears the effect size), so its baseline follows the rise
    as a test that never holds does. Held, the next burst dropped them for good and the baseline trailed."""
    rng = random.Random(11)
    held, learned = (next(sp for sp in SIGNALS if sp.name == "errors_performance").make(Config().route("busy"))
                     for _ in range(2))
    assert isinstance(held, ProportionTest) and isinstance(learned, ProportionTest)
    learned.hold = 0.0
    for i in range(1100):
        rate = 0.01 if i < 800 else 0.0175
        k = max(0, round(rng.gauss(5000 * rate, math.sqrt(5000 * rate))))
        assert not held.update(k, 5000).anomalous
        learned.update(k, 5000)
    assert abs(held.baseline - learned.baseline) < 0.02 * learned.baseline, (held.baseline, learned.baseline)


def test_a_young_baseline_holds_nothing_back() -> None:
    """A route two hours old, whose first 900 requests happened to hold no timeout, has a baseline far under
    its true rate: its first errors are suspect against it, and are learned all the same (held back, they
    would keep the baseline at its underestimate and open a false incident on the route's first morning)."""
    det = next(sp for sp in SIGNALS if sp.name == "errors_performance").make(Config().route("notes"))
    assert isinstance(det, ProportionTest)
    for _ in range(120):
        det.update(0, 8)
    before = det.baseline
    det.update(2, 8)
    assert det.held is None
    assert det.baseline > before


def _learned(name: str) -> ProportionTest:
    det = next(sp for sp in SIGNALS if sp.name == name).make(Config().route("notes"))
    assert isinstance(det, ProportionTest)
    for i in range(1440):
        det.update(1 if i % 150 == 0 else 0, 3)
    return det


def test_a_quiet_route_outage_needs_two_hot_windows_and_tool_errors_three() -> None:
    """Errors of availability that show in two windows of the first four (one, then two, of three requests)
    fire on the fourth: an outage on a quiet route is not held until a third window happens to fail. Tool
    errors come in bursts (an agent retrying a failing call), so two bursts a few minutes apart are not an
    incident of the tool; the same two bursts of timeouts are."""
    outage = _learned("errors_performance")
    fired = [outage.update(k, 3).anomalous for k in (1, 0, 0, 2, 0, 0, 1, 0)]
    assert fired.index(True) == 3, fired
    bursts = (3, 0, 0, 0, 2, 0, 0, 0)
    tool = _learned("errors_tool")
    assert not any(tool.update(k, 3).anomalous for k in bursts)
    timeouts = _learned("errors_performance")
    assert any(timeouts.update(k, 3).anomalous for k in bursts)


def test_a_slowdown_that_opens_while_its_provider_fails_elsewhere_blames_no_change() -> None:
    """The route that changed its config just before slows down (its requests time out on the failing
    provider) and its latency incident opens before its own errors show: the provider's errors on the
    other routes already explain it, so the change is never recommended as a rollback."""
    s = Stream(3)
    start, end = THU, THU + 20 * 3_600_000
    out0, out1 = start + 18 * 3_600_000, start + 18 * 3_600_000 + 40 * MIN
    routes = {"chat": 20.0, "summaries": 8.0, "search": 6.0}
    for route, rate in routes.items():

        def ctx(t: int, route: str = route) -> dict[str, Any]:
            version = "cfg-2" if route == "chat" and t >= out0 - 10 * MIN else "cfg-1"
            return {"model": "m1", "provider": "acme", "config_version": version}

        def err(t: int, c: dict[str, Any], route: str = route) -> str | None:
            begins = out0 + (4 * MIN if route == "chat" else 0)
            return "timeout" if begins <= t < out1 and s.rng.random() < 0.35 else None

        def lat(t: int, c: dict[str, Any], route: str = route) -> float:
            return 3000.0 if route == "chat" and out0 + 2 * MIN <= t < out1 else 900.0

        s.requests(route, start, end, lambda t, r=rate: r, ctx, error=err, latency=lat)
    s.change(out0 - 10 * MIN, "chat", "config", "cfg-1", "cfg-2")  # benign, just before
    byid = _by_id(s.run())
    chat = [msgs for msgs in byid.values() if msgs[0]["route"] == "chat" and msgs[0]["incident_type"] == "performance"]
    assert len(chat) == 1, [[m["event"] for m in msgs] for msgs in chat]
    assert chat[0][0]["signals"][0]["signal"].startswith("latency_"), chat[0][0]["signals"]  # the shape tested
    assert _rollbacks(chat[0]) == [], _rollbacks(chat[0])
    assert chat[0][-1]["group"]["cause"] == {"kind": "provider", "value": "acme"}


def test_a_quiet_route_far_slower_opens_on_its_first_pooled_value() -> None:
    """A route of one request every two minutes judges latency on five requests pooled (about ten
    minutes): a value far past its threshold opens the incident at once, not a pooled value later."""
    s = Stream(4)
    start, end = THU, THU + 30 * 3_600_000
    slow = start + 26 * 3_600_000
    s.requests("notes", start, end, lambda t: 0.5, lambda t: {"model": "m1", "provider": "acme"},
               latency=lambda t, c: 5000.0 if t >= slow else 900.0)
    opened = [m for m in s.run() if m["event"] == "opened" and m["incident_type"] == "performance"]
    late = [m for m in opened if _ms(m["detected_at"]) >= slow]
    assert late and late[0]["signals"][0]["signal"] == "latency_p50", late
    assert _ms(late[0]["detected_at"]) - slow <= 16 * MIN, late[0]["detected_at"]
    assert all(_ms(m["detected_at"]) >= slow - 60 * MIN for m in opened), opened  # nothing before it


def _ramp(seed: int, per_min: float, top: float, hours: int) -> tuple[list[dict[str, Any]], int]:
    """``per_min`` requests a minute for ``hours``; from ``r0`` (two hours before the end) latency climbs
    from 900 ms to ``top`` x over 40 minutes and stays there. The performance incidents opened, and ``r0``."""
    s = Stream(seed)
    start, end = THU, THU + hours * 3_600_000
    r0 = end - 2 * 3_600_000

    def lat(t: int, c: dict[str, Any]) -> float:
        return 900.0 if t < r0 else 900.0 * (1.0 + (top - 1.0) * min(1.0, (t - r0) / (40 * MIN)))

    s.requests("notes", start, end, lambda t: per_min, lambda t: {"model": "m1", "provider": "acme"}, latency=lat)
    opened = [m for m in s.run() if m["event"] == "opened" and m["incident_type"] == "performance"]
    return opened, r0


def _quiet_ramp(seed: int) -> tuple[list[dict[str, Any]], int]:
    """One request every two minutes, a ramp to 2.2x: about the pooled median's threshold, so that test
    alone is late or blind."""
    return _ramp(seed, 0.5, 2.2, 28)


def test_a_quiet_route_ramping_up_is_found_by_its_mean_log_latency(monkeypatch: Any) -> None:
    """The log-mean test (every sample of the last few batches) finds a quiet route's ramp half an hour
    before the pooled median does; it reports as latency_p50 and opens nothing before the ramp."""
    import detector.detectors.routes as routes

    opened, r0 = _quiet_ramp(6)
    assert len(opened) == 1 and opened[0]["signals"][0]["signal"] == "latency_p50", opened
    with_mean = _ms(opened[0]["detected_at"]) - r0
    assert 0 <= with_mean <= 40 * MIN, with_mean
    monkeypatch.setattr(routes, "QUIET_BATCH_MS", 10**12)  # the pooled median alone: no batch is quiet,
    monkeypatch.setitem(routes.BUSY_LOGMEAN, "confirm", 10**9)  # and the busy batches' test never passes
    opened, r0 = _quiet_ramp(6)
    assert opened and _ms(opened[0]["detected_at"]) - r0 >= with_mean + 20 * MIN, (opened, with_mean)


def _busy_ramp(seed: int) -> tuple[list[dict[str, Any]], int]:
    """Three requests a minute, a ramp to 3x. A batch of five latencies comes every two minutes: its
    median is as noisy as a quiet route's."""
    return _ramp(seed, 3.0, 3.0, 12)


def test_a_busier_route_ramping_up_is_found_by_its_own_log_mean_test(monkeypatch: Any) -> None:
    """Batches gathered in a couple of minutes have a log-mean test of their own (spans within twenty
    minutes, passing on two batches in a row). Over eight seeds it is never later than the level test
    alone, and finds the ramps 20 minutes sooner in all (a median within 20 minutes of the ramp's start);
    each seed opens one incident, none before the ramp."""
    import detector.detectors.routes as routes

    def delays() -> list[int]:
        out = []
        for seed in range(1, 9):
            opened, r0 = _busy_ramp(seed)
            assert len(opened) == 1 and opened[0]["signals"][0]["signal"] == "latency_p50", opened
            out.append(_ms(opened[0]["detected_at"]) - r0)
        assert min(out) >= 0, out
        return out

    with_mean = delays()
    with monkeypatch.context() as m:
        m.setitem(routes.BUSY_LOGMEAN, "confirm", 10**9)  # the level test alone
        alone = delays()
    assert all(a <= b for a, b in zip(with_mean, alone, strict=True)), (with_mean, alone)
    assert sum(alone) - sum(with_mean) >= 20 * MIN, (with_mean, alone)
    assert sorted(with_mean)[3] <= 20 * MIN, with_mean


# -- canaries ----------------------------------------------------------------------------------------
def _canary(seed: int, rate: float, share: float, bad: str) -> tuple[list[dict[str, Any]], int]:
    s = Stream(seed)
    start, end = THU, THU + 24 * 3_600_000
    c0, c1 = start + 20 * 3_600_000, start + 22 * 3_600_000

    def model(t: int) -> str:
        return "m2" if c0 <= t < c1 and s.rng.random() < share else "m1"

    def ctx(t: int) -> dict[str, Any]:
        return {"model": model(t), "provider": "acme", "prompt_version": "p7"}

    def err(t: int, c: dict[str, Any]) -> str | None:
        return "validation_error" if bad == "errors" and c["model"] == "m2" and s.rng.random() < 0.3 else None

    def lat(t: int, c: dict[str, Any]) -> float:
        return 2400.0 if bad == "latency" and c["model"] == "m2" else 800.0

    s.requests("draft", start, end, lambda t: rate, ctx, error=err, latency=lat)
    s.change(c0, "draft", "model", "m1", "m2")
    s.change(c1, "draft", "model", "m2", "m1")
    return s.run(), c0


def test_canary_latency_regression_on_a_fifth_of_traffic_is_found_and_rolled_back() -> None:
    incidents, c0 = _canary(3, 20.0, 0.2, "latency")
    byid = _by_id(incidents)
    perf = [msgs for msgs in byid.values() if msgs[-1]["incident_type"] == "performance"]
    assert len(perf) == 1, [m[0]["signals"] for m in byid.values()]
    msgs = perf[0]
    assert _ms(msgs[0]["detected_at"]) - c0 <= 20 * MIN
    assert any(sig["signal"] == "canary_latency" for sig in msgs[0]["signals"])
    assert _rollbacks(msgs) and all(t == {"kind": "model", "to_version": "m1"} for t in _rollbacks(msgs))


def test_canary_errors_on_a_quiet_route_whose_majority_flips() -> None:
    """Two requests a minute, a quarter on the new model: single windows often have the new model as
    their majority. The incident is still found, with the old model as target, and never the new one."""
    incidents, c0 = _canary(4, 2.0, 0.25, "errors")
    byid = _by_id(incidents)
    bad = [msgs for msgs in byid.values() if msgs[-1]["incident_type"] == "bad_output"]
    assert bad, [(m[-1]["incident_type"], m[0]["signals"]) for m in byid.values()]
    assert _ms(bad[0][0]["detected_at"]) - c0 <= 30 * MIN
    for msgs in bad:
        targets = _rollbacks(msgs)
        assert targets and all(t == {"kind": "model", "to_version": "m1"} for t in targets), targets
        changes = msgs[-1]["evidence"]["changes"]
        assert [c["to_version"] for c in changes if c["kind"] == "model"][:1] == ["m2"]
        inferred = [c for c in changes if c.get("event_id") is None]
        assert inferred == [], inferred


# -- late detection keeps the change ----------------------------------------------------------------
def _review_drift(seed: int, reject: float, change: bool = True, ramp_min: int = 0,
                  review_share: float = 0.05) -> tuple[list[dict[str, Any]], int]:
    """Reviews on ``review_share`` of a route's three requests a minute, 4% rejected; after a prompt
    change at ``ch`` (announced by a change event when ``change``), ``reject`` of them (reached over
    ``ramp_min`` minutes: a drift)."""
    s = Stream(seed)
    start, end = THU, THU + 26 * 3_600_000
    ch = start + 20 * 3_600_000

    def ctx(t: int) -> dict[str, Any]:
        return {"model": "m1", "provider": "acme", "prompt_version": "p8" if t >= ch else "p7"}

    def rate(t: int, c: dict[str, Any]) -> float:
        if c["prompt_version"] != "p8":
            return 0.04
        return 0.04 + (reject - 0.04) * min(1.0, (t - ch) / (ramp_min * MIN)) if ramp_min else reject

    s.requests("notes", start, end, lambda t: 3.0, ctx, review_share=review_share, reject=rate)
    if change:
        s.change(ch, "notes", "prompt", "p7", "p8")
    return s.run(), ch


def test_slow_review_rejections_keep_the_prompt_change_that_preceded_them() -> None:
    """After a prompt change 45% of the reviews are rejected. The evidence is thin, so detection takes
    long; the incident still names the change and rolls it back."""
    incidents, _ = _review_drift(5, 0.45)
    bad = [msgs for msgs in _by_id(incidents).values() if msgs[-1]["incident_type"] == "bad_output"]
    assert len(bad) == 1
    msgs = bad[0]
    assert _ms(msgs[0]["started_at"]) <= _ms(msgs[0]["detected_at"])
    assert any(c["to_version"] == "p8" for c in msgs[-1]["evidence"]["changes"])
    assert _rollbacks(msgs) and all(t == {"kind": "prompt", "to_version": "p7"} for t in _rollbacks(msgs))


def test_slow_review_drifts_after_a_prompt_change_are_rolled_back_once_the_evidence_is_in() -> None:
    """Rejections drift from 4% to 35% over 100 minutes after a prompt change (a review for a fifth of
    three requests a minute). Detection takes 40-130 minutes, and the new prompt's reviews before the
    incident opened are too few to be clearly worse; the incident is explained again while it lasts, so
    over twelve seeds every one ends recommending the rollback to the old prompt (and never the new)."""
    for seed in range(1, 13):
        incidents, ch = _review_drift(seed, 0.35, ramp_min=100, review_share=0.2)
        bad = [msgs for msgs in _by_id(incidents).values() if msgs[-1]["incident_type"] == "bad_output"]
        assert bad, seed
        for msgs in bad:
            assert _ms(msgs[0]["detected_at"]) > ch, (seed, msgs[0]["detected_at"])
            assert _rollbacks(msgs) and all(t == {"kind": "prompt", "to_version": "p7"} for t in _rollbacks(msgs)), (
                seed, _rollbacks(msgs))


def _opened_bad(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in incidents if m["event"] == "opened" and m["incident_type"] == "bad_output"]


def test_reviews_after_a_change_are_judged_at_the_canary_level() -> None:
    """Nine reviews an hour, a quarter rejected after a prompt change (4% before): with the change event
    the review test judges at 1e-3 for six hours and finds it; the same reviews without a change event
    (no cause in sight) are held to 1e-4 and found much later."""
    incidents, ch = _review_drift(1, 0.25)
    found = _opened_bad(incidents)
    assert found and _ms(found[0]["detected_at"]) - ch <= 180 * MIN, found
    late = _opened_bad(_review_drift(1, 0.25, change=False)[0])
    assert not late or _ms(late[0]["detected_at"]) - _ms(found[0]["detected_at"]) >= 60 * MIN, late


def _errors_after_change(seed: int, change: bool) -> tuple[list[dict[str, Any]], int]:
    """A route of a request a minute; from ``c0`` a new prompt gets 12% validation errors (none before)."""
    s = Stream(seed)
    start, end = THU, THU + 12 * 3_600_000
    c0 = end - 2 * 3_600_000
    ctx = lambda t: {"model": "m1", "provider": "acme", "prompt_version": "p2" if t >= c0 else "p1"}  # noqa: E731
    s.requests("extract", start, end, lambda t: 1.0, ctx,
               error=lambda t, c: "validation_error" if t >= c0 and s.rng.random() < 0.12 else None)
    if change:
        s.change(c0, "extract", "prompt", "p1", "p2")
    return [m for m in s.run() if m["event"] == "opened"], c0


def test_errors_after_a_change_are_judged_at_a_looser_level_for_two_hours() -> None:
    """With the change event the error tests judge at 1e-4 for two hours: over eight seeds every one is
    found, never later than the same errors without a change event (held to 1e-5, which fires on its first
    anomalous window), and at least three at least 20 minutes sooner or found where the other is not (two
    of the eight are not found without the change event)."""
    sooner = 0
    for seed in range(1, 9):
        opened, c0 = _errors_after_change(seed, True)
        assert opened and all(m["incident_type"] == "bad_output" for m in opened), opened
        first = _ms(opened[0]["detected_at"]) - c0
        assert 0 <= first <= 100 * MIN, first
        plain, _ = _errors_after_change(seed, False)
        other = _ms(plain[0]["detected_at"]) - c0 if plain else None
        assert other is None or other >= first, (seed, first, other)
        sooner += other is None or other >= first + 20 * MIN
    assert sooner >= 3, sooner


# -- scheduled routes --------------------------------------------------------------------------------
def test_a_nightly_batch_ending_is_not_a_stop_but_a_batch_dying_mid_run_is() -> None:
    """A batch route that runs only at night (its start and end move by up to 15 minutes a night)
    opens nothing when each night's run ends; a longer nightly run that dies halfway through its
    fourth night is found."""
    s = Stream(6)
    ctx = lambda t: {"model": "m1", "provider": "acme"}  # noqa: E731
    day = 86_400_000
    dies = THU + 3 * day + 150 * MIN  # fourth night, 02:30
    for d in range(5):
        jitter = s.rng.randint(-15, 15) * MIN
        s.requests("nightly", THU + d * day + 80 * MIN + jitter, THU + d * day + 170 * MIN + jitter,
                   lambda t: 40.0, ctx)
        end = THU + d * day + 300 * MIN if d != 3 else dies
        s.requests("long-batch", THU + d * day + jitter, end, lambda t: 30.0, ctx)
    incidents = s.run()
    routes = {m["route"] for m in incidents}
    assert "nightly" not in routes, [m["signals"] for m in incidents if m["route"] == "nightly"]
    opened = [m for m in incidents if m["route"] == "long-batch" and m["event"] == "opened"]
    assert len(opened) == 1, [(m["detected_at"], m["signals"]) for m in opened]
    assert dies <= _ms(opened[0]["detected_at"]) <= dies + 15 * MIN
