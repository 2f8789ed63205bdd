"""Per-route checkpoints: a pipeline rebuilt from its partition state, its routes' states and the
duplicate filter's generations (all through JSON) continues exactly like one that never stopped,
also when they come from a compacted changelog of incremental checkpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from detector.config import Config, load_config, with_overrides
from detector.incidents.commands import Command
from detector.incidents.engine import IncidentEngine
from detector.ingest.dedup import DuplicateFilter
from detector.pipeline import Pipeline
from detector.replay import read_lines
from detector.windows.windower import RouteEvicted

ROOT = Path(__file__).resolve().parent.parent
LINES = list(read_lines(ROOT / "examples/events.jsonl"))
CONFIG = load_config(ROOT / "examples/config.toml")
#: Small enough that the multi-route stream evicts routes (idle and over capacity) and rotates the
#: duplicate filter's generations many times.
SMALL = with_overrides(CONFIG, {"windows": {"idle_evict_s": 600, "max_routes": 20, "dedup_capacity": 600}})


def multi(lines: list[bytes]) -> list[bytes]:
    """The example over several routes, in its own (slightly out-of-order) file order: a copy on a
    support route, a sparse silenced one, one that stops after 1000 lines, during its tool failure
    (resolving that incident by eviction), one that sends 5 events then idles out, and a burst of 30
    one-event routes that overflows ``max_routes``."""
    out: list[bytes] = []
    for i, raw in enumerate(lines):
        e = json.loads(raw)
        out.append(raw)
        out.append(json.dumps(dict(e, event_id=f"b-{e['event_id']}", route="support.draft",
                                   ts=e["ts"] + 7000)).encode())
        if i % 5 == 0:
            out.append(json.dumps(dict(e, event_id=f"c-{e['event_id']}", route="batch.job")).encode())
        if i < 1000:
            out.append(json.dumps(dict(e, event_id=f"d-{e['event_id']}", route="crm.short")).encode())
        if 100 <= i < 105:
            out.append(json.dumps(dict(e, event_id=f"q-{i}", route="quiet.once")).encode())
        if 900 <= i < 930:
            out.append(json.dumps(dict(e, event_id=f"x-{i}", route=f"burst.{i}")).encode())
    return out


MULTI = multi(LINES)


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def held(p: Pipeline) -> set[str]:
    """Every route some stage still holds state for (read from the stages' insides)."""
    eng = p.incidents
    assert isinstance(eng, IncidentEngine)
    return (set(p.windower.routes) | set(p.detectors.routes)  # type: ignore[attr-defined]
            | {o.route for o in eng.open.values()} | {k.split("\x1f")[0] for k in eng.heightened}
            | set(eng.before) | set(eng._recent) | set(eng.changes._routes))


def orders(p: Pipeline) -> dict[str, list[str]]:
    """The route orders that decisions depend on (windows close and routes are evicted in them)."""
    eng = p.incidents
    assert isinstance(eng, IncidentEngine)
    return {"windower": list(p.windower.routes), "detectors": list(p.detectors.routes),  # type: ignore[attr-defined]
            "changes": list(eng.changes._routes)}


def assert_same_state(restored: Pipeline, original: Pipeline) -> None:
    assert restored.snapshot() == original.snapshot()
    assert orders(restored) == orders(original)


def run(config: Config, lines: list[bytes]) -> tuple[list[dict[str, Any]], Pipeline]:
    p = Pipeline(config)
    return [*p.process_many(lines), *p.flush()], p


class Changelog:
    """What a compacted changelog topic holds: the latest record per route (deletions applied), the
    latest partition record, and the duplicate filter's id chunks of the generations it still holds."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, Any]] = {}
        self.partition: dict[str, Any] | None = None
        self.dedup_gen = 0
        self.chunks: dict[int, list[str]] = {}

    def checkpoint(self, p: Pipeline) -> set[str]:
        dirty = p.take_dirty()
        for route in sorted(dirty):
            st = p.route_state(route)
            if st is None:
                self.routes.pop(route, None)
            else:
                self.routes[route] = _json(st)
        for gen, ids in p.dedup.take_journal():
            self.chunks.setdefault(gen, []).extend(_json(ids))
        self.dedup_gen = p.dedup.generation
        for gen in [g for g in self.chunks if g < self.dedup_gen - 1]:
            del self.chunks[gen]  # the filter dropped it: its chunks are tombstoned
        self.partition = _json(p.partition_state())
        return dirty

    def rebuild(self, config: Config) -> Pipeline:
        assert self.partition is not None
        p = Pipeline(config)
        p.dedup.journaling = True
        g = self.dedup_gen
        p.restore_parts(_json(self.partition), _json(self.routes),
                        (g, self.chunks.get(g, []), self.chunks.get(g - 1, [])))
        return p


def full_parts(p: Pipeline) -> Changelog:
    """A changelog written in one go: every held route, the filter's generations as they are."""
    log = Changelog()
    routes = p.take_dirty()  # the first call: everything that changed since the pipeline was made
    assert held(p) <= routes
    for route in routes:
        st = p.route_state(route)
        if st is not None:
            log.routes[route] = _json(st)
    assert set(log.routes) == held(p)  # route_state is None exactly for the routes no stage holds
    snap = p.dedup.snapshot()
    log.dedup_gen, log.chunks = p.dedup.generation, {p.dedup.generation: snap["young"]}
    if snap["old"]:
        log.chunks[p.dedup.generation - 1] = snap["old"]
    log.partition = _json(p.partition_state())
    return log


@pytest.mark.parametrize(("config", "lines", "split"), [
    *((CONFIG, LINES, s) for s in (0.3, 0.69, 0.75, 0.9)),
    *((SMALL, MULTI, s) for s in (0.1, 0.5, 0.62, 0.9)),
], ids=[*(f"example-{s}" for s in (0.3, 0.69, 0.75, 0.9)), *(f"multi-{s}" for s in (0.1, 0.5, 0.62, 0.9))])
def test_parts_restore_continues_identically(config: Config, lines: list[bytes], split: float) -> None:
    """Rebuild from partition_state + every route's route_state + dedup generations: same incidents."""
    expected, whole = run(config, lines)
    assert any(i["event"] == "opened" for i in expected)
    cut = int(len(lines) * split)
    first = Pipeline(config)
    got = first.process_many(lines[:cut])
    second = full_parts(first).rebuild(config)
    assert_same_state(second, first)
    second.stats = first.stats  # stats are counters, not state
    got += second.process_many(lines[cut:]) + second.flush()
    assert got == expected
    assert second.stats.as_dict() == whole.stats.as_dict()


def batches(n: int, sizes: tuple[float, ...]) -> Iterator[tuple[int, int]]:
    edges = [0, *(int(n * f) for f in sizes), n]
    yield from zip(edges, edges[1:], strict=False)


def test_compacted_changelog_continues_identically() -> None:
    """Incremental checkpoints after each of 8 batches; rebuilt from the compacted changelog at any
    batch boundary, the pipeline continues exactly like the uninterrupted run."""
    expected, _ = run(SMALL, MULTI)
    p = Pipeline(SMALL)
    p.dedup.journaling = True
    log = Changelog()
    got: list[dict[str, Any]] = []
    rotations = set()
    for lo, hi in batches(len(MULTI), (0.05, 0.2, 0.35, 0.5, 0.61, 0.63, 0.8)):
        got += p.process_many(MULTI[lo:hi])
        log.checkpoint(p)
        rotations.add(log.dedup_gen)
        assert set(log.chunks) <= {log.dedup_gen, log.dedup_gen - 1}
        assert sum(map(len, log.chunks.values())) <= SMALL.windows.dedup_capacity
        restored = log.rebuild(SMALL)
        assert_same_state(restored, p)
        assert restored.partition_state() == log.partition
        tail = restored.process_many(MULTI[hi:]) + restored.flush()
        assert got + tail == expected, f"diverged after a restore at line {hi}"
    assert len(rotations) >= 5  # the duplicate filter rotated between checkpoints


def test_partition_state_is_small_and_holds_no_routes() -> None:
    """The partition record holds no route's state and no event id; stats are not in it."""
    p = Pipeline(SMALL)
    p.process_many(MULTI[: len(MULTI) // 2])
    state = p.partition_state()
    assert "resolved_ids" not in state["incidents"]  # recently resolved ids travel with their routes
    text = json.dumps(state, allow_nan=False)
    for route in held(p) | {"quiet.once", "burst.900"}:
        assert route not in text
    assert '"u1"' not in text and "accepted" not in text
    assert len(text) < 2000  # the recent event times that vote on stream time are in it, as offsets


def test_batch_touching_one_route_dirties_only_it() -> None:
    """With several routes held, a batch for one route that closes no window dirties just that route."""
    p = Pipeline(SMALL)
    p.process_many(MULTI[:2000])
    assert len(p.windower.routes) >= 3
    p.take_dirty()
    assert p.take_dirty() == set()  # nothing happened since
    closed, ts = p.stats.windows_closed, p.windower.stream_ts
    assert ts is not None
    line = {"event_id": "only-one", "type": "usage", "ts": ts, "route": "support.draft"}
    assert p.process(json.dumps(line).encode()) == []
    assert p.stats.windows_closed == closed
    assert p.take_dirty() == {"support.draft"}
    p.process(json.dumps(line).encode())  # a duplicate changes nothing
    assert p.take_dirty() == set()


def test_evicted_routes_are_dirty_and_stateless() -> None:
    """A route evicted (idle or over capacity) is in the next take_dirty() and its route_state is None."""
    seen: list[RouteEvicted] = []

    class Recording:
        """The engine, with its evictions recorded (a wrapper: a compiled class takes no new methods)."""

        def __init__(self, inner: IncidentEngine):
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def on_evict(self, ev: RouteEvicted) -> list[dict[str, Any]]:
            seen.append(ev)
            return self.inner.on_evict(ev)

    p = Pipeline(SMALL, incidents=Recording(IncidentEngine(SMALL)))  # type: ignore[arg-type]
    whys: dict[str, str] = {}
    for lo, hi in batches(len(MULTI), tuple(i / 20 for i in range(1, 20))):
        p.process_many(MULTI[lo:hi])
        dirty = p.take_dirty()
        for ev in seen:
            assert ev.route in dirty
            if ev.route not in p.windower.routes:
                whys[ev.route] = ev.why
        seen.clear()
    assert whys.get("quiet.once") == "idle"
    assert "capacity" in whys.values()
    for route in ("quiet.once", *(r for r, why in whys.items() if why == "capacity")):
        assert p.route_state(route) is None, route
    # crm.short had an incident: after its eviction the engine still watches it (heightened)
    assert whys.get("crm.short") == "idle"
    st = p.route_state("crm.short")
    assert st is not None and st["w"] is None and st["d"] is None and st["i"]["heightened"]


def test_duplicates_after_restore_are_dropped() -> None:
    """Ids seen before a restore, in the current and the previous generation, are still duplicates."""
    cut = int(len(MULTI) * 0.6)
    p = Pipeline(SMALL)
    p.dedup.journaling = True
    log = Changelog()
    for lo, hi in batches(cut, (0.3, 0.6, 0.9)):
        p.process_many(MULTI[lo:hi])
        log.checkpoint(p)
    restored = log.rebuild(SMALL)
    old = sorted(p.dedup._old)
    assert old and all(restored.dedup.seen(x) for x in old[:50])  # previous generation
    again = MULTI[cut - 40:cut]  # recent enough that their windows are still open
    before = restored.stats.as_dict()
    assert restored.process_many(again) == p.process_many(again)
    after = restored.stats.as_dict()
    assert after["accepted"] == before["accepted"]
    assert after["duplicates"] > 0 and after["duplicates"] == p.stats.duplicates
    assert after["duplicates"] + after["late"] - before["late"] == len(again)


def test_operator_command_dirties_its_route() -> None:
    """Acknowledging an incident dirties its route only, and the changelog carries the new status."""
    p = Pipeline(SMALL)
    p.dedup.journaling = True
    log = Changelog()
    opened: list[dict[str, Any]] = []
    for lo, hi in batches(len(MULTI), tuple(i / 40 for i in range(1, 40))):
        opened += [i for i in p.process_many(MULTI[lo:hi]) if i["event"] == "opened"]
        log.checkpoint(p)
        if opened:
            break
    inc = opened[0]
    at = datetime.fromtimestamp(p.windower.stream_ts / 1000, UTC).isoformat()  # type: ignore[operator]
    out = p.apply_command(Command(command="acknowledge", incident_id=inc["incident_id"], at=at, by="sam"))
    assert [i["event"] for i in out] == ["acknowledged"]
    assert log.checkpoint(p) == {inc["route"]}
    restored = log.rebuild(SMALL)
    assert_same_state(restored, p)
    assert restored.process_many(MULTI[hi:]) + restored.flush() == p.process_many(MULTI[hi:]) + p.flush()


def test_dedup_journal() -> None:
    """The journal groups new ids by generation, is off by default, and stays bounded when never taken."""
    d = DuplicateFilter(capacity=4)
    for x in "abcdef":
        d.seen(x)
    assert d.generation == 2 and d.take_journal() == []
    d = DuplicateFilter(capacity=4, journaling=True)
    for x in "abcab":
        d.seen(x)
    assert d.take_journal() == [(0, ["a", "b"]), (1, ["c"])]
    for i in range(1000):
        d.seen(str(i))
    journal = d.take_journal()
    assert [g for g, _ in journal] == [d.generation - 1, d.generation]
    assert sum(len(ids) for _, ids in journal) <= d.capacity
    e = DuplicateFilter(capacity=4, journaling=True)
    e.restore_generations(d.generation, *[ids for _, ids in reversed(journal)])
    assert e.snapshot() == d.snapshot() and e.generation == d.generation
    assert e.seen("999") and e.seen("998") and not e.seen("new")
