"""Idle routes cost (almost) nothing (issue 11, item 1).

What these protect: a route whose empty windows cannot change a decision sleeps (the windower stops walking
it) and has the windows it slept through judged in one step when it wakes, by an event or at its idle
eviction. The decisions and the learned state are the same as when every empty window is judged on its
own (a pipeline whose stages never let a route sleep is the reference); a route that could show a stop
never sleeps; checkpoints and the end of a replay catch the sleepers up.
"""

from __future__ import annotations

import json
import random
from typing import Any

from detector.config import Config
from detector.detectors.routes import RouteDetectors
from detector.incidents.engine import IncidentEngine
from detector.pipeline import Pipeline
from detector.windows.windower import EmptyRun

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a Thursday


class Wrapped:
    """A detector stage that forwards to a RouteDetectors (a wrapper, not a subclass: the compiled build's
    classes admit no interpreted subclass)."""

    def __init__(self, inner: RouteDetectors):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class AwakeDetectors(Wrapped):
    """The reference: every empty window judged on its own, as before routes could sleep."""

    def __init__(self, config: Config):
        super().__init__(RouteDetectors(config))

    def quiet(self, route: str) -> bool:
        return False


def event(eid: str, kind: str, ts: int, route: str, **kw: Any) -> bytes:
    return json.dumps({"event_id": eid, "type": kind, "ts": ts, "route": route, "provider": "p",
                       "model": "m1", **kw}).encode()


def fleet(quiet_routes: int = 40, hours: int = 30, seed: int = 3) -> list[bytes]:
    """Quiet routes (a request or two an hour, one stopping after a burst), a busy route that stops, and a
    quiet route whose errors rise: ordered by time."""
    rng = random.Random(seed)
    out: list[tuple[int, bytes]] = []
    n = 0

    def request(route: str, ts: int, error: bool = False) -> None:
        nonlocal n
        n += 1
        out.append((ts, event(f"u{n}", "usage", ts, route, request_id=f"r{n}")))
        out.append((ts + 1, event(f"l{n}", "latency", ts + 1, route, request_id=f"r{n}",
                                  latency_ms=round(rng.lognormvariate(6.5, 0.3), 1))))
        if error:
            out.append((ts + 2, event(f"e{n}", "error", ts + 2, route, request_id=f"r{n}", error_class="timeout")))

    for r in range(quiet_routes):
        for h in range(hours):
            for _ in range(1 + (r % 3 == 0)):
                request(f"quiet{r}", T0 + h * 3_600_000 + rng.randrange(3_600_000))
    for m in range(hours * 60):
        if m < (hours - 4) * 60:  # a busy route that stops four hours before the end
            for k in range(12):
                request("busy", T0 + m * MIN + k * 5_000)
        if m % 3 == 0:  # a route at a request every three minutes, failing in its last two hours
            request("sparse", T0 + m * MIN + 7_000, error=m >= (hours - 2) * 60 and m % 2 == 0)
    out.sort(key=lambda x: x[0])
    return [b for _, b in out]


LINES = fleet()


def run(detectors: Any, lines: list[bytes] = LINES) -> tuple[Pipeline, list[dict[str, Any]]]:
    config = detectors.config
    pipe = Pipeline(config, detectors, IncidentEngine(config))
    out = pipe.process_many(lines)
    return pipe, out + pipe.flush()


def without_stamps(snap: dict[str, Any]) -> dict[str, Any]:
    """The engine's snapshot without the change tracker's recency stamps (an order, not a decision)."""
    snap = json.loads(json.dumps(snap))
    changes = snap.get("changes", {})
    changes.pop("stamp", None)
    for r in changes.get("routes", {}).values():
        r.pop("stamp", None)
    return snap


REF_PIPE, REF = run(AwakeDetectors(Config()))


def test_sleeping_routes_make_the_same_decisions_and_learn_the_same_state() -> None:
    pipe, out = run(RouteDetectors(Config()))
    assert out == REF
    assert {i["incident_type"] for i in out if i["event"] == "opened"} >= {"performance"}
    assert pipe.detectors.snapshot() == REF_PIPE.detectors.snapshot()
    assert without_stamps(pipe.incidents.snapshot()) == without_stamps(REF_PIPE.incidents.snapshot())
    assert pipe.windower.to_dict() == REF_PIPE.windower.to_dict()
    assert pipe.stats.windows_closed == REF_PIPE.stats.windows_closed


