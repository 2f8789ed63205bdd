"""Behaviour of the service's per-route detectors on seeded synthetic window series.

Most tests drive :meth:`RouteDetectors.on_window` with hand-built
:class:`WindowAggregate` s (one per 1-minute window), so they exercise the
same code the service runs: the continuous-signal detector
(:class:`LevelShift` on the univariate core), the rate and count tests
(:class:`ProportionTest`, :class:`CountTest`), the operator limits
(:class:`BurnRate`, :class:`SpendGuard`, static guardrails) and the
:class:`Alarm` around each signal.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import pytest

from detector.config import Config
from detector.detectors import routes as routes_module
from detector.detectors.firing import Firing
from detector.detectors.guard import BurnRate, SpendGuard
from detector.detectors.proportion import CountTest, Judgement, ProportionTest
from detector.detectors.routes import RouteDetectors
from detector.detectors.signals import Alarm, LevelShift, core_detector
from detector.windows.aggregate import WindowAggregate

MINUTE = 60_000
WARM = 900  # windows of normal traffic before a change (past the core's warm-up of 600 values)
ROUTE = "chat.answer"


def diurnal(i: int) -> float:
    """Traffic multiplier for window ``i``: a daily cycle between 0.4 and 1.6."""
    return 1.0 + 0.6 * math.sin(2 * math.pi * i / 1440)


def window(
    i: int,
    rng: random.Random,
    requests: int = 40,
    latency_ms: float = 300.0,
    errors: dict[str, int] | None = None,
    cost_per_request: float = 0.002,
    route: str = ROUTE,
) -> WindowAggregate:
    """One window with ``requests`` requests, log-normal latencies, cost, tokens and distinct traces."""
    w = WindowAggregate(route, i * MINUTE, (i + 1) * MINUTE)
    w.requests = w.events = requests
    for _ in range(requests):
        w.latency.add(latency_ms * rng.lognormvariate(0.0, 0.25))
    if requests:
        w.cost_usd = cost_per_request * requests * rng.uniform(0.9, 1.1)
        w.cost_events = requests
        w.input_tokens = 100 * requests
        w.trace_counts = {f"{i}-{j}": 1 for j in range(requests)}
    w.errors = dict(errors or {})
    return w


Shape = Callable[[int, random.Random], WindowAggregate]


def run(shape: Shape, n: int, config: Config | None = None, seed: int = 0) -> list[list[Firing]]:
    """Firings per window for ``n`` windows built by ``shape(i, rng)``."""
    rd = RouteDetectors(config or Config())
    rng = random.Random(seed)
    return [rd.on_window(shape(i, rng)) for i in range(n)]


def fired(out: list[list[Firing]], signal: str | None = None) -> list[int]:
    """Windows in which ``signal`` (any signal when None) fired."""
    return [i for i, fs in enumerate(out) if any(signal is None or f.signal == signal for f in fs)]


def normal(i: int, rng: random.Random) -> WindowAggregate:
    """Diurnal traffic, about 40 requests a minute at the daily mean, 0.5% timeouts."""
    req = max(1, int(rng.gauss(40 * diurnal(i), 3)))
    errs = {"timeout": 1} if rng.random() < 0.2 else {}
    return window(i, rng, requests=req, errors=errs)


# -- continuous signals (LevelShift on the univariate core) ---------------------------


def test_core_is_the_nab_core() -> None:
    """The continuous-signal detector's core is the detector ``detector bench nab`` scores."""
    from detector.bench.nab.runner import default_detector

    assert repr(LevelShift().core) == repr(core_detector()) == repr(default_detector())


def test_seasonal_traffic_without_anomaly_stays_quiet() -> None:
    """Two days of diurnal traffic with noise raise no firing on any signal."""
    for seed in (0, 1):
        assert fired(run(normal, 2 * 1440, seed=seed)) == [], seed


