"""The data path shared by `detector replay` and `detector run`.

bytes -> decode -> (future / duplicate / late checks) -> per-route windows
-> detectors (per closed window) -> incident engine -> incident events.

The pipeline does no I/O and reads no clock: event time drives everything,
so a replay and the service given the same messages make the same
decisions. Rejected messages are handed to an injected ``on_reject``
callback (the service dead-letters them; replay counts them).

>>> p = Pipeline(Config())
>>> p.process(b'{"event_id":"1","type":"usage","ts":"2026-01-01T00:00:00Z","route":"r"}')
[]
>>> p.process(b'not json')
[]
>>> p.stats.read, p.stats.accepted, dict(p.stats.rejected)  # the first events wait for stream time
(2, 0, {'not_json': 1})
>>> p.flush(), p.stats.accepted
([], 1)
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from detector.config import Config
from detector.detectors.firing import Firing
from detector.detectors.routes import RouteDetectors
from detector.events import TelemetryEvent
from detector.incidents.commands import Command
from detector.incidents.engine import IncidentEngine
from detector.ingest.decode import Decoded, Decoder, Rejection
from detector.ingest.dedup import DuplicateFilter
from detector.ingest.otlp import Translated
from detector.windows.aggregate import WindowAggregate
from detector.windows.windower import MIN_VOTES, VOTES, EmptyRun, RouteEvicted, Windower, first_stream_time

__all__ = ["Pipeline", "Stats", "Source", "Waiting", "DetectorStage", "IncidentStage", "NullDetectors", "NullIncidents"]

Incident = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from (in the service: its offset and key); carried with events that wait, so
    a late rejection names the right message."""

    offset: int
    key: bytes | None


class Waiting(NamedTuple):
    """An event waiting for stream time to start, or held far ahead of it."""

    raw: bytes
    route: str
    ts: int
    source: Any
    event_id: str

#: Routes counted by name for skewed clocks; events of any further route count under OTHER_ROUTES.
SKEW_ROUTES = 1000
OTHER_ROUTES = "(other routes)"
#: Events held far ahead of stream time that make a jump (a gap in the traffic); bytes held at most.
JUMP_VOTES = 16
HELD_BYTES = 256 * 1024


