"""The incident engine (SPEC section 2), driven directly with hand-made windows and firings.

Every scenario runs through :func:`drive`, which also checks the invariants
every incident stream must keep (seq, ids, timestamps, status, wire format).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from detector.config import Config, IncidentsConfig, RouteConfig, Silence
from detector.detectors.firing import Firing, iso
from detector.events import ChangeEvent, ErrorEvent, IncidentEvent, LatencyEvent, ReviewEvent, UsageEvent
from detector.incidents.commands import Command
from detector.incidents.engine import IncidentEngine, incident_id
from detector.incidents.triage import SEVERITIES, bump, rank, severity
from detector.windows.aggregate import WindowAggregate
from detector.windows.windower import RouteEvicted

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "incident-event.schema.json").read_text(encoding="utf-8"))
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
#: Short lifecycle timings so scenarios stay small: resolve after 5 healthy windows,
#: updates at most every 10 windows, heightened monitoring for 30 windows.
INC = IncidentsConfig(resolve_after_s=300, update_interval_s=600, heightened_s=1800, change_lookback_s=3600)
SIGNAL = {
    "performance": "timeout_rate",
    "tool_failure": "tool_error_rate",
    "access_privacy": "access_denied_rate",
    "retrieval_failure": "retrieval_empty_rate",
    "bad_output": "rejection_rate",
    "cost": "spend",
}
ERROR_CLASS = {
    "performance": "timeout",
    "tool_failure": "tool_error",
    "access_privacy": "access_denied",
    "retrieval_failure": "retrieval_empty",
    "bad_output": "validation_error",
}


def cfg(**kw: Any) -> Config:
    kw.setdefault("incidents", INC)
    return Config(**kw)


def ts(i: float) -> int:
    return T0 + int(i * MIN)


def window(i: int, route: str = "r", ok: int = 20, bad: dict[str, int] | None = None, tenants: int = 3,
           prompt: str = "p1", change: tuple[str, str] | None = None) -> WindowAggregate:
    """Window ``i`` of ``route``: ``ok`` requests, plus one failed request per ``bad`` error."""
    w = WindowAggregate(route, ts(i), ts(i + 1))
    if change is not None:
        w.add(ChangeEvent(event_id=f"{route}-c{i}", ts=0.0, route=route, change_kind="prompt",
                          from_version=change[0], to_version=change[1]), ts(i))
    n = 0
    for k in range(ok):
        n += 1
        w.add(UsageEvent(event_id=f"{route}-{i}-{n}", ts=0.0, route=route, tenant=f"t{k % tenants}",
                         request_id=f"req-{i}-{n}", trace_id=f"tr-{i}-{n}", prompt_version=prompt,
                         model="m1"))
        w.add(LatencyEvent(event_id=f"{route}-{i}-{n}l", ts=0.0, route=route, latency_ms=300.0 + k,
                           prompt_version=prompt))
    for cls, count in (bad or {}).items():
        for k in range(count):
            n += 1
            ctx = dict(route=route, tenant=f"t{k % tenants}", request_id=f"req-{i}-{n}",
                       trace_id=f"tr-{i}-{n}", prompt_version=prompt, model="m1",
                       tool="crm@1" if cls == "tool_error" else None)
            w.add(UsageEvent(event_id=f"{route}-{i}-{n}", ts=0.0, **ctx))
            if cls == "rejected":
                w.add(ReviewEvent(event_id=f"{route}-{i}-{n}r", ts=0.0, outcome="rejected", **ctx))
            else:
                w.add(ErrorEvent(event_id=f"{route}-{i}-{n}e", ts=0.0, error_class=cls, **ctx))
    return w


def fire(i: int, itype: str = "performance", mag: float = 3.0, route: str = "r", signal: str | None = None,
         subject: str | None = None) -> Firing:
    """A firing in window ``i``."""
    return Firing(route=route, signal=signal or SIGNAL[itype], incident_type=itype, detector="RobustZ",
                  observed=mag * 0.05, baseline=0.05, threshold=0.1, score=0.999,
                  window_start=ts(i), window_end=ts(i + 1), subject=subject, magnitude=mag)


def bad_window(i: int, itype: str = "performance", route: str = "r", **kw: Any) -> WindowAggregate:
    cls = ERROR_CLASS.get(itype, "rejected" if itype == "bad_output" else "timeout")
    return window(i, route=route, bad={cls: 6}, **kw)


# A script step: (window, firings), Command, or RouteEvicted.
Step = tuple[WindowAggregate, Sequence[Firing]] | Command | RouteEvicted


def feed(engine: IncidentEngine, steps: Iterable[Step]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in steps:
        if isinstance(s, Command):
            out.extend(engine.on_command(s))
        elif isinstance(s, RouteEvicted):
            out.extend(engine.on_evict(s))
        else:
            out.extend(engine.on_window(s[0], s[1]))
    return out


def check_stream(out: list[dict[str, Any]]) -> None:
    """Invariants of any stream of incident events (SPEC section 2)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for inc in out:
        msgspec.convert(inc, IncidentEvent)
        jsonschema.validate(inc, SCHEMA)
        json.dumps(inc)  # plain JSON, nothing exotic
        by_id.setdefault(inc["incident_id"], []).append(inc)
    for iid, msgs in by_id.items():
        assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1)), iid
        first = msgs[0]
        assert first["event"] == "opened" and first["at"] == first["detected_at"]
        assert sum(m["event"] == "opened" for m in msgs) == 1
        assert first["started_at"] < first["detected_at"]
        for m in msgs:
            assert m["incident_id"] == incident_id(m["route"], m["incident_type"],
                                                   _ms(m["started_at"]))
            assert (m["route"], m["incident_type"]) == (first["route"], first["incident_type"])
            assert m["started_at"] == first["started_at"] and m["detected_at"] == first["detected_at"]
            assert (m["resolved_at"] is not None) == (m["event"] == "resolved")
            if m["event"] in ("acknowledged", "contained", "resolved"):
                assert m["status"] == m["event"]
        assert [m["at"] for m in msgs] == sorted(m["at"] for m in msgs)
        resolved = [k for k, m in enumerate(msgs) if m["event"] == "resolved"]
        assert resolved in ([], [len(msgs) - 1]), "nothing after resolved, resolved once"
        if resolved:
            assert msgs[-1]["resolved_at"] == msgs[-1]["at"]


