"""Skewed producer clocks, jumps in time and the end of a file (issue 8, items 1, 2 and 8).

What these protect: a minority of producers with wrong clocks cannot move stream time, so they can neither
make the real traffic late nor switch detection off for the partition; they are counted per route so an
operator can find them. No sequence of events makes the open windows, or the work of closing them, grow
with the size of a jump in time. The partial windows at the end of a replay are not evidence of a drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detector.config import Config, load_config
from detector.ingest.decode import parse_ts
from detector.pipeline import Pipeline
from detector.replay import read_lines, summary
from detector.windows.windower import MIN_VOTES

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_config(ROOT / "examples/config.toml")
LINES = list(read_lines(ROOT / "examples/events.jsonl"))
ROUTE = "crm.update_record"
MIN = 60_000
YEAR_2199 = 7_226_582_400_000  # 2199-01-01T00:00:00Z


def ts_of(line: bytes) -> int:
    return int(json.loads(line)["ts"])


def usage(eid: str, ts: int, route: str = ROUTE) -> bytes:
    return json.dumps({"event_id": eid, "type": "usage", "ts": ts, "route": route}).encode()


def run(lines: list[bytes], flush: bool = True, config: Config = CONFIG) -> tuple[Pipeline, list[dict[str, Any]]]:
    pipe = Pipeline(config)
    out = pipe.process_many(lines)
    if flush:
        out += pipe.flush()
    return pipe, out


def opened(incidents: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(i["incident_id"], i["route"], i["incident_type"]) for i in incidents if i["event"] == "opened"]


def open_windows(pipe: Pipeline) -> int:
    return sum(len(r.open) for r in pipe.windower.routes.values())


CLEAN_PIPE, CLEAN = run(LINES)


def test_the_example_opens_an_incident() -> None:
    """The reference the other tests compare with: the example file opens its tool_failure incident."""
    assert opened(CLEAN) and CLEAN_PIPE.stats.late == 0


def test_two_events_fifty_minutes_ahead_on_the_same_route_change_nothing() -> None:
    """The issue's case: two valid events 50 minutes ahead (inside max_future_s) used to move stream time,
    a third of the real traffic then came late and no incident opened. Stream time is the route's
    third-newest event, so two cannot move it; both are counted as skewed, for their route."""
    cut = len(LINES) // 5
    t = ts_of(LINES[cut])
    bad = [usage("skew-1", t + 50 * MIN), usage("skew-2", t + 50 * MIN + 1)]
    pipe, got = run(LINES[:cut] + bad + LINES[cut:])
    assert pipe.stats.late == 0 and pipe.stats.rejected == CLEAN_PIPE.stats.rejected
    assert opened(got) == opened(CLEAN)
    assert (pipe.stats.skewed_ahead, pipe.stats.skewed_routes[ROUTE]) == (2, 2)
    assert "skewed clocks: 2 ahead, 0 behind (most: crm.update_record 2)" in summary(pipe.stats)


def test_a_whole_producer_ahead_does_not_drag_the_others() -> None:
    """A second route whose every event is stamped 50 minutes ahead (a third of all traffic) holds a
    third of the votes: the real route's incidents are exactly those of the clean run, nothing is late,
    and every one of the skewed producer's events is counted against its route."""
    mixed: list[bytes] = []
    n_bad = 0
    for i, raw in enumerate(LINES):
        mixed.append(raw)
        if i % 2 == 0:
            n_bad += 1
            mixed.append(usage(f"ahead-{i}", ts_of(raw) + 50 * MIN, route="clock.ahead"))
    pipe, got = run(mixed)
    assert pipe.stats.late == 0
    assert [i for i in got if i["route"] == ROUTE] == CLEAN
    # all but the first few, which came before there was a stream time to be ahead of
    assert pipe.stats.skewed_routes["clock.ahead"] == pipe.stats.skewed_ahead >= n_bad - MIN_VOTES
    assert pipe.stats.skewed_routes[ROUTE] == 0