def test_a_quiet_route_is_judged_once_a_request_not_once_a_window() -> None:
    judged: list[str] = []
    runs: list[EmptyRun] = []

    class Counting(Wrapped):
        def on_window(self, w: Any) -> Any:
            judged.append(w.route)
            return self.inner.on_window(w)

        def on_empty_run(self, run: EmptyRun) -> None:
            runs.append(run)
            self.inner.on_empty_run(run)

    pipe, _ = run(Counting(RouteDetectors(Config())))
    windows = pipe.stats.windows_closed // (len(pipe.windower.routes))  # about 30 hours of windows each
    quiet = [judged.count(f"quiet{r}") for r in range(40)]
    # 30 or 60 requests each over ~1,800 windows; on their first day hours have no history yet, and a
    # request early in an hour keeps the route awake for a window or two
    assert max(quiet) < windows / 8 and sum(quiet) < 40 * windows / 15, (quiet, windows)
    assert sum(r.count for r in runs if r.route == "quiet1") > windows * 0.9
    assert judged.count("busy") >= 26 * 60  # a busy route never sleeps while it sends


def test_a_busy_route_that_stops_is_found_as_before() -> None:
    stops = [i for i in REF if i["route"] == "busy" and i["event"] == "opened"]
    _, out = run(RouteDetectors(Config()))
    assert stops and [i for i in out if i["route"] == "busy" and i["event"] == "opened"] == stops


def test_a_checkpoint_taken_while_routes_sleep_restores_and_catches_up() -> None:
    half = len(LINES) // 2
    live = Pipeline(Config())
    out = live.process_many(LINES[:half])
    assert len(live.windower.awake) < len(live.windower.routes) / 2  # most routes are asleep
    copy = Pipeline(Config())
    copy.restore(json.loads(json.dumps(live.snapshot())))
    rest_live = live.process_many(LINES[half:]) + live.flush()
    rest_copy = copy.process_many(LINES[half:]) + copy.flush()
    assert rest_copy == rest_live
    assert out + rest_live == REF
    # what sleeping touches is restored exactly (the canary history is kept to 6 decimals in a checkpoint)
    for route, st in live.detectors.routes.items():
        mine = copy.detectors.routes[route]
        assert mine.dets["request_volume"].snapshot() == st.dets["request_volume"].snapshot()
        assert {k: a.snapshot() for k, a in mine.alarms.items()} == {k: a.snapshot() for k, a in st.alarms.items()}


def test_an_idle_route_is_evicted_at_the_same_window_while_asleep() -> None:
    config = Config.model_validate({"windows": {"idle_evict_s": 3 * 3600}})
    lines = [event(f"a{i}", "usage", T0 + i * 7_000, "steady") for i in range(6 * 3600 // 7)]
    lines += [event(f"q{i}", "usage", T0 + i * 3_600_000 + 5, "brief") for i in range(2)]
    lines.sort(key=lambda b: int(json.loads(b)["ts"]))
    ref, _ = run(AwakeDetectors(config), lines)
    pipe, _ = run(RouteDetectors(config), lines)
    assert ref.stats.evictions["idle"] == pipe.stats.evictions["idle"] == 1
    assert "brief" not in pipe.windower.routes
    assert pipe.detectors.snapshot() == ref.detectors.snapshot()


def test_an_empty_run_reaching_the_end_of_a_replay_leaves_its_partial_windows_unjudged() -> None:
    """The last windows of a replay may be missing events: a sleeper's run is cut where they begin."""
    from detector.windows.windower import _mark_partial

    run_ = EmptyRun("r", 0, 10 * MIN, MIN)
    out = _mark_partial([run_], 7 * MIN + 1)
    assert isinstance(out[0], EmptyRun) and (out[0].start, out[0].end) == (0, 7 * MIN)
    assert [(w.start, w.partial) for w in out[1:]] == [(7 * MIN, True), (8 * MIN, True), (9 * MIN, True)]
    assert _mark_partial([run_], 10 * MIN) == [run_]


def test_learning_a_run_of_empty_windows_in_one_step_equals_learning_each() -> None:
    """CountTest.zeros against update(0, t) window by window: the same judgement, count and state, on quiet
    histories of many shapes and runs from a window to a day and a half (hours stepped a slot at a time)."""
    from detector.detectors.proportion import CountTest

    rng = random.Random(3)
    for _ in range(60):
        a, b = CountTest(), CountTest()
        t = rng.randrange(0, 10**6) * MIN
        p = rng.choice([1 / 20, 1 / 60, 1 / 200])
        for _ in range(rng.randrange(1, 3000)):
            c = (1 if rng.random() < p else 0) if rng.random() < 0.99 else rng.randrange(0, 4)
            a.update(c, t)
            b.update(c, t)
            t += MIN
        assert b.silent()
        n = rng.randrange(1, 2200)
        rs = [a.update(0, t + i * MIN) for i in range(n)]
        assert b.zeros(t, t + n * MIN, MIN) == (rs[-1], sum(r.judged for r in rs))
        assert a.snapshot() == b.snapshot() and a.familiar == b.familiar