def drive(steps: Iterable[Step], config: Config | None = None) -> list[dict[str, Any]]:
    out = feed(IncidentEngine(config or cfg()), steps)
    check_stream(out)
    return out


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def events(out: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(m["event"], m["incident_type"]) for m in out]


def firing_run(first: int, last: int, itype: str = "performance", mag: float = 3.0,
               route: str = "r") -> list[Step]:
    return [(bad_window(i, itype, route), [fire(i, itype, mag, route)]) for i in range(first, last + 1)]


def healthy_run(first: int, last: int, route: str = "r", empty: bool = False) -> list[Step]:
    return [(window(i, route, ok=0 if empty else 20), []) for i in range(first, last + 1)]


# -- 1. typing and identity --------------------------------------------------------------------------


@pytest.mark.parametrize("itype", ["bad_output", "retrieval_failure", "tool_failure", "access_privacy",
                                   "performance", "cost"])
def test_one_incident_per_route_and_type(itype: str) -> None:
    """Ten windows of firings of one type on one route make one incident, opened once, no chatter."""
    out = drive(firing_run(1, 10, itype))
    assert events(out) == [("opened", itype)]
    assert out[0]["route"] == "r" and out[0]["seq"] == 1 and out[0]["status"] == "open"


def test_opened_times_follow_spec() -> None:
    """started_at = start of the first anomalous window (persistence before the firing); detected_at = at."""
    out = drive(firing_run(5, 6))
    (o,) = out
    # persistence 2: the firing in window 5 means windows 4 and 5 were anomalous
    assert o["started_at"] == iso(ts(4))
    assert o["detected_at"] == o["at"] == iso(ts(6))
    assert o["resolved_at"] is None
    assert o["signals"][0]["window_start"] == iso(ts(5)) and o["signals"][0]["window_end"] == iso(ts(6))


def test_two_types_on_one_route_are_two_incidents() -> None:
    """Different incident types on the same route are separate incidents with separate ids."""
    steps: list[Step] = [(bad_window(i), [fire(i, "performance"), fire(i, "cost")]) for i in range(1, 5)]
    out = drive(steps)
    assert sorted(events(out)) == [("opened", "cost"), ("opened", "performance")]
    assert out[0]["incident_id"] != out[1]["incident_id"]
    assert all(m["seq"] == 1 for m in out)


def test_same_type_on_two_routes_are_two_incidents() -> None:
    """The same type on two routes gives two incidents; each keeps its own seq."""
    steps: list[Step] = []
    for i in range(1, 4):
        steps += [(bad_window(i, route="a"), [fire(i, route="a")]),
                  (bad_window(i, route="b"), [fire(i, route="b")])]
    out = drive(steps)
    assert [(m["route"], m["event"]) for m in out] == [("a", "opened"), ("b", "opened")]


