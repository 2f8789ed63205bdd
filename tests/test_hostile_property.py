"""A property test over the decoder and the windower together (issue 8).

What this protects: for any interleaving of the valid example traffic with hostile lines (malformed
bytes, wrong types, absurd values, unknown types), redelivered duplicates, and at most two events from
skewed or absurd clocks, the valid route's incident events are exactly those of the clean run, the open
windows stay bounded, and nothing raises. Hypothesis shrinks any counterexample to a few lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.config import load_config
from detector.pipeline import Pipeline
from detector.replay import read_lines

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_config(ROOT / "examples/config.toml")
LINES = list(read_lines(ROOT / "examples/events.jsonl"))
ROUTE = "crm.update_record"
TS = [int(json.loads(x)["ts"]) for x in LINES]
MIN = 60_000


def _clean() -> list[dict[str, Any]]:
    pipe = Pipeline(CONFIG)
    return pipe.process_many(LINES) + pipe.flush()


CLEAN = _clean()

HOSTILE_TEMPLATES = [
    b"", b"{", b"[]", b"null", b"42", b'"text"', b"\xff\xfe\xfd", b'{"event_id":1}',
    b'{"event_id":"x","type":"usage","ts":"yesterday","route":"r"}',
    b'{"event_id":"x","type":"usage","ts":1795770000000,"route":7}',
    b'{"event_id":"x","type":"latency","ts":1795770000000,"route":"crm.update_record","latency_ms":-5}',
    b'{"event_id":"x","type":"cost","ts":1795770000000,"route":"crm.update_record","cost_usd":1e300}',
    b'{"event_id":"x","type":"usage","ts":1795770000000,"route":"crm.update_record","requests":true}',
    b'{"event_id":"x","type":"teleport","ts":1795770000000,"route":"crm.update_record"}',
    b'{"event_id":"x","type":"usage","ts":99999999999999999,"route":"crm.update_record"}',
    b'{"event_id":"","type":"usage","ts":1795770000000,"route":"crm.update_record"}',
    b'{"event_id":"x","type":"usage","ts":"2026-01-01T00:00:00+0530","route":"crm.update_record"}',
    b'{"a":' * 300 + b"1" + b"}" * 300,
    b"x" * 70_000,
]

hostile = st.one_of(st.sampled_from(HOSTILE_TEMPLATES), st.binary(max_size=120))


@st.composite
def clock_events(draw: st.DrawFn) -> tuple[int, bytes]:
    """One event from a skewed or absurd clock, and where it goes in the stream."""
    at = draw(st.integers(0, len(LINES)))
    ref = TS[min(at, len(LINES) - 1)]
    kind = draw(st.sampled_from(["ahead_other_route", "absurd_future", "absurd_past", "year_2199"]))
    i = draw(st.integers(0, 10**6))
    if kind == "ahead_other_route":  # a producer 10-55 minutes ahead, on a route of its own
        ts = ref + draw(st.integers(10, 55)) * MIN
        route = f"skewed.{draw(st.integers(0, 3))}"
    else:  # far outside any plausible time, on any route, the real one included
        ts = {"absurd_future": ref + 3 * 3_600_000 + draw(st.integers(0, 10**9)),
              "absurd_past": ref - draw(st.integers(2, 10**5)) * 86_400_000,
              "year_2199": 7_226_582_400_000}[kind]
        route = draw(st.sampled_from([ROUTE, "skewed.x"]))
    line = json.dumps({"event_id": f"clock-{kind}-{i}", "type": "usage", "ts": ts, "route": route}).encode()
    return at, line


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    junk=st.lists(st.tuples(st.integers(0, len(LINES)), hostile), max_size=60),
    redelivered=st.lists(st.tuples(st.integers(0, len(LINES) - 1), st.integers(0, 400)), max_size=20),
    clocks=st.lists(clock_events(), max_size=2),
    chunk=st.integers(1, 700),
)
def test_hostile_interleavings_leave_the_valid_incidents_alone(
    junk: list[tuple[int, bytes]], redelivered: list[tuple[int, int]], clocks: list[tuple[int, bytes]],
    chunk: int,
) -> None:
    inserts: dict[int, list[bytes]] = {}
    for at, raw in junk + clocks:
        inserts.setdefault(at, []).append(raw)
    for i, later in redelivered:  # a redelivery comes after the original
        inserts.setdefault(min(len(LINES), i + 1 + later), []).append(LINES[i])
    stream: list[bytes] = []
    for i in range(len(LINES) + 1):
        stream.extend(inserts.get(i, ()))
        if i < len(LINES):
            stream.append(LINES[i])

    pipe = Pipeline(CONFIG)
    got: list[dict[str, Any]] = []
    most_open = 0
    for lo in range(0, len(stream), chunk):
        got += pipe.process_many(stream[lo:lo + chunk])
        most_open = max(most_open, sum(len(r.open) for r in pipe.windower.routes.values()))
    got += pipe.flush()

    assert [i for i in got if i["route"] == ROUTE] == CLEAN
    # the real route's windows the watermark has not passed (lateness / size + 2), plus one window per
    # event from a skewed or absurd clock
    assert most_open <= CONFIG.windows.allowed_lateness_s // CONFIG.windows.size_s + 2 + len(clocks)
    assert pipe.stats.read == len(stream)
    assert pipe.stats.accepted + sum(pipe.stats.rejected.values()) + pipe.stats.duplicates == len(stream)