def test_latency_step_fires_within_minutes() -> None:
    """A 3x latency step fires latency within 5 windows, and only once the step began."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        return window(i, rng, requests=w.requests, latency_ms=900.0) if i >= WARM else w

    out = run(shape, WARM + 30)
    lat = fired(out, "latency_p50")  # 40 requests a window: too few for p95 (needs 100)
    assert lat and WARM <= lat[0] <= WARM + 5
    assert all(f.incident_type == "performance" for f in out[lat[0]] if f.signal.startswith("latency"))
    assert fired(out[:WARM]) == []


def test_latency_ramp_fires_before_it_triples() -> None:
    """Latency growing 2% a window fires before it has tripled (about 55 windows)."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        if i < WARM:
            return w
        return window(i, rng, requests=w.requests, latency_ms=300.0 * 1.02 ** (i - WARM))

    lat = fired(run(shape, WARM + 80), "latency_p50")
    assert lat and WARM < lat[0] < WARM + 55


def test_one_window_spike_does_not_fire() -> None:
    """A single window of 5x latency is judged anomalous but persistence keeps the alarm off."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        return window(i, rng, requests=w.requests, latency_ms=1500.0) if i == WARM else w

    rd = RouteDetectors(Config())
    p50: list[float] = []
    rd.trace = lambda w, results: p50.append(r.observed) if (r := results.get("latency_p50")) else None
    rng = random.Random(0)
    out = [rd.on_window(shape(i, rng)) for i in range(WARM + 10)]
    assert max(p50) >= 1000 and p50[-1] < 1000  # the spike was judged, then normal again
    assert fired(out) == []


def test_cost_per_request_step_fires_cost() -> None:
    """Cost per request x4 fires a cost-type signal within 5 windows."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        if i < WARM:
            return w
        return window(i, rng, requests=w.requests, errors=w.errors, cost_per_request=0.008)

    out = run(shape, WARM + 20)
    cost = fired(out, "cost_per_request")
    assert cost and cost[0] <= WARM + 5
    assert {f.incident_type for f in out[cost[0]] if f.signal == "cost_per_request"} == {"cost"}


def test_long_anomaly_does_not_drag_the_baseline_and_recovery_is_recognised() -> None:
    """Six hours of 3x latency fire throughout, the baseline stays put, recovery clears, a repeat fires."""
    start, end, again = WARM, WARM + 360, WARM + 480

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        slow = start <= i < end or again <= i < again + 20
        return window(i, rng, requests=w.requests, latency_ms=900.0) if slow else w

    out = run(shape, again + 20)
    lat = set(fired(out, "latency_p50"))
    assert set(range(start + 5, end)) <= lat  # held for the whole anomaly
    assert not lat & set(range(end + 10, again))  # cleared after it
    assert lat & set(range(again, again + 10))  # and the next one is recognised
    base = [f.baseline for f in out[end - 1] if f.signal == "latency_p50"][0]
    assert 200 < base < 450  # the learned median of normal traffic, not the incident's


def test_level_shift_ignores_small_effects_even_when_surprising() -> None:
    """A steady series then +20%: the core may be surprised but the effect-size guard says no."""
    d = LevelShift(min_ratio=1.5)
    rng = random.Random(3)
    for i in range(WARM):
        d.update(300 * rng.lognormvariate(0, 0.02), i * MINUTE)
    judged = [d.update(360.0, (WARM + k) * MINUTE) for k in range(30)]
    assert max(r.score for r in judged) >= 0.5  # the core calls it surprising
    assert not any(r.anomalous for r in judged)


# -- rates and counts -----------------------------------------------------------------


def test_error_burst_fires_proportion_test() -> None:
    """30% tool errors on a busy route fire errors_tool (tool_failure) within 3 windows."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        if i >= 200:
            w.errors = {"tool_error": int(0.3 * w.requests)}
        return w

    out = run(shape, 215)
    tool = fired(out, "errors_tool")
    assert tool and 200 <= tool[0] <= 203
    assert {f.incident_type for f in out[tool[0]] if f.signal == "errors_tool"} == {"tool_failure"}


def test_low_volume_route_does_not_fire_on_one_error() -> None:
    """A route with 2 requests a minute and one occasional error never fires."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        errs = {"provider_error": 1} if i % 97 == 50 else {}
        return window(i, rng, requests=2, errors=errs)

    assert fired(run(shape, 600)) == []