def test_a_producer_behind_is_late_and_counted() -> None:
    """Events an hour behind land in closed windows: rejected as late (so dead-lettered by the service)
    and counted as skewed behind, for their route; the real route is untouched."""
    mixed = list(LINES)
    for i in range(100, 200):
        mixed.insert(i * 9, usage(f"behind-{i}", ts_of(LINES[i * 9]) - 60 * MIN, route="clock.behind"))
    pipe, got = run(mixed)
    assert [i for i in got if i["route"] == ROUTE] == CLEAN
    assert pipe.stats.skewed_behind == pipe.stats.skewed_routes["clock.behind"] == pipe.stats.late >= 99


def test_future_dated_first_events_in_streaming() -> None:
    """Two events dated 2199 as the first lines: in streaming (no end-of-file flush, as the service runs)
    windows used to stop closing and open windows grew with every minute of traffic. The first events now
    wait until there are enough of them to start stream time, then are checked like any other: the two
    are rejected as future_timestamp (the service dead-letters them), counted as skewed for their route,
    and the same windows close and the same incidents open as in a clean run."""
    clean = Pipeline(CONFIG)
    want = clean.process_many(LINES)
    pipe = Pipeline(CONFIG)
    got = pipe.process_many([usage("far-1", YEAR_2199), usage("far-2", YEAR_2199 + 1)])
    most = 0
    for lo in range(0, len(LINES), 100):
        got += pipe.process_many(LINES[lo:lo + 100])
        most = max(most, open_windows(pipe))
    assert got == want
    assert pipe.stats.windows_closed == clean.stats.windows_closed
    assert most <= CONFIG.windows.allowed_lateness_s // CONFIG.windows.size_s + 2
    assert pipe.stats.rejected["future_timestamp"] == pipe.stats.skewed_routes[ROUTE] == 2


def test_future_dated_first_events_in_replay() -> None:
    """In replay the end-of-file flush used to walk ~91 million empty minutes to 2199 and open a false
    critical "traffic stopped" incident. Now the flush closes the same windows as a clean run's."""
    pipe, got = run([usage("far-1", YEAR_2199), usage("far-2", YEAR_2199 + 1)] + LINES)
    assert pipe.stats.windows_closed == CLEAN_PIPE.stats.windows_closed
    assert got == CLEAN
    assert pipe.stats.rejected["future_timestamp"] == 2
    assert pipe.windower.steps < 200  # the walk ends where the traffic does
    assert "skewed clocks: 2 ahead, 0 behind (most: crm.update_record 2)" in summary(pipe.stats)


def test_events_in_the_far_past_first_are_late() -> None:
    """The mirror case: two events dated 2001 first. Stream time starts from the first five events, and
    windows more than max_future_s behind it count as closed: the two are late (dead-lettered by the
    service), nothing between 2001 and now is walked, and the real route is untouched."""
    past = 978_307_200_000  # 2001-01-01
    pipe, got = run([usage("old-1", past, route="old"), usage("old-2", past + 1, route="old")] + LINES)
    assert got == CLEAN and pipe.stats.windows_closed == CLEAN_PIPE.stats.windows_closed
    assert pipe.stats.late == pipe.stats.skewed_behind == pipe.stats.skewed_routes["old"] == 2


def test_a_whole_producer_ahead_is_left_unjudged_at_the_end() -> None:
    """At the end of a replay, the windows of a producer an hour ahead hold events stream time never
    reached: they are not judged, and the summary says how many."""
    lines = LINES + [usage(f"ahead-{i}", ts_of(LINES[-1]) + 50 * MIN + i, route="clock.ahead") for i in range(3)]
    pipe, got = run(lines)
    assert got == CLEAN and pipe.stats.unjudged == 3
    assert "3 events beyond stream time at the end were not judged" in summary(pipe.stats)