@pytest.mark.parametrize(
    ("mags", "expected"),
    [
        ([3.0] * 6, ["opened"]),  # steady: nothing to say
        ([3.0, 3.0, 6.0, 6.0, 6.0], ["opened", "escalated"]),  # severity rose
        ([3.0, 6.0, 3.0, 6.0], ["opened", "escalated"]),  # never de-escalates, so no second escalation
        ([6.0, 3.0, 3.0], ["opened"]),  # a drop in magnitude is not news
    ],
)
def test_escalation_on_severity_rise(mags: list[float], expected: list[str]) -> None:
    """A rise in severity is `escalated` (seq +1) at once; severity never goes back down."""
    steps: list[Step] = [(bad_window(i), [fire(i, mag=m)]) for i, m in enumerate(mags, start=1)]
    out = drive(steps)
    assert [m["event"] for m in out] == expected
    if "escalated" in expected:
        esc = out[1]
        assert esc["seq"] == 2 and rank(esc["severity"]) > rank(out[0]["severity"])
        assert esc["at"] == iso(ts(mags.index(6.0) + 2)) and esc["detected_at"] == out[0]["detected_at"]


def test_windows_the_alarm_only_holds_on_add_nothing_to_the_blast_radius() -> None:
    """A route slow for two windows (5 tenants each) whose alarm then holds on for 4 calm windows (hysteresis,
    ``hit=False``) with 6 new tenants each: the incident's tenants are those of the slow windows, and its
    severity does not climb from the calm ones (a night-time latency blip was escalated to critical so)."""
    def slow(i: int, hit: bool) -> Step:
        f = Firing(route="r", signal="latency_p50", incident_type="performance", detector="LevelShift",
                   observed=3000.0 if hit else 1000.0, baseline=1200.0, threshold=1800.0, score=1.0 if hit else 0.1,
                   window_start=ts(i), window_end=ts(i + 1), magnitude=2.5 if hit else 0.8, hit=hit)
        w = window(i, ok=10, tenants=5) if hit else window(i, ok=12, tenants=6)
        if not hit:  # other tenants than the slow windows'
            for k, ev in enumerate(list(w.tenants)):
                w.tenants.discard(ev)
                w.tenants.add(f"later-{i}-{k}")
        return (w, [f])

    out = drive([slow(1, True), slow(2, True), *[slow(i, False) for i in range(3, 7)]])
    assert [m["event"] for m in out] == ["opened"]
    assert out[0]["blast_radius"]["tenants"] == 5


def test_updated_is_rate_limited() -> None:
    """A new signal is `updated` no sooner than update_interval_s after the last message, and only once."""
    steps: list[Step] = []
    for i in range(1, 25):
        firings = [fire(i)]
        if i >= 3:
            firings.append(fire(i, signal="latency_p95"))
        steps.append((bad_window(i), firings))
    out = drive(steps)
    assert [m["event"] for m in out] == ["opened", "updated"]
    opened, updated = out
    # opened at end of window 1; 600 s later is the end of window 11
    assert opened["at"] == iso(ts(2)) and updated["at"] == iso(ts(12))
    assert updated["seq"] == 2
    assert [s["signal"] for s in updated["signals"]] == ["latency_p95", "timeout_rate"]


def test_no_update_without_material_change() -> None:
    """Firing for a long time with the same signals sends nothing after `opened` (no message per window)."""
    out = drive(firing_run(1, 60))
    assert [m["event"] for m in out] == ["opened"]


def test_ids_are_stable_and_replay_is_identical() -> None:
    """Same inputs, same incident ids and byte-identical output, run after run."""
    steps = _lifecycle_script()
    a = drive(steps)
    b = drive(steps)
    assert a == b
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a[0]["incident_id"] == incident_id("r", "performance", ts(0))
    assert len({m["incident_id"] for m in a}) == 2


def _lifecycle_script() -> list[Step]:
    """Open, update, escalate, acknowledge, resolve; then a recurrence, left open."""
    steps: list[Step] = [(window(0), [])]
    steps += firing_run(1, 4)
    steps += [(bad_window(i), [fire(i, mag=6.0)]) for i in range(5, 7)]
    steps += [(bad_window(i), [fire(i, mag=6.0), fire(i, signal="latency_p95")]) for i in range(7, 16)]
    steps.append(Command(command="acknowledge", incident_id=incident_id("r", "performance", ts(0)),
                         at=iso(ts(16)), by="sam"))
    steps += healthy_run(16, 25)
    steps += firing_run(27, 30)
    return steps