def test_traffic_drop_to_zero_fires_request_volume() -> None:
    """A busy route that stops sending fires request_volume as a drop (performance), also in an hour it
    has no history of yet, once it has sent without a break for longer than CountTest.min_run_ms."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        return normal(i, rng) if i < 400 else window(i, rng, requests=0)

    out = run(shape, 430)
    vol = fired(out, "request_volume")
    assert vol and 400 <= vol[0] <= 410
    assert {f.incident_type for f in out[vol[0]] if f.signal == "request_volume"} == {"performance"}


def test_traffic_spike_fires_request_volume_as_cost() -> None:
    """10x traffic for ten windows fires request_volume as a spike (cost)."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        return window(i, rng, requests=10 * w.requests) if 300 <= i < 310 else w

    out = run(shape, 320)
    vol = fired(out, "request_volume")
    assert vol and 300 <= vol[0] <= 303
    assert {f.incident_type for f in out[vol[0]] if f.signal == "request_volume"} == {"cost"}


def test_proportion_and_count_tests_judge_counts() -> None:
    """ProportionTest needs pooled evidence; CountTest flags a stop after enough expected traffic."""
    p = ProportionTest()
    for _ in range(100):
        p.update(1, 100)
    assert not p.update(1, 1).anomalous  # one of one is not evidence
    c = CountTest()
    for i in range(400):  # over six hours of traffic (see CountTest.min_run_ms)
        c.update(50, i * MINUTE)
    assert c.update(0, 400 * MINUTE).anomalous  # 50 expected, 0 seen


# -- warm-up, persistence and hysteresis ----------------------------------------------


def test_no_alarm_during_warm_up() -> None:
    """Anomalies inside the warm-up (60 windows) do not fire; the same anomaly after it does."""

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = normal(i, rng)
        if 5 <= i < 20 or 200 <= i < 220:
            w.errors = {"timeout": int(0.5 * w.requests)}
        return w

    out = run(shape, 230)
    assert fired(out[:60]) == []
    perf = fired(out, "errors_performance")
    assert perf and 200 <= perf[0] <= 203