def test_work_after_a_jump_does_not_grow_with_its_size() -> None:
    """All traffic jumps forward (a gap in an export, producers back after a long stop): closing the gap
    costs at most ``idle_evict_s`` of empty windows per route (then the route skips to its events ahead),
    however long the gap."""
    def work_after_jump(years: int) -> tuple[int, int]:
        head = [usage(f"a{i}", 1_795_770_000_000 + i * 1000, route=f"r{i % 3}") for i in range(60)]
        jump = 1_795_770_000_000 + years * 365 * 86_400_000
        tail = [usage(f"b{i}", jump + i * 1000, route=f"r{i % 3}") for i in range(60)]
        pipe = Pipeline(Config())
        pipe.process_many(head + tail)
        return pipe.stats.windows_closed, pipe.windower.steps

    day = Config().windows.idle_evict_s // 60
    one, hundred = work_after_jump(1), work_after_jump(100)
    assert one == hundred
    assert one[0] <= 3 * (day + 2) and one[1] <= day + 5


def test_the_partial_last_windows_of_a_file_are_not_a_drop() -> None:
    """A file cut at a minute boundary with one event spilling past the cut (completion-stamped): the last
    window holds 1 request against 30 a minute. With persistence 1 (as on a route watched harder after an
    incident) that window alone used to open a "traffic stopped" incident at the flush. Windows the
    watermark has not passed are judged for what they show (rates, latency), not for their volume."""
    cfg = CONFIG.model_copy(update={"detectors": CONFIG.detectors.model_copy(update={"persistence": 1})})
    t0 = 1_795_770_000_000 - 1_795_770_000_000 % MIN
    span = 420  # minutes: 30 a minute for seven hours (a route that sends without a break, see CountTest)
    lines = [usage(f"e{i}", t0 + i * 2000) for i in range(30 * span)]
    lines.append(usage("spill", t0 + span * MIN + 1500))
    pipe = Pipeline(cfg)
    assert not pipe.process_many(lines)
    at_end = pipe.flush()
    assert not [i for i in at_end if i["event"] == "opened"], at_end
    assert pipe.stats.windows_closed == span + 1
    # the same window, once the watermark has passed it (traffic carried on, then stopped), is a drop
    more = [usage(f"later{i}", t0 + (span + 6) * MIN + i * 100) for i in range(10)]
    pipe = Pipeline(cfg)
    assert not pipe.process_many(lines)
    assert "opened" in [i["event"] for i in pipe.process_many(more)]


def test_a_quiet_stream_waiting_for_stream_time_is_released_by_the_wall_clock() -> None:
    """A partition that ever receives fewer than five events: they wait for stream time, and the service's
    wall-clock advance of a silent partition releases them (checked against their own vote first) and
    closes their windows; the partition task plans that advance even though no route is held yet."""
    from detector.service.partition import PartitionTask
    from detector.state.records import Restored

    task = PartitionTask(CONFIG, "ai.telemetry", 0, Restored(), 0, on_reject=lambda *a: None)
    task.pipe.process_many(LINES[:3])
    assert task.pipe.waiting == 3 and task.pipe.stats.accepted == 0 and not task.pipe.windower.routes
    wall = ts_of(LINES[2]) + 10 * MIN
    assert task.plan_advance(wall)
    task.apply_wal()
    assert task.pipe.waiting == 0 and task.pipe.stats.accepted == 3
    assert task.pipe.stats.windows_closed >= 9 and task.pipe.windower.watermark == wall


def test_events_waiting_for_stream_time_survive_a_checkpoint() -> None:
    """The waiting events are part of the partition record: a pipeline restored from it (whole snapshot or
    per-route parts) continues exactly like the one that was never stopped."""
    head = [usage("far-1", YEAR_2199)] + LINES[:2]
    live = Pipeline(CONFIG)
    live.process_many(head)
    assert live.waiting == 3
    whole = Pipeline(CONFIG)
    whole.restore(json.loads(json.dumps(live.snapshot())))
    parts = Pipeline(CONFIG)
    parts.restore_parts(json.loads(json.dumps(live.partition_state())), {}, (0, [], []))
    assert whole.waiting == parts.waiting == 3
    want = live.process_many(LINES[2:]) + live.flush()
    assert whole.process_many(LINES[2:]) + whole.flush() == want == CLEAN
    assert parts.process_many(LINES[2:]) + parts.flush() == want