def test_full_lifecycle_seq_and_status() -> None:
    """seq is 1 for opened then +1 per message; status tracks the state after each event."""
    out = drive(_lifecycle_script())
    first = [m for m in out if m["incident_id"] == out[0]["incident_id"]]
    assert [(m["event"], m["seq"], m["status"]) for m in first] == [
        ("opened", 1, "open"),
        ("escalated", 2, "open"),
        ("updated", 3, "open"),
        ("acknowledged", 4, "acknowledged"),
        ("resolved", 5, "resolved"),
    ]
    assert first[3]["at"] == iso(ts(16))
    assert first[-1]["resolved_at"] == iso(ts(21))


# -- 2. lifecycle -----------------------------------------------------------------------------------


@pytest.mark.parametrize("empty", [False, True], ids=["healthy-traffic", "quiet-route"])
def test_resolves_after_resolve_after_s_and_not_before(empty: bool) -> None:
    """An incident resolves once resolve_after_s of windows passed without its firing, not a window sooner."""
    steps = firing_run(1, 3) + healthy_run(4, 20, empty=empty)
    engine = IncidentEngine(cfg())
    out: list[dict[str, Any]] = []
    for step in steps:
        got = feed(engine, [step])
        w = step[0]  # type: ignore[index]
        if w.end < ts(4) + 300_000:
            assert not [m for m in got if m["event"] == "resolved"], f"resolved too early at {iso(w.end)}"
        out.extend(got)
    check_stream(out)
    assert [m["event"] for m in out] == ["opened", "resolved"]
    # last firing window ends at ts(4); 300 s later
    assert out[-1]["resolved_at"] == iso(ts(9))
    assert engine.open == {}


def test_firing_again_before_resolve_keeps_the_incident() -> None:
    """A gap shorter than resolve_after_s does not resolve: the same incident continues."""
    steps = firing_run(1, 3) + healthy_run(4, 7) + firing_run(8, 9) + healthy_run(10, 20)
    out = drive(steps)
    assert [m["event"] for m in out] == ["opened", "resolved"]
    assert out[-1]["resolved_at"] == iso(ts(15))


def test_other_route_windows_do_not_resolve() -> None:
    """Only windows of the incident's own route count toward its resolution."""
    steps = firing_run(1, 3) + healthy_run(4, 30, route="other")
    out = drive(steps)
    assert [m["event"] for m in out] == ["opened"]


def test_other_type_firing_does_not_keep_incident_open() -> None:
    """A firing of another type on the route is not a firing of this incident's type."""
    steps = firing_run(1, 3) + [(bad_window(i, "cost"), [fire(i, "cost")]) for i in range(4, 12)]
    out = drive(steps)
    assert [(m["event"], m["incident_type"]) for m in out] == [
        ("opened", "performance"), ("opened", "cost"), ("resolved", "performance")]


IID = incident_id("r", "performance", ts(0))


def _cmd(command: str, at: int, iid: str = IID) -> Command:
    return Command(command=command, incident_id=iid, at=iso(ts(at)), by="sam")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ([("acknowledge", 3)], [("acknowledged", "acknowledged")]),
        ([("contain", 3)], [("contained", "contained")]),
        ([("acknowledge", 3), ("contain", 4)],
         [("acknowledged", "acknowledged"), ("contained", "contained")]),
        ([("contain", 3), ("acknowledge", 4)], [("contained", "contained")]),  # backwards: ignored
        ([("acknowledge", 3), ("acknowledge", 4)], [("acknowledged", "acknowledged")]),  # repeat: ignored
        ([("contain", 3), ("contain", 4)], [("contained", "contained")]),
    ],
)
def test_commands_change_status(commands: list[tuple[str, int]], expected: list[tuple[str, str]]) -> None:
    """acknowledge/contain move the status forward only, each a new message with the next seq."""
    steps: list[Step] = firing_run(1, 2)
    steps += [_cmd(c, at) for c, at in commands]
    steps += firing_run(5, 6, mag=6.0)  # an escalation keeps the status
    steps += healthy_run(7, 20)
    out = drive(steps)
    assert [(m["event"], m["status"]) for m in out] == (
        [("opened", "open")] + expected + [("escalated", expected[-1][1]), ("resolved", "resolved")])
    assert [m["seq"] for m in out] == list(range(1, len(out) + 1))
    assert out[1]["at"] == iso(ts(commands[0][1]))