def test_persistence_and_hysteresis_through_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error burst fires from its 2nd anomalous window and clears 5 calm windows after it ends (with the
    overwhelming-evidence shortcut switched off: it is tested on its own)."""
    monkeypatch.setattr(routes_module, "OVERWHELMING", 2.0)
    monkeypatch.setattr(routes_module, "RATE_SURE", 2.0)
    cfg = Config.model_validate({"detectors": {"persistence": 2, "clear_after": 5}})

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = window(i, rng, requests=200)
        if 300 <= i < 320:
            w.errors = {"validation_error": 100}
        return w

    rd = RouteDetectors(cfg)
    rng = random.Random(0)
    anomalous, on = [], []
    for i in range(400):
        out = rd.on_window(shape(i, rng))
        # this window's judgement, seen from its alarm: a hit streak means it was anomalous
        anomalous.append(rd.routes[ROUTE].alarms["errors_validation"].hits > 0)
        on.append(any(f.signal == "errors_validation" for f in out))
    first, last_hit = anomalous.index(True), max(i for i, a in enumerate(anomalous) if a)
    assert on.index(True) == first + 1  # persistence: the 2nd consecutive anomalous window fires
    assert 300 <= first <= 302  # the excess must cover min_hot (3) windows before a span counts
    # hysteresis: on through the last anomalous window and 4 calm ones, off from the 5th
    assert on[last_hit + 4] and not any(on[last_hit + 5 :])


def _burst_hit_and_firing(cfg: Config, n: int, heighten_until: int | None = None,
                          heighten_type: str | None = None, heighten_signals: Sequence[str] = ()) -> tuple[int, int]:
    """Half of a busy route's requests failing from window 300: the first window judged anomalous (a hit
    on the errors_validation alarm) and the first in which it fired; ``heighten_until`` watches the route's
    signals of ``heighten_type`` (None: all) harder from window 1."""
    rd = RouteDetectors(cfg)
    rng = random.Random(0)
    first_hit = first_on = -1
    for i in range(n):
        w = window(i, rng, requests=200)
        if i >= 300:
            w.errors = {"validation_error": 100}
        if i == 1 and heighten_until is not None:
            rd.heighten(ROUTE, heighten_until, heighten_type, heighten_signals)
        out = rd.on_window(w)
        if first_hit < 0 and rd.routes[ROUTE].alarms["errors_validation"].hits > 0:
            first_hit = i
        if first_on < 0 and any(f.signal == "errors_validation" for f in out):
            first_on = i
    return first_hit, first_on


def test_heightened_monitoring_fires_on_the_first_anomalous_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """After heighten() (an incident resolved), one anomalous window fires; after the period, two are needed
    (overwhelming evidence, tested next, fires at once anyway: it is switched off here)."""
    monkeypatch.setattr(routes_module, "OVERWHELMING", 2.0)
    monkeypatch.setattr(routes_module, "RATE_SURE", 2.0)
    cfg = Config.model_validate({"detectors": {"persistence": 2, "clear_after": 5}})
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=400 * MINUTE)
    assert on == hit  # heightened: the first anomalous window fires
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=100 * MINUTE)  # the period ended long before
    assert on == hit + 1


def test_heightened_monitoring_watches_only_the_type_that_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a bad_output incident resolves, its own signals (validation errors) fire on one anomalous
    window; after a performance incident, they still wait for a second. On the fleet scenarios every false
    latency incident of a 6-sample median blip came within the hour after another type's incident resolved."""
    monkeypatch.setattr(routes_module, "OVERWHELMING", 2.0)
    monkeypatch.setattr(routes_module, "RATE_SURE", 2.0)
    cfg = Config.model_validate({"detectors": {"persistence": 2, "clear_after": 5}})
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=400 * MINUTE, heighten_type="bad_output")
    assert on == hit
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=400 * MINUTE, heighten_type="performance")
    assert on == hit + 1