def _steady(prefix: str, start: int, n: int, routes: int = 3) -> list[bytes]:
    return [usage(f"{prefix}{i}", start + i * 1000, route=f"r{i % routes}") for i in range(n)]


def test_traffic_back_after_a_gap_longer_than_max_future_is_not_rejected() -> None:
    """Every route silent for three hours (an outage of the telemetry pipeline), then back: the events after
    the gap used to be rejected as future_timestamp, all of them, for ever (nothing could move stream time
    again). They are held until enough of them agree, then stream time jumps: nothing is lost, the gap's
    windows close empty (the outage is seen as traffic stopping, on routes that had sent for long enough to
    know they send without a break) and the summary says it jumped."""
    t0 = 1_795_770_000_000
    hours = 7
    lines = _steady("a", t0, hours * 3600) + _steady("b", t0 + (hours + 3) * 3_600_000, 3600)
    pipe, got = run(lines, config=Config())
    assert pipe.stats.accepted == (hours + 1) * 3600 and not pipe.stats.rejected and pipe.stats.jumps == 1
    assert {(i["route"], i["incident_type"]) for i in got if i["event"] == "opened"} == {
        (f"r{k}", "performance") for k in range(3)}
    # every route of the feed going quiet together: one group, its cause the feed (SPEC 2a)
    last = {i["incident_id"]: i for i in got}
    assert {json.dumps(i["group"], sort_keys=True) for i in last.values()} == {json.dumps(
        {"group_id": next(iter(last.values()))["group"]["group_id"], "cause": {"kind": "feed", "value": "telemetry"},
         "routes": ["r0", "r1", "r2"]}, sort_keys=True)}
    assert "stream time jumped forward 1 times" in summary(pipe.stats)


def test_a_burst_from_one_wrong_clock_is_not_a_jump() -> None:
    """Forty events from one producer dated 2199, in a row, in a stream of three routes: they are held, the
    routes' next events outnumber them, and they are rejected as future_timestamp; nothing else changes."""
    t0 = 1_795_770_000_000
    clean = Pipeline(Config())
    want = clean.process_many(_steady("a", t0, 7200)) + clean.flush()
    burst = [usage(f"far{i}", YEAR_2199 + i, route="r1") for i in range(40)]
    pipe, got = run(_steady("a", t0, 3600) + burst + _steady("a", t0, 7200)[3600:], config=Config())
    assert got == want and pipe.stats.jumps == 0
    assert pipe.stats.rejected["future_timestamp"] == pipe.stats.skewed_routes["r1"] == 40
    assert pipe.waiting == 0


def test_events_held_ahead_survive_a_checkpoint() -> None:
    """Held events are part of the partition record: a pipeline restored mid-gap jumps like the live one."""
    t0 = 1_795_770_000_000
    lines = _steady("a", t0, 600) + _steady("b", t0 + 3 * 3_600_000, 600)
    live = Pipeline(Config())
    live.process_many(lines[:608])
    assert live.waiting == 8
    restored = Pipeline(Config())
    restored.restore(json.loads(json.dumps(live.snapshot())))
    assert restored.waiting == 8
    assert restored.process_many(lines[608:]) + restored.flush() == live.process_many(lines[608:]) + live.flush()
    assert restored.stats.jumps == live.stats.jumps == 1


def test_a_checkpoint_from_before_the_vote_restores() -> None:
    """The service upgraded over a changelog written by the previous version (stream time was `max_ts`,
    routes had no clocks, no votes, nothing waiting): it restores, carries on and closes windows."""
    from detector.windows.windower import Windower

    new = Pipeline(CONFIG)
    new.process_many(LINES[:600])
    state = new.windower.to_dict()
    old_stream = {"max_ts": state["stream_ts"], "top_ts": state["stream_ts"], "closed_end": state["closed_end"],
                  "seq": state["seq"]}
    old_routes = {name: {k: v for k, v in rd.items() if k in ("next_start", "last_seen", "seq", "seen", "open")}
                  for name, rd in state["routes"].items()}
    w = Windower(CONFIG.windows)
    w.restore_parts(old_stream, old_routes)
    assert w.stream_ts == state["stream_ts"] and w.closed_end == state["closed_end"] and w.routes[ROUTE].clock
    pipe = Pipeline(CONFIG)
    pipe.windower = w
    closed = pipe.stats.windows_closed
    pipe.process_many(LINES[600:])
    assert pipe.stats.windows_closed > closed and pipe.stats.late == 0