class DetectorStage(Protocol):
    """Judges each closed window of a route; pure, snapshot-able."""

    def on_window(self, window: WindowAggregate) -> list[Firing]:
        """Firings for this window (the detector learns from it too)."""
        ...

    def on_evict(self, route: str) -> None:
        """Forget a route."""
        ...

    def quiet(self, route: str) -> bool:
        """Whether no empty window of the route can change a decision until its next event: its empty
        windows may then be judged later, in one step (:meth:`on_empty_run`)."""
        ...

    def on_empty_run(self, run: EmptyRun) -> None:
        """Learn from empty windows a :meth:`quiet` route slept through, exactly as :meth:`on_window` would
        from each (none of them fires)."""
        ...

    def heighten(self, route: str, until_ms: int, incident_type: str | None = None,
                 signals: Sequence[str] = ()) -> None:
        """Watch a route's ``signals`` (else its signals of ``incident_type``; None: all) harder until
        ``until_ms`` (an incident of that type, with those signals, on it just resolved)."""
        ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snap: dict[str, Any]) -> None: ...

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state (None when none is held)."""
        ...

    def restore_routes(self, routes: dict[str, dict[str, Any]]) -> None:
        """Replace all state with :meth:`route_state` outputs, in the original route order."""
        ...


class IncidentStage(Protocol):
    """Turns firings into incident events (SPEC section 2 dicts); pure, snapshot-able."""

    def on_window(self, window: WindowAggregate, firings: Sequence[Firing]) -> list[Incident]:
        """Incident events caused by this closed window and its firings."""
        ...

    def on_evict(self, evicted: RouteEvicted) -> list[Incident]:
        """Resolve what is open on a route that was evicted."""
        ...

    def quiet(self, route: str) -> bool:
        """Whether empty windows without firings change nothing here but what :meth:`on_empty_run` does."""
        ...

    def on_empty_run(self, run: EmptyRun) -> None:
        """Record empty windows of a :meth:`quiet` route, exactly as :meth:`on_window` would each."""
        ...

    def on_command(self, cmd: Command) -> list[Incident]:
        """Apply an operator command; the incident events it causes."""
        ...

    def route_of(self, incident_id: str) -> str | None: ...

    def knows(self, incident_id: str) -> bool:
        """Whether the incident is open or was resolved recently here."""
        ...

    def snapshot(self) -> dict[str, Any]: ...

    def restore(self, snap: dict[str, Any]) -> None: ...

    def route_state(self, route: str) -> dict[str, Any] | None: ...

    def global_state(self) -> dict[str, Any]: ...

    def restore_parts(self, glob: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None: ...


class NullDetectors:
    """A detector stage that never fires."""

    def on_window(self, window: WindowAggregate) -> list[Firing]:
        return []

    def on_evict(self, route: str) -> None:
        return None

    def quiet(self, route: str) -> bool:
        return True

    def on_empty_run(self, run: EmptyRun) -> None:
        return None

    def heighten(self, route: str, until_ms: int, incident_type: str | None = None,
                 signals: Sequence[str] = ()) -> None:
        return None

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, snap: dict[str, Any]) -> None:
        return None

    def route_state(self, route: str) -> dict[str, Any] | None:
        return None

    def restore_routes(self, routes: dict[str, dict[str, Any]]) -> None:
        return None


class NullIncidents:
    """An incident stage that opens nothing."""

    def on_window(self, window: WindowAggregate, firings: Sequence[Firing]) -> list[Incident]:
        return []

    def on_evict(self, evicted: RouteEvicted) -> list[Incident]:
        return []

    def quiet(self, route: str) -> bool:
        return True

    def on_empty_run(self, run: EmptyRun) -> None:
        return None

    def on_command(self, cmd: Command) -> list[Incident]:
        return []

    def route_of(self, incident_id: str) -> str | None:
        return None

    def knows(self, incident_id: str) -> bool:
        return False

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, snap: dict[str, Any]) -> None:
        return None

    def route_state(self, route: str) -> dict[str, Any] | None:
        return None

    def global_state(self) -> dict[str, Any]:
        return {}

    def restore_parts(self, glob: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None:
        return None


@dataclass
class Stats:
    """Counters of one pipeline (the service exports them as metrics)."""

    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    windows_closed: int = 0
    routes_evicted: int = 0
    firings: int = 0
    incidents: Counter[str] = field(default_factory=Counter)
    #: Firings by signal name, evictions by cause (idle, capacity): for the service's metrics.
    firings_by_signal: Counter[str] = field(default_factory=Counter)
    evictions: Counter[str] = field(default_factory=Counter)
    #: Events from skewed clocks (windows.max_skew_s): ahead of stream time (accepted, or rejected as
    #: future_timestamp), or behind a closed window (rejected as late); and by route, to find the producer.
    skewed_ahead: int = 0
    skewed_behind: int = 0
    skewed_routes: Counter[str] = field(default_factory=Counter)
    #: Events left in windows beyond stream time at the end of a replay (clocks skewed ahead).
    unjudged: int = 0
    #: Times stream time jumped forward to events held far ahead of it (gaps in the traffic).
    jumps: int = 0
    #: Other input formats (SPEC 2c): spans without GenAI attributes (ignored), spans rejected.
    ignored_spans: int = 0
    rejected_spans: int = 0

    def copy(self) -> Stats:
        """An independent copy (the service adds the difference over a batch to its metrics)."""
        return Stats(self.read, self.accepted, self.duplicates, Counter(self.rejected), self.windows_closed,
                     self.routes_evicted, self.firings, Counter(self.incidents), Counter(self.firings_by_signal),
                     Counter(self.evictions), self.skewed_ahead, self.skewed_behind, Counter(self.skewed_routes),
                     self.unjudged, self.jumps, self.ignored_spans, self.rejected_spans)

    @property
    def late(self) -> int:
        return self.rejected.get("late", 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "late": self.late,
            "duplicates": self.duplicates,
            "windows_closed": self.windows_closed,
            "routes_evicted": self.routes_evicted,
            "firings": self.firings,
            "incidents": dict(sorted(self.incidents.items())),
            "skewed": {"ahead": self.skewed_ahead, "behind": self.skewed_behind,
                       "routes": dict(self.skewed_routes.most_common(10))},
            "unjudged": self.unjudged,
            "jumps": self.jumps,
        }


def _signals(incident: dict[str, Any]) -> list[str]:
    """The signal names an incident event carries (those to watch harder once it resolves)."""
    return [str(s["signal"]) for s in incident.get("signals") or () if isinstance(s, dict) and "signal" in s]


def _ignore(raw: bytes, rejection: Rejection) -> None:
    return None


def default_stages(config: Config) -> tuple[DetectorStage, IncidentStage]:
    """The built-in detector and incident stages for a config."""
    return RouteDetectors(config), IncidentEngine(config)


class Pipeline:
    """Runs messages through every stage. One instance per stream (per Kafka partition)."""

    def __init__(
        self,
        config: Config,
        detectors: DetectorStage | None = None,
        incidents: IncidentStage | None = None,
        on_reject: Callable[[bytes, Rejection], None] = _ignore,
    ):
        self.config = config
        if detectors is None or incidents is None:
            d, i = default_stages(config)
            detectors = detectors or d
            incidents = incidents or i
        self.detectors = detectors
        self.incidents = incidents
        self.on_reject = on_reject
        #: Routes may sleep only when both stages can say so (a stage without ``quiet`` never lets them).
        self._sleepy = hasattr(detectors, "quiet") and hasattr(incidents, "quiet")
        self.decoder = Decoder(config.windows.max_message_bytes)
        self.dedup = DuplicateFilter(config.windows.dedup_capacity)
        self.windower = Windower(config.windows)
        self.stats = Stats()
        self._next_close: int | None = None
        self._heightened_ms = config.incidents.heightened_s * 1000
        #: Routes whose state changed since :meth:`take_dirty` (the service checkpoints only those).
        self._dirty: set[str] = set()
        #: Where the message being processed came from (set by the service: an object with ``offset`` and
        #: ``key``); events that wait keep theirs, and it is set back while they are processed or rejected.
        self.origin: Any = None
        #: The first events, waiting until there are MIN_VOTES of them to start stream time.
        self._pending: list[Waiting] = []
        #: Events held far ahead of stream time (see _hold), their bytes, and events accepted since the first.
        self._held: list[Waiting] = []
        self._held_bytes = 0
        self._held_against = 0

    def _reject(self, raw: bytes, rejection: Rejection) -> None:
        self.stats.rejected[rejection.reason] += 1
        self.on_reject(raw, rejection)

    def reject(self, raw: bytes, rejection: Rejection) -> None:
        """Count a message rejected before it reached the pipeline (an input format's translator) and hand
        it to ``on_reject`` (the dead letters)."""
        self.stats.read += 1
        self._reject(raw, rejection)

    def translated(self, raw: bytes, got: Translated) -> list[bytes]:
        """The section 1 lines of a message of another input format (``got``: its translator's
        ``Translated``); a message or span it could not read is counted and dead-lettered (once per message,
        with the first reason), spans without GenAI attributes are counted."""
        if got.rejection is not None:
            self.reject(raw, got.rejection)
            return []
        self.stats.ignored_spans += got.ignored
        if got.rejected:
            self.reject(raw, got.rejected[0])
            self.stats.rejected_spans += len(got.rejected)
        return [json.dumps(e).encode() for e in got.events]

    def process(self, raw: bytes) -> list[Incident]:
        """Process one message; returns the incident events it caused (often none)."""
        return self.process_many((raw,))

    def process_many(self, raws: Iterable[bytes], _count_read: bool = True) -> list[Incident]:
        """Process messages in order (a file's lines, a consumer's poll); returns the incident events.

        Stream time needs MIN_VOTES events: the first ones wait (in order) until they are there, and are
        then checked against it like any other, so an absurd timestamp among them is rejected too."""
        out: list[Incident] = []
        # the decoder, duplicate filter and windower are called as typed objects, not through bound methods:
        # compiled, those are direct calls (a bound method is a Python-level call, its arguments parsed)
        stats, win, decoder, dedup, reject = self.stats, self.windower, self.decoder, self.dedup, self._reject
        lateness, future, skew = win.lateness_ms, win.max_future_ms, win.max_skew_ms
        read = accepted = duplicates = 0
        dirty = self._dirty.add
        held = self._held
        for raw in raws:
            read += 1
            res = decoder.decode(raw)
            if res.__class__ is not Decoded:
                reject(raw, res)  # type: ignore[arg-type]  # not Decoded: a Rejection
                continue
            ts = res.ts_ms
            st = win.stream_ts
            if st is None:
                self._pending.append(Waiting(raw, res.event.route, ts, self.origin, res.event.event_id))
                if len(self._pending) >= MIN_VOTES:
                    out.extend(self._release())
                continue
            if ts > st + future:  # Windower.check, inlined on the hot path
                out.extend(self._hold(raw, res.event, ts))  # a gap in the traffic, or a wrong clock
                continue
            if win.closed_end is not None and ts < win.closed_end:
                if ts < win.closed_end - skew:
                    self._skewed(res.event.route, "behind")
                reject(raw, Rejection("late", "$.ts: its window is already closed"))
                continue
            ev = res.event
            if dedup.seen(ev.event_id):
                duplicates += 1
                continue
            accepted += 1
            if held:  # events held far ahead: this one speaks against a jump
                self._held_against += 1
                if self._held_against >= JUMP_VOTES and self._held_against >= len(held):
                    self._refute()
            win.add(ev, ts)
            dirty(ev.route)
            nxt = self._next_close
            if nxt is not None and win.hint - lateness < nxt:  # no vote count could close a window yet
                if win.has_evictions:
                    out.extend(self._close([]))
                continue
            st = win.stream_time()
            if st is None:  # stream time needs MIN_VOTES events
                continue
            wm = st - lateness
            if nxt is not None and wm < nxt:
                if win.has_evictions:
                    out.extend(self._close([]))
                continue
            out.extend(self._close(win.advance()))
            self._next_close = wm - wm % win.size_ms + win.size_ms
        if _count_read:
            stats.read += read
        stats.accepted += accepted
        stats.duplicates += duplicates
        return out

    def _skewed(self, route: str, way: str, n: int = 1) -> None:
        """Count events from a clock skewed ahead of stream time or behind a closed window, for their route
        (at most SKEW_ROUTES routes by name; the rest together)."""
        stats = self.stats
        if way == "ahead":
            stats.skewed_ahead += n
        else:
            stats.skewed_behind += n
        routes = stats.skewed_routes
        if route not in routes and len(routes) >= SKEW_ROUTES:
            route = OTHER_ROUTES
        routes[route] += n

    @property
    def waiting(self) -> int:
        """Events waiting for stream time to start (fewer than MIN_VOTES so far) or held far ahead of it."""
        return len(self._pending) + len(self._held)

    def _release(self) -> list[Incident]:
        """Start stream time from the events waiting for it, then process them like any other."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        self.windower.start(first_stream_time(list({w.event_id: (w.route, w.ts) for w in pending}.values())))
        return self._process_from_floor(pending)

    def _process_from_floor(self, events: list[Waiting]) -> list[Incident]:
        """Process events that waited for stream time (now set): all into their windows first, then close."""
        win = self.windower
        self._next_close = 1 << 62  # no window closes before every one of them is in
        out = self._process_waited(events)
        out += self._close(win.advance())
        wm = win.watermark
        assert wm is not None
        self._next_close = wm - wm % win.size_ms + win.size_ms
        return out

    def _process_waited(self, events: list[Waiting]) -> list[Incident]:
        """Process events that waited, each as coming from its own source."""
        out: list[Incident] = []
        current = self.origin
        for w in events:
            self.origin = w.source
            out += self.process_many((w.raw,), _count_read=False)
        self.origin = current
        return out

    def _hold(self, raw: bytes, ev: TelemetryEvent, ts: int) -> list[Incident]:
        """An event more than ``max_future_s`` ahead of stream time: a wrong clock, or the traffic coming back
        after a gap longer than that. It waits (at most VOTES events, HELD_BYTES bytes; a repeated event_id
        is a duplicate) for the events after it to tell: when more are held than have been accepted since
        the first, JUMP_VOTES of them from two routes or more, or VOTES from one, stream time jumps to them
        (the gap's windows close empty, so a stop is seen); when JUMP_VOTES accepted events outnumber them,
        they are rejected as ``future_timestamp``."""
        held = self._held
        if any(w.event_id == ev.event_id for w in held):
            self.stats.duplicates += 1
            return []
        held.append(Waiting(raw, ev.route, ts, self.origin, ev.event_id))
        self._held_bytes += len(raw)
        n = len(held)
        if n > self._held_against and n >= JUMP_VOTES:
            # from two routes or more, JUMP_VOTES; from one (a route back alone), a full buffer
            if n >= VOTES or len({w.route for w in held}) >= 2:
                return self._jump()
        while len(held) > VOTES or self._held_bytes > HELD_BYTES:
            oldest = held.pop(0)
            self._held_bytes -= len(oldest.raw)
            self._reject_held(oldest)
        return []

    def _reject_held(self, w: Waiting) -> None:
        self._skewed(w.route, "ahead")
        current, self.origin = self.origin, w.source
        self._reject(w.raw, Rejection("future_timestamp", "$.ts: too far ahead of stream time"))
        self.origin = current

    def _take_held(self) -> list[Waiting]:
        """The held events, in order; none are held afterwards (the list object stays: the hot loop has it)."""
        held = list(self._held)
        self._held.clear()
        self._held_bytes = self._held_against = 0
        return held

    def _refute(self) -> None:
        """The accepted events outnumber the held ones: those came from wrong clocks."""
        for w in self._take_held():
            self._reject_held(w)

    def _jump(self) -> list[Incident]:
        """The held events are the stream's time now: jump to their vote and process them."""
        held = self._take_held()
        self.stats.jumps += 1
        self.windower.set_floor(first_stream_time([(w.route, w.ts) for w in held]))  # held ids are distinct
        return self._process_from_floor(held)

    def flush(self) -> list[Incident]:
        """Close the remaining windows (end of a replay file): windows the watermark has not passed are
        judged as partial; events from clocks skewed beyond stream time stay unjudged (counted)."""
        out = self._release()
        self._refute()  # never confirmed: from wrong clocks
        out += self._close(self.windower.flush())
        self.stats.unjudged = self.windower.unjudged()
        return out

    def _close(self, windows: Sequence[WindowAggregate | EmptyRun]) -> list[Incident]:
        for route, n in self.windower.take_skewed():
            self._skewed(route, "ahead", n)
        out: list[Incident] = []
        for w in windows:
            if w.__class__ is EmptyRun:
                assert isinstance(w, EmptyRun)
                out.extend(self._empty_run(w))
                continue
            assert isinstance(w, WindowAggregate)
            out.extend(self._judge(w))
        dirty = self._dirty.add
        for ev in self.windower.take_evictions():
            dirty(ev.route)
            self.stats.routes_evicted += 1
            self.stats.evictions[ev.why] += 1
            self.detectors.on_evict(ev.route)
            out.extend(self.incidents.on_evict(ev))
        for inc in out:
            self.stats.incidents[inc["event"]] += 1
        return out

    def _judge(self, w: WindowAggregate) -> list[Incident]:
        """One closed window through the detectors and the incident engine; the route sleeps afterwards
        (:meth:`Windower.sleep`) when both say its empty windows can wait (:meth:`DetectorStage.quiet`)."""
        route = w.route
        self._dirty.add(route)
        stats = self.stats
        stats.windows_closed += 1
        det, eng = self.detectors, self.incidents
        # the built-in stages are called as what they are (compiled: direct calls), any other through its protocol
        firings = det.on_window(w) if not isinstance(det, RouteDetectors) else det.on_window(w)
        if firings:
            stats.firings += len(firings)
            for f in firings:
                stats.firings_by_signal[f.signal] += 1
        found = eng.on_window(w, firings) if not isinstance(eng, IncidentEngine) else eng.on_window(w, firings)
        for inc in found:
            if inc["event"] == "resolved":  # restored: watch the route harder for a while
                self.detectors.heighten(route, w.end + self._heightened_ms, inc["incident_type"], _signals(inc))
        if not firings and not found and self._sleepy and self._quiet(route):
            self.windower.sleep(route)
        return found

    def _quiet(self, route: str) -> bool:
        """Whether both stages say the route's empty windows can wait (see :meth:`_judge`)."""
        det, eng = self.detectors, self.incidents
        if isinstance(det, RouteDetectors) and isinstance(eng, IncidentEngine):  # compiled: direct calls
            return det.quiet(route) and eng.quiet(route)
        return det.quiet(route) and eng.quiet(route)

    def _empty_run(self, run: EmptyRun) -> list[Incident]:
        """Windows a route slept through: judged in one step when the stages still say they can be, else
        one by one as the windower used to close them (the same decisions either way)."""
        route = run.route
        if self._quiet(route):
            self._dirty.add(route)
            self.stats.windows_closed += run.count
            self.detectors.on_empty_run(run)
            self.incidents.on_empty_run(run)
            return []
        out: list[Incident] = []
        for w in run.windows():
            out.extend(self._judge(w))
        return out

    def advance_to(self, watermark_ms: int) -> list[Incident]:
        """Close every window ending at or before ``watermark_ms`` (the service's wall-clock advance of a
        partition that went silent); later events for those windows are late."""
        out = self._release()  # the events waiting for stream time are judged by their own first
        win = self.windower
        wm = win.watermark
        if wm is not None and watermark_ms <= wm:
            return out
        win.start(watermark_ms + win.lateness_ms)
        out += self._close(win.advance())
        if self._held:  # checked again against the new stream time
            out += self._process_waited(self._take_held())
        wm = watermark_ms if win.watermark is None else win.watermark
        self._next_close = wm - wm % win.size_ms + win.size_ms
        return out

    def apply_command(self, cmd: Command) -> list[Incident]:
        """An operator command (SPEC 2b) on this pipeline's incidents and silences."""
        route = self.incidents.route_of(cmd.incident_id) if cmd.incident_id else None
        out = self.incidents.on_command(cmd)
        if route is not None:
            self._dirty.add(route)
        for inc in out:
            self._dirty.add(inc["route"])
            self.stats.incidents[inc["event"]] += 1
            if inc["event"] == "resolved":
                w = self.windower
                self.detectors.heighten(inc["route"], (w.closed_end or 0) + self._heightened_ms, inc["incident_type"],
                                        _signals(inc))
        return out

    # -- per-route checkpoints (the service) -------------------------------------------
    def take_dirty(self) -> set[str]:
        """Routes whose state changed since the previous call."""
        out, self._dirty = self._dirty, set()
        return out

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state across the stages, JSON-able; None when no stage holds the route."""
        parts = {"w": self.windower.route_state(route), "d": self.detectors.route_state(route),
                 "i": self.incidents.route_state(route)}
        return None if all(v is None for v in parts.values()) else parts

    def partition_state(self) -> dict[str, Any]:
        """The state that is not per route (stream time, engine globals); duplicate ids excluded."""
        return {"windower": self.windower.stream_state(), "incidents": self.incidents.global_state(),
                "next_close": self._next_close, **self._waiting_state()}

    def _waiting_state(self) -> dict[str, Any]:
        """The events waiting for stream time or held far ahead: raw messages as base64, with their source."""
        def enc(events: list[Waiting]) -> list[list[Any]]:
            out: list[list[Any]] = []
            for w in events:
                src = w.source
                out.append([base64.b64encode(w.raw).decode("ascii"), None if src is None else src.offset,
                            None if src is None or src.key is None else base64.b64encode(src.key).decode("ascii")])
            return out
        return {"pending": enc(self._pending), "held": enc(self._held), "held_against": self._held_against}

    def _restore_waiting(self, state: dict[str, Any]) -> None:
        def dec(encoded: list[list[Any]]) -> list[Waiting]:
            out = []
            for text, offset, key in encoded:
                raw = base64.b64decode(text)
                res = self.decoder.decode(raw)
                if isinstance(res, Decoded):
                    src = None if offset is None else Source(offset, None if key is None else base64.b64decode(key))
                    out.append(Waiting(raw, res.event.route, res.ts_ms, src, res.event.event_id))
            return out
        self._pending = dec(state.get("pending", []))
        self._held = dec(state.get("held", []))
        self._held_bytes = sum(len(w.raw) for w in self._held)
        self._held_against = int(state.get("held_against", 0))

    def restore_parts(self, partition: dict[str, Any], routes: dict[str, dict[str, Any]],
                      dedup: tuple[int, list[str], list[str]]) -> None:
        """Load :meth:`partition_state`, every route's :meth:`route_state` and the duplicate filter's
        generation with its young and old ids, into a fresh pipeline."""
        self.windower.restore_parts(partition["windower"],
                                    {r: d["w"] for r, d in routes.items() if d.get("w") is not None})
        self.detectors.restore_routes({r: d["d"] for r, d in routes.items() if d.get("d") is not None})
        self.incidents.restore_parts(partition["incidents"],
                                     {r: d["i"] for r, d in routes.items() if d.get("i") is not None})
        self.dedup.restore_generations(*dedup)
        self._next_close = partition["next_close"]
        self._restore_waiting(partition)

    # -- snapshots ------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """All state needed to continue exactly where this pipeline is."""
        return {
            "windower": self.windower.to_dict(),
            "dedup": self.dedup.snapshot(),
            "detectors": self.detectors.snapshot(),
            "incidents": self.incidents.snapshot(),
            "next_close": self._next_close,
            **self._waiting_state(),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output."""
        self.windower.restore(snap["windower"])
        self.dedup.restore(snap["dedup"])
        self.detectors.restore(snap["detectors"])
        self.incidents.restore(snap["incidents"])
        self._next_close = snap["next_close"]
        self._restore_waiting(snap)