def test_heightened_monitoring_watches_only_the_signals_of_the_incident_that_resolved(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After an incident resolves, the signals it carried fire on one anomalous window; the other signals of
    its type still wait for a second. On the fleet scenarios a quiet route's latency blip 30-70 minutes after
    its provider's errors had resolved (the same type, performance) opened high-severity false incidents
    (six over 28 seeds)."""
    monkeypatch.setattr(routes_module, "OVERWHELMING", 2.0)
    monkeypatch.setattr(routes_module, "RATE_SURE", 2.0)
    cfg = Config.model_validate({"detectors": {"persistence": 2, "clear_after": 5}})
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=400 * MINUTE, heighten_type="bad_output",
                                    heighten_signals=["errors_validation"])
    assert on == hit
    hit, on = _burst_hit_and_firing(cfg, 400, heighten_until=400 * MINUTE, heighten_type="bad_output",
                                    heighten_signals=["review_rejection_rate"])
    assert on == hit + 1


def test_overwhelming_evidence_fires_on_its_first_anomalous_window() -> None:
    """Half of a busy route's requests failing: the count test's p-value is far below 1e-10 on the first
    anomalous window, which fires at once instead of waiting for a second (persistence guards against
    one-window flukes, and this is none)."""
    first_hit, first_on = _burst_hit_and_firing(Config.model_validate({"detectors": {"persistence": 2}}), 330)
    assert first_hit >= 300 and first_on == first_hit


def _quiet_route_errors(first_bad: int, bad_every: int, n: int, requests: int = 3,
                        denied: int = 1, change_at: int | None = None) -> tuple[int, int, float]:
    """A route of ``requests`` requests a minute with no errors, then from ``first_bad`` ``denied`` of them
    denied every ``bad_every`` windows (with a prompt ``change`` in window ``change_at``): the first window
    its rate test judged anomalous, the first in which it fired, and the rate test's p-value on that first
    anomalous window."""
    rd = RouteDetectors(Config.model_validate({"detectors": {"persistence": 2}}))
    judged: list[Judgement | None] = []
    rd.trace = lambda w, results: judged.append(results.get("errors_access"))
    rng = random.Random(0)
    first_hit = first_on = -1
    p = 1.0
    for i in range(n):
        bad = i >= first_bad and (i - first_bad) % bad_every == 0
        w = window(i, rng, requests=requests, errors={"access_denied": denied} if bad else None)
        if i == change_at:
            w.changes = [{"kind": "prompt", "from_version": "p1", "to_version": "p2", "ts": i * MINUTE}]
        out = rd.on_window(w)
        r = judged[-1]
        if first_hit < 0 and r is not None and r.anomalous:
            first_hit = i
            p = 1.0 - r.score
        if first_on < 0 and any(f.signal == "errors_access" for f in out):
            first_on = i
    return first_hit, first_on, p


def test_a_rate_test_sure_of_its_span_fires_without_waiting_for_a_second_window() -> None:
    """A rate test's span already needs the excess in min_hot (2) windows, its own persistence: at its own
    level (p < 1e-5) its first anomalous window fires, with strong evidence (two of a quiet route's three
    requests a minute denied where none ever were) and with the least (one of the three). Evidence found only
    at the looser level that follows a change (p between 1e-5 and 1e-4) still waits for a second window."""
    hit, on, p = _quiet_route_errors(200, 1, 260, requests=3, denied=2)
    assert hit >= 200 and 1e-10 < p < 1e-6 and on == hit  # (below 1e-10 it fired at once before, too)
    hit, on, p = _quiet_route_errors(200, 1, 260, requests=3, denied=1)
    assert hit >= 200 and 1e-7 <= p < 1e-5 and on == hit
    hit, on, p = _quiet_route_errors(200, 1, 260, requests=3, denied=1, change_at=190)
    assert hit >= 200 and 1e-5 <= p < 1e-4 and on == hit + 1


def test_alarm_warm_up_persistence_hysteresis() -> None:
    """Alarm: nothing before warm-up; fires on the 2nd consecutive hit; clears after 3 calm steps."""
    a = Alarm(warmup=3, persistence=2, clear_after=3)
    assert [a.step(True) for _ in range(3)] == [False] * 3  # warm-up
    assert [a.step(v) for v in (True, True)] == [False, True]
    assert [a.step(v) for v in (False, True, False, False, False)] == [True, True, True, True, False]
    assert a.step(None) is False  # nothing to judge: no change


# -- SLO burn rate and static guardrails ----------------------------------------------


def _burn(rate: float, windows: int, requests: int, warm: int = 360) -> list[bool]:
    b = BurnRate(slo_error_rate=0.01)
    for _ in range(warm):
        b.update(0, requests)
    return [b.update(round(rate * requests), requests).anomalous for _ in range(windows)]


def test_burn_rate_fast_pair_fires_at_14_4x() -> None:
    """20% errors against a 1% SLO (20x) fire the fast pair within the hour; 10x does not fire it fast."""
    fast = _burn(0.20, 60, 100)
    assert any(fast[:45])
    assert not any(_burn(0.10, 20, 100))  # 10x: below 14.4x, slow pair needs longer


def test_burn_rate_slow_pair_fires_at_6x() -> None:
    """8% errors (8x) never reach 14.4x but fire the 6x pair once the 6 h window has burnt enough."""
    slow = _burn(0.08, 360, 100)
    assert any(slow) and not any(slow[:60])


def test_burn_rate_needs_minimum_volume() -> None:
    """With too few requests (below 50 per hour) even 100% errors do not fire."""
    b = BurnRate(slo_error_rate=0.01, min_requests=50)
    assert not any(b.update(1, 1 if i % 5 == 0 else 0).anomalous for i in range(200))


def test_burn_rate_through_the_route() -> None:
    """A route with an SLO fires slo_burn_rate on 30% timeouts once the hour has burnt 14.4x."""
    cfg = Config.model_validate({"routes": {"chat.*": {"slo": {"error_rate": 0.01}}}})

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        w = window(i, rng, requests=100)
        if i >= 100:
            w.errors = {"timeout": 30}
        return w

    # 30% is 30x the budget: the 1 h window reaches 14.4x after about 29 windows of it
    burn = fired(run(shape, 160, cfg), "slo_burn_rate")
    assert burn and 125 <= burn[0] <= 135


@pytest.mark.parametrize(
    ("guardrails", "signal", "change"),
    [
        ({"max_p95_ms": 500.0}, "guardrail_p95", {"latency_ms": 800.0}),
        ({"max_error_rate": 0.2}, "guardrail_error_rate", {"errors": {"tool_error": 15}}),
        ({"max_spend_per_hour": 1.0}, "guardrail_spend", {"cost_per_request": 0.05}),
    ],
)
def test_static_guardrails_fire_without_warm_up(guardrails: dict, signal: str, change: dict) -> None:
    """A breached operator limit fires within the first windows: no warm-up, no learned baseline."""
    cfg = Config.model_validate({"routes": {"chat.*": {"guardrails": guardrails}}})

    def shape(i: int, rng: random.Random) -> WindowAggregate:
        return window(i, rng, requests=40, **(change if i >= 5 else {}))

    out = run(shape, 12, cfg)
    hits = fired(out, signal)
    assert hits and 5 <= hits[0] <= 7 and fired(out[:5]) == []
    assert next(f for f in out[hits[0]] if f.signal == signal).detector in ("StaticLimit", "SpendGuard")


def test_spend_guard_sums_the_last_hour() -> None:
    """SpendGuard compares the rolling hour's spend with the limit."""
    g = SpendGuard(max_spend_per_hour=10.0, windows_per_hour=60)
    assert not any(g.update(0.1).anomalous for _ in range(60))  # 6 per hour
    hits = [g.update(0.5).anomalous for _ in range(20)]  # the hour fills with 0.5 a window
    assert hits.index(True) == 10  # 49 x 0.1 + 11 x 0.5 = 10.4 > 10


def test_count_test_learns_weekends_apart_from_weekdays() -> None:
    """After a fortnight, a weekend hour is expected at weekend volume and a weekday hour at weekday volume."""
    d = CountTest()
    monday = 1_767_571_200_000  # 2026-01-05T00:00Z, a Monday
    for i in range(14 * 1440):
        ts = monday + i * MINUTE
        weekend = (i // 1440) % 7 >= 5
        d.update(12 if weekend else 60, ts)
    saturday_noon = monday + (14 * 1440 + 5 * 1440 + 720) * MINUTE
    tuesday_noon = monday + (14 * 1440 + 1440 + 720) * MINUTE
    assert abs(d.expected(saturday_noon) - 12) < 1 and abs(d.expected(tuesday_noon) - 60) < 1
    assert not d.evaluate(12, saturday_noon).anomalous  # a quiet Saturday is no traffic collapse
    assert d.evaluate(0, saturday_noon).judged


def test_rate_test_forgets_a_passed_excess() -> None:
    """After an error burst has passed, one ordinary error is not joined with the old burst into a new alarm."""
    d = ProportionTest()
    for _ in range(300):
        d.update(0, 12)
    assert any(d.update(4, 12).anomalous for _ in range(10))  # the incident
    calm = [d.update(0, 12).anomalous for _ in range(12)]  # it passes: the excess leaves the recent windows
    assert calm[-6:] == [False] * 6
    assert not d.update(1, 12).anomalous  # a lone background error afterwards


def test_a_latency_ramp_is_found_before_it_is_a_step() -> None:
    """Latency creeping from 1x to 3x over 40 minutes on a busy route: the p50's CUSUM finds it while the
    median is still under the level test's 1.6x (the level test alone would wait for that); two quiet days
    of the same traffic raise nothing."""

    def shape(ramp_at: int | None) -> Callable[[int, random.Random], WindowAggregate]:
        def make(i: int, rng: random.Random) -> WindowAggregate:
            mult = 1.0 if ramp_at is None or i < ramp_at else 1.0 + 2.0 * min(1.0, (i - ramp_at) / 40)
            return window(i, rng, requests=60, latency_ms=300.0 * mult)
        return make

    assert fired(run(shape(None), 2 * 1440, seed=3), "latency_p50") == []
    start = 1440 + 600
    out = run(shape(start), start + 60, seed=3)
    hits = fired(out, "latency_p50")
    assert hits, "the ramp was not found"
    first = hits[0]
    mult_then = 1.0 + 2.0 * (first - start) / 40
    assert mult_then < 1.6, (first - start, mult_then)


def test_a_rate_test_judged_at_a_looser_level_keeps_its_evidence() -> None:
    """``alpha`` judges one window at another level (reviews after a change, at 1e-3): a span between
    the two levels is anomalous only at the looser one, and such a hit does not make the test forget
    its span history when the excess pauses (only an excess at its own level does)."""
    def fresh() -> ProportionTest:
        t = ProportionTest(alpha=1e-4, prior_rate=0.05, min_delta=0.1, min_trials=8, min_count=3, max_span=60)
        for _ in range(600):
            t.update(1, 20)  # 5% rejected
        return t

    strict, loose = fresh(), fresh()
    windows = [(1, 2), (0, 1), (1, 1), (1, 2), (0, 1), (1, 2)]  # 4 bad of 9 against 5%
    for k, n in windows:
        r_strict, r_loose = strict.update(k, n), loose.update(k, n, alpha=1e-3)
    assert 1e-4 < 1.0 - r_loose.score < 1e-3
    assert r_loose.anomalous and not r_strict.anomalous
    for _ in range(6):  # a pause in the excess: nothing was anomalous at the test's own level
        loose.update(0, 1, alpha=1e-3)
    assert len(loose.recent) == loose.max_span  # not cut back to the windows since the hit
    assert loose.recent[-12:-6] == [list(w) for w in windows]


def test_an_hour_first_learned_during_an_incident_is_not_trusted_on_its_own() -> None:
    """A route's latency is 3.8 s at every hour, but its 23:00 hour was first learned during a provider
    outage whose failed requests returned fast (1.4 s). The next nights' ordinary 3.8 s at 23:00 are
    judged against the hours around it too, so they are not anomalous (they fired every night before),
    and the hour heals from them; a real doubling at 23:00 still is."""
    rng = random.Random(3)
    d = LevelShift(min_ratio=1.6, z=3.0, cusum_h=12.0, cusum_k=2.0)
    hour = 60 * MINUTE
    t = 0
    for _ in range(22 * 60):  # a first day until 22:00 at 3.8 s
        d.update(3800.0 * rng.lognormvariate(0.0, 0.1), t, 8)
        t += MINUTE
    for _ in range(60):  # 22:00: still ordinary
        d.update(3800.0 * rng.lognormvariate(0.0, 0.1), t, 8)
        t += MINUTE
    for _ in range(60):  # 23:00: the outage hour, fast failures pull the median down
        d.update(1400.0 * rng.lognormvariate(0.0, 0.1), t, 8)
        t += MINUTE
    assert d.slot_n[23] >= d.slot_min and math.exp(d.slot_mean[23]) < 1600
    for _ in range(23 * 60):  # the next day until 23:00
        d.update(3800.0 * rng.lognormvariate(0.0, 0.1), t, 8)
        t += MINUTE
    assert t % (24 * hour) == 23 * hour
    night = [d.update(3800.0 * rng.lognormvariate(0.0, 0.1), t + i * MINUTE, 8).anomalous for i in range(60)]
    assert night.count(True) == 0, night
    assert math.exp(d.slot_mean[23]) > 2500  # healing (past halfway) from the values its neighbours call normal
    slow = [d.update(8000.0 * rng.lognormvariate(0.0, 0.1), t + 24 * hour + i * MINUTE, 8).anomalous
            for i in range(10)]
    assert slow.count(True) >= 8, slow