@pytest.mark.parametrize(
    "command",
    [
        Command(command="acknowledge", incident_id="inc-0000000000000000", at=iso(ts(3)), by="sam"),  # unknown id
        Command(command="contain", incident_id=incident_id("r", "cost", ts(0)), at=iso(ts(3)), by="sam"),  # other type
    ],
)
def test_commands_for_unknown_incidents_are_ignored(command: Command) -> None:
    """A command naming no open incident changes nothing and emits nothing."""
    engine = IncidentEngine(cfg())
    out = feed(engine, firing_run(1, 2))
    assert engine.on_command(command) == []
    out += feed(engine, healthy_run(3, 20))
    check_stream(out)
    assert [(m["event"], m["status"]) for m in out] == [("opened", "open"), ("resolved", "resolved")]


def test_command_after_resolve_is_ignored() -> None:
    """A resolved incident cannot be acknowledged or contained any more."""
    engine = IncidentEngine(cfg())
    out = feed(engine, firing_run(1, 2) + healthy_run(3, 20))
    assert engine.on_command(_cmd("acknowledge", 21)) == []
    assert engine.on_command(_cmd("contain", 21)) == []
    assert [m["event"] for m in out] == ["opened", "resolved"]


@pytest.mark.parametrize("at", ["not a time", "", "2026-13-45T99:00:00Z"])
def test_command_with_bad_time_is_ignored(at: str) -> None:
    """A malformed command from the control topic is dropped, never raised into the consumer."""
    engine = IncidentEngine(cfg())
    feed(engine, firing_run(1, 2))
    assert engine.on_command(Command(command="acknowledge", incident_id=IID, at=at, by="sam")) == []
    (o,) = engine.open.values()
    assert o.status == "open"


def test_evicted_route_resolves_its_incidents() -> None:
    """Evicting a route resolves every incident open on it (at the eviction time), and only those."""
    steps: list[Step] = []
    for i in range(1, 4):
        steps += [(bad_window(i), [fire(i), fire(i, "cost")]),
                  (bad_window(i, route="keep"), [fire(i, route="keep")])]
    steps.append(RouteEvicted("r", ts(10), "idle"))
    steps += firing_run(12, 13)  # the route comes back: a new incident
    out = drive(steps)
    resolved = [m for m in out if m["event"] == "resolved"]
    assert sorted(m["incident_type"] for m in resolved) == ["cost", "performance"]
    assert all(m["route"] == "r" and m["resolved_at"] == iso(ts(10)) for m in resolved)
    last = out[-1]
    assert last["event"] == "opened" and last["route"] == "r"
    assert last["incident_id"] not in {m["incident_id"] for m in resolved}


def test_every_opened_is_followed_by_resolved() -> None:
    """Whatever happens (quiet route, eviction, other routes moving), each opened gets its resolved."""
    steps: list[Step] = []
    steps += firing_run(1, 3, route="quiet") + healthy_run(4, 12, route="quiet", empty=True)
    steps += firing_run(1, 3, route="gone") + [RouteEvicted("gone", ts(5), "capacity")]
    steps += firing_run(1, 3, route="ok") + healthy_run(4, 12, route="ok")
    out = drive(steps)
    opened = {m["incident_id"] for m in out if m["event"] == "opened"}
    resolved = {m["incident_id"] for m in out if m["event"] == "resolved"}
    assert len(opened) == 3 and opened == resolved


SIL_START, SIL_END = 10, 30


def silenced(route_glob: str = "sup*") -> Config:
    return cfg(silences=[Silence(route=route_glob, start=datetime.fromtimestamp(ts(SIL_START) / 1000, UTC),
                                 end=datetime.fromtimestamp(ts(SIL_END) / 1000, UTC), reason="maintenance")])