# -- found by an adversarial pass: a few producers inside one busy route, duplicates, a one-route return --

def test_three_events_ahead_on_the_only_route_do_not_move_stream_time() -> None:
    """Three events 59 minutes ahead on a route that holds every vote used to set its clock (the
    third-newest event) and so stream time: 682 of 1,845 events came late. Stream time is also bounded by
    the recent event times less their newest tenth, which three events cannot move."""
    t0 = ts_of(LINES[100])
    bad = [usage(f"x{i}", t0 + 59 * MIN + i) for i in range(3)]
    pipe, got = run(LINES[:100] + bad + LINES[100:])
    assert pipe.stats.late == 0 and opened(got) == opened(CLEAN)


def test_one_pod_in_twenty_with_a_clock_ten_minutes_ahead_blinds_nobody() -> None:
    """One producer of twenty on the same route stamps its events ten minutes ahead (5% of the traffic):
    it used to carry the route's clock and stream time, and 1,708 of 1,845 events came late. Now none is
    late and the same incident opens, at most a minute later (its errors among the 5% moved later, the rate
    test's first anomalous window, which fires at once, may be the next one)."""
    lines = []
    for i, raw in enumerate(LINES):
        d = json.loads(raw)
        if i % 20 == 7:
            d["ts"] += 10 * MIN
        lines.append(json.dumps(d).encode())
    pipe, got = run(lines)
    assert pipe.stats.late == 0
    assert [o[1:] for o in opened(got)] == [o[1:] for o in opened(CLEAN)]
    detected = [parse_ts(i["detected_at"]) for i in got if i["event"] == "opened"]
    clean = [parse_ts(i["detected_at"]) for i in CLEAN if i["event"] == "opened"]
    assert detected and all(c is not None and d is not None and c <= d <= c + MIN
                            for d, c in zip(detected, clean, strict=True)), (
        detected, clean)


def test_repeated_copies_of_one_event_neither_start_nor_jump_stream_time() -> None:
    """One event dated a year ahead, sent sixteen times (a retrying producer), used to count sixteen times
    towards a jump; three copies at the head of a stream decided its start. Copies count once."""
    far = ts_of(LINES[100]) + 365 * 86_400_000
    pipe, got = run(LINES[:100] + [usage("a1", far)] * 16 + LINES[100:])
    assert pipe.stats.jumps == 0 and pipe.stats.late == 0 and got == CLEAN
    far0 = ts_of(LINES[0]) + 365 * 86_400_000
    pipe, got = run([usage("s0", far0, route="z")] * 3 + LINES)
    assert pipe.stats.late == 0 and [i for i in got if i["route"] == ROUTE] == CLEAN
    pipe, got = run([usage(f"s{i}", far0 + i, route="z") for i in range(3)] + LINES)
    assert pipe.stats.late == 0 and [i for i in got if i["route"] == ROUTE] == CLEAN


def test_one_route_back_after_a_gap_jumps_stream_time() -> None:
    """Two routes, a gap longer than max_future_s, and only one of them comes back: its events used to wait
    for a second route for ever and then be rejected. Now they make the jump, and the silent route's windows
    close (it is seen to stop)."""
    t = 1_700_000_000_000
    lines = []
    for i in range(200):
        lines += [usage(f"a{i}", t + i * 10_000, route="a"), usage(f"b{i}", t + i * 10_000 + 5, route="b")]
    back = t + 200 * 10_000 + 2 * 3_600_000
    lines += [usage(f"a2-{i}", back + i * 10_000, route="a") for i in range(2000)]
    pipe, _ = run(lines, config=Config())
    assert pipe.stats.accepted == len(lines) and pipe.stats.jumps == 1
    assert "b" not in pipe.windower.routes or pipe.windower.routes["b"].next_start > back - MIN