@pytest.mark.parametrize(
    ("name", "steps", "expected"),
    [
        ("inside", firing_run(12, 15, route="support") + healthy_run(16, 25, route="support"), []),
        ("before", firing_run(5, 9, route="support") + firing_run(10, 12, route="support", mag=6.0)
         + healthy_run(13, 40, route="support"), [("opened", iso(ts(6))), ("resolved", iso(ts(18)))]),
        ("spans-end-firing", firing_run(20, 34, route="support") + healthy_run(35, 45, route="support"),
         [("opened", iso(ts(30))), ("resolved", iso(ts(40)))]),
        ("spans-end-healthy", firing_run(25, 27, route="support") + healthy_run(28, 40, route="support"),
         [("opened", iso(ts(30))), ("resolved", iso(ts(33)))]),
        ("glob-does-not-match", firing_run(12, 15, route="billing") + healthy_run(16, 25, route="billing"),
         [("opened", iso(ts(13))), ("resolved", iso(ts(21)))]),
    ],
)
def test_silences_suppress_notification_not_tracking(name: str, steps: list[Step],
                                                      expected: list[tuple[str, str]]) -> None:
    """Silences hide messages, not incidents: in-silence incidents stay silent, each sent opened resolves."""
    out = drive(steps, silenced())
    assert [(m["event"], m["at"]) for m in out] == expected


def test_late_opened_after_silence_keeps_tracked_history() -> None:
    """An incident opened during a silence and sent when it ends keeps its real start and blast radius."""
    steps = firing_run(20, 34, route="support")
    out = drive(steps, silenced())
    (o,) = out
    assert o["started_at"] == iso(ts(19))
    assert o["incident_id"] == incident_id("support", "performance", ts(19))
    assert o["at"] == iso(ts(SIL_END))
    assert o["blast_radius"]["requests"] == 26 * 10  # every window from 20 to 29 counted


def test_acknowledge_during_silence_after_opened() -> None:
    """An incident already notified can still be acknowledged while its route is silenced."""
    steps: list[Step] = firing_run(5, 7, route="support")
    steps.append(_cmd("acknowledge", 12, incident_id("support", "performance", ts(4))))
    steps += healthy_run(13, 40, route="support")
    out = drive(steps, silenced())
    assert [m["event"] for m in out] == ["opened", "acknowledged", "resolved"]


def test_no_spurious_update_after_late_opened() -> None:
    """What changed during a silence is in the late `opened`; it is not repeated as an `updated` later."""
    steps: list[Step] = firing_run(20, 24, route="support")
    steps += [(bad_window(i, route="support"),
               [fire(i, route="support"), fire(i, route="support", signal="p95")]) for i in range(25, 60)]
    out = drive(steps, silenced())
    assert [m["event"] for m in out] == ["opened"]
    assert [s["signal"] for s in out[0]["signals"]] == ["p95", "timeout_rate"]


def test_command_time_never_runs_backwards() -> None:
    """An acknowledge stamped before the incident's last message is sent at that message's time."""
    steps: list[Step] = firing_run(5, 6)
    steps.append(_cmd("acknowledge", 2, incident_id("r", "performance", ts(4))))
    out = drive(steps)
    assert [m["event"] for m in out] == ["opened", "acknowledged"]
    assert out[1]["at"] == out[0]["at"]


def _resolved_then(recur_at: int, itype: str = "performance", route: str = "r") -> list[dict[str, Any]]:
    steps: list[Step] = firing_run(1, 3) + healthy_run(4, recur_at - 1)
    steps += firing_run(recur_at, recur_at + 1, itype=itype, route=route)
    return drive(steps)


@pytest.mark.parametrize(
    ("recur_at", "itype", "route", "bumped"),
    [
        (12, "performance", "r", True),  # resolved at ts(9); recurrence well inside 30 min
        (38, "performance", "r", True),  # opened at ts(39) = resolve + 30 min: still heightened
        (45, "performance", "r", False),  # after heightened_s
        (12, "cost", "r", False),  # another type
        (12, "performance", "other", False),  # another route
    ],
)
def test_heightened_monitoring_after_resolve(recur_at: int, itype: str, route: str, bumped: bool) -> None:
    """A recurrence of the same type on the same route within heightened_s is one level higher and says so."""
    out = _resolved_then(recur_at, itype, route)
    first, resolved, again = out[0], out[1], out[2]
    assert resolved["event"] == "resolved" and again["event"] == "opened"
    assert again["incident_id"] != first["incident_id"]
    plain = drive(firing_run(recur_at, recur_at + 1, itype=itype, route=route))[0]
    if bumped:
        assert again["severity"] == bump(plain["severity"]) != plain["severity"]
        assert "recurs" in again["summary"]
    else:
        assert again["severity"] == plain["severity"]
        assert "recurs" not in again["summary"]


# -- 3. triage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("itype", "mag", "share", "tenants", "rc", "expected"),
    [
        ("access_privacy", 1.0, 0.0, 0, RouteConfig(tier=3), "high"),
        ("access_privacy", 1.0, 0.2, 1, RouteConfig(customer_facing=True), "critical"),
        ("access_privacy", 1.0, 0.2, 1, RouteConfig(sensitive_sources=True), "critical"),
        ("performance", 1.0, 0.0, 0, RouteConfig(), "low"),
        ("performance", 2.0, 0.1, 0, RouteConfig(), "medium"),
        ("performance", 5.0, 0.5, 0, RouteConfig(), "high"),
        ("performance", 5.0, 0.5, 10, RouteConfig(tier=1, customer_facing=True), "critical"),
        ("cost", 2.1, 0.05, 1, RouteConfig(tier=3), "low"),
    ],
)
def test_severity_table(itype: str, mag: float, share: float, tenants: int, rc: RouteConfig,
                        expected: str) -> None:
    """Known triage outcomes, including access_privacy's floor at high."""
    assert severity(itype, mag, share, tenants, rc) == expected


FACTORS = [
    ("magnitude", [1.0, 2.0, 5.0, 50.0]),
    ("share", [0.0, 0.1, 0.5, 1.0]),
    ("tenants", [0, 9, 10, 500]),
    ("tier", [3, 2, 1]),
    ("customer_facing", [False, True]),
    ("stopped", [False, True]),
]


@pytest.mark.parametrize("itype", ["bad_output", "retrieval_failure", "tool_failure", "access_privacy",
                                   "performance", "cost"])
@pytest.mark.parametrize(("factor", "values"), FACTORS, ids=[f for f, _ in FACTORS])
def test_severity_grows_with_each_factor(itype: str, factor: str, values: list[Any]) -> None:
    """More magnitude, share, tenants, a higher tier, customer-facing or stopped never lowers severity."""
    base = {"magnitude": 2.0, "share": 0.1, "tenants": 1, "tier": 2, "customer_facing": False,
            "stopped": False}
    grew = False
    for other in ({}, {"magnitude": 1.0, "share": 0.0}, {"magnitude": 5.0, "share": 0.5, "tier": 1}):
        levels = []
        for v in values:
            a = {**base, **other, factor: v}
            rc = RouteConfig(tier=a["tier"], customer_facing=a["customer_facing"])
            levels.append(rank(severity(itype, a["magnitude"], a["share"], a["tenants"], rc, a["stopped"])))
        assert levels == sorted(levels), (itype, factor, other, [SEVERITIES[x] for x in levels])
        grew = grew or levels[-1] > levels[0]
        if itype == "access_privacy":
            assert min(levels) >= rank("high")
    assert grew or itype == "access_privacy", f"{factor} never raised the severity of {itype}"


def test_engine_access_privacy_never_below_high() -> None:
    """Even a tiny access_privacy anomaly on a tier-3 route opens at high or above."""
    config = cfg(routes={"*": RouteConfig(tier=3)})
    steps: list[Step] = [(window(i, bad={"access_denied": 1}), [fire(i, "access_privacy", mag=1.0)])
                         for i in range(1, 4)]
    (o,) = drive(steps, config)
    assert rank(o["severity"]) >= rank("high")


T1, CF = RouteConfig(tier=1), RouteConfig(customer_facing=True)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ({"mag": 2.0, "rc": T1}, {"mag": 6.0, "rc": T1}),  # magnitude
        ({}, {"rc": T1}),  # tier
        ({}, {"rc": CF}),  # customer facing
        ({"errors": 1}, {"errors": 25}),  # blast share
        ({"errors": 12, "tenants": 2}, {"errors": 12, "tenants": 12}),  # tenants
    ],
    ids=["magnitude", "tier", "customer_facing", "share", "tenants"],
)
def test_engine_severity_grows_with_impact(low: dict[str, Any], high: dict[str, Any]) -> None:
    """Through the engine: a bigger, broader or more critical tool failure opens at a higher severity."""

    def opened(mag: float = 5.0, rc: RouteConfig | None = None, errors: int = 3, tenants: int = 2) -> str:
        config = cfg(routes={"*": rc or RouteConfig()})
        steps: list[Step] = [(window(i, ok=20, bad={"tool_error": errors}, tenants=tenants),
                              [fire(i, "tool_failure", mag=mag, subject="crm")]) for i in range(1, 3)]
        return str(drive(steps, config)[0]["severity"])

    assert rank(opened(**high)) > rank(opened(**low))


# -- 4. wire format -------------------------------------------------------------------------------------


def test_every_event_kind_matches_the_contract() -> None:
    """Each of the six event kinds converts to IncidentEvent and validates against the committed schema."""
    steps = _lifecycle_script()
    steps.append(Command(command="contain", incident_id=incident_id("r", "performance", ts(26)),
                         at=iso(ts(31)), by="sam"))
    steps += firing_run(32, 33, "tool_failure")
    steps.append(RouteEvicted("r", ts(40), "idle"))
    out = drive(steps, cfg(routes={"*": RouteConfig(owner="team-a", escalation="pager-a",
                                                    write_tools=["crm@1"])}))
    kinds = {"opened", "updated", "escalated", "acknowledged", "contained", "resolved"}
    assert {m["event"] for m in out} == kinds
    for m in out:
        inc = msgspec.convert(m, IncidentEvent)
        assert msgspec.to_builtins(inc) == m  # nothing extra, nothing lost
        assert m["owner"] == "team-a" and m["escalation"] == "pager-a"
        assert m["summary"]


# -- 5. snapshots -----------------------------------------------------------------------------------------


def _snapshot_script() -> tuple[list[Step], list[Step]]:
    """Part A leaves state of every kind behind; part B exercises it."""
    a: list[Step] = [(window(i, prompt="p1"), []) for i in range(0, 10)]
    a += [(window(10, bad={"validation_error": 8}, prompt="p2", change=("p1", "p2")),
           [fire(10, "bad_output")])]
    a += [(window(i, bad={"validation_error": 8}, prompt="p2"), [fire(i, "bad_output")])
          for i in range(11, 13)]
    a += firing_run(8, 9, route="s")  # opened, then resolved: heightened monitoring state
    a += healthy_run(10, 16, route="s")
    a += firing_run(14, 14, route="q")  # opened inside the silence: not yet notified
    a.append(Command(command="acknowledge", incident_id=incident_id("r", "bad_output", ts(9)),
                     at=iso(ts(13)), by="sam"))
    a += [(bad_window(13, "bad_output"), [fire(13, "bad_output"), fire(13, "bad_output", signal="x")])]
    b: list[Step] = [(bad_window(i, "bad_output"), [fire(i, "bad_output"), fire(i, "bad_output", signal="x")])
                     for i in range(14, 21)]
    b += [(window(i, bad={"validation_error": 30}, tenants=12, prompt="p2"),
           [fire(i, "bad_output", mag=6.0), fire(i, "bad_output", signal="x")]
           + ([fire(i, "bad_output", signal="y")] if i >= 24 else [])) for i in range(21, 34)]
    b += firing_run(17, 18, route="s")  # a recurrence
    b += firing_run(15, 31, route="q")
    b += healthy_run(34, 45) + healthy_run(32, 45, route="q") + healthy_run(19, 30, route="s")
    return a, b


def _silence_q() -> Config:
    return cfg(silences=[Silence(route="q", start=datetime.fromtimestamp(ts(12) / 1000, UTC),
                                 end=datetime.fromtimestamp(ts(20) / 1000, UTC))])


def test_snapshot_restore_continues_identically() -> None:
    """snapshot -> JSON -> restore into a fresh engine, then the same windows give the same output."""
    a, b = _snapshot_script()
    config = _silence_q()
    original = IncidentEngine(config)
    head = feed(original, a)
    snap = json.loads(json.dumps(original.snapshot()))
    restored = IncidentEngine(config)
    restored.restore(snap)
    tail_restored = feed(restored, b)
    tail_original = feed(original, b)
    assert tail_restored == tail_original
    check_stream(head + tail_original)
    kinds = {m["event"] for m in head + tail_original}
    assert {"opened", "updated", "escalated", "acknowledged", "resolved"} <= kinds
    assert any("recurs" in m["summary"] for m in tail_original)  # heightened state survived
    assert json.loads(json.dumps(restored.snapshot())) == json.loads(json.dumps(original.snapshot()))


def test_snapshot_is_a_value_not_a_view() -> None:
    """A snapshot kept in memory does not change as the engine goes on, and restoring it twice gives twins."""
    a, b = _snapshot_script()
    config = _silence_q()
    original = IncidentEngine(config)
    feed(original, a)
    snap = original.snapshot()
    frozen = copy.deepcopy(snap)
    twin1, twin2 = IncidentEngine(config), IncidentEngine(config)
    twin1.restore(snap)
    twin2.restore(snap)
    out0 = feed(original, b)
    assert snap == frozen, "the engine kept writing into a snapshot it had handed out"
    out1 = feed(twin1, b)
    assert snap == frozen, "a restored engine writes into the snapshot it was restored from"
    out2 = feed(twin2, b)
    assert out0 == out1 == out2
