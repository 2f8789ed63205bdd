"""Event-time tumbling windows per route, closed by a watermark.

Stream time is the event time most of the recent traffic has reached, so a
minority of producers with skewed clocks cannot move it. Each route keeps a
clock: its third-newest event time (so two absurd timestamps from one route
cannot move it). Each of the last ``VOTES`` accepted events votes with its
route's clock, and stream time is the lower median of the votes, bounded by
the recent event times less their newest tenth (so a few producers inside a
busy route cannot push it either); it never moves back, and needs
``MIN_VOTES`` events to start. Busy routes carry most
votes and their clocks are fresh, so stream time follows real time closely;
a route whose own clock runs ahead holds at most its share of the votes.

The watermark trails stream time by the allowed lateness. A window
``[s, s + size)`` closes when the watermark passes ``s + size``; an event for
a closed window is late and dropped, and one more than ``max_future_s``
ahead of stream time is rejected. The watermark is per stream (in the
service: per Kafka partition, whose routes all share it), so a route that
goes quiet still has its empty windows closed as other routes move time on,
which is what lets a detector see traffic stop. Closing skips the stretches
where no route has a window due, and routes idle for ``idle_evict_s`` are
evicted, so the work of a jump in time is bounded by the routes held, not by
the size of the jump. At most ``max_routes`` are tracked.

>>> from detector.config import WindowsConfig
>>> from detector.events import UsageEvent
>>> w = Windower(WindowsConfig(size_s=60, allowed_lateness_s=0))
>>> def ev(route, ts):
...     return UsageEvent(event_id=f"{route}{ts}", ts=float(ts), route=route)
>>> for route, ts in [("a", 1_000), ("b", 1_500), ("a", 2_000)] + [("a", 130_000 + i) for i in range(7)]:
...     w.add(ev(route, ts), ts)
>>> w.stream_time()  # a's clock (its third-newest event) holds nine of the ten votes
130004
>>> [(c.route, c.start, c.requests) for c in w.advance()]
[('a', 0, 2), ('b', 0, 1), ('a', 60000, 0), ('b', 60000, 0)]
>>> w.check(50_000)
'late'

Two events from a clock an hour ahead do not move stream time:

>>> for i in range(2):
...     w.add(ev("skewed", 3_730_000 + i), 3_730_000 + i)
>>> w.stream_time()
130004
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from detector.config import WindowsConfig
from detector.events import TelemetryEvent
from detector.windows.aggregate import WindowAggregate

__all__ = ["Windower", "RouteEvicted", "EmptyRun", "VOTES", "MIN_VOTES", "first_stream_time"]


@dataclass(frozen=True, slots=True)
class RouteEvicted:
    """A route was dropped from memory (idle, or over ``max_routes``) at event time ``at_ms``."""

    route: str
    at_ms: int
    why: Literal["idle", "capacity"]


@dataclass(frozen=True, slots=True)
class EmptyRun:
    """The windows ``[start, end)`` (``size`` apart) of a route that slept through them (:meth:`Windower.sleep`):
    all closed with no events. The pipeline judges them in one step, or one by one (:meth:`windows`) when
    its stages cannot.

    >>> run = EmptyRun("r", 0, 180_000, 60_000)
    >>> run.count, [(w.start, w.end, w.events) for w in run.windows()]
    (3, [(0, 60000, 0), (60000, 120000, 0), (120000, 180000, 0)])
    """

    route: str
    start: int
    end: int
    size: int

    @property
    def count(self) -> int:
        return (self.end - self.start) // self.size

    def windows(self) -> list[WindowAggregate]:
        """The run as empty windows, as the windower closed them before routes could sleep."""
        empty, size = WindowAggregate.closed_empty, self.size
        return [empty(self.route, s, s + size) for s in range(self.start, self.end, size)]


#: Events after which a route counts as established: over capacity, routes with fewer go first.
ESTABLISHED = 20
#: Recent events whose routes' clocks vote on stream time, and how many it needs to start.
VOTES = 64
MIN_VOTES = 9


def newest_but_few(times: list[int]) -> int:
    """The recent event times' high quantile that ignores the newest tenth (at least two): the bound that a
    few producers inside one route (a pod with a wrong clock) cannot push. ``times`` sorted.

    >>> newest_but_few(list(range(64)))
    57
    """
    return times[max(0, len(times) - 1 - max(2, len(times) // 10))]


def first_stream_time(events: list[tuple[str, int]]) -> int:
    """Stream time from the first ``(route, ts)`` events (distinct ones): the earlier of two lower medians,
    of the routes' clocks (each event votes with its route's third-newest event, or the oldest of fewer)
    and of the event times themselves. Four events from absurd clocks among nine cannot decide it, on one
    route or on several.

    >>> first_stream_time([("z", 7_226_582_400_000), ("z", 7_226_582_400_001), ("z", 7_226_582_400_002),
    ...                    ("a", 1_000), ("a", 2_000), ("b", 2_500), ("a", 3_000), ("b", 4_000), ("a", 5_000)])
    2500
    """
    by_route: dict[str, list[int]] = {}
    for route, ts in events:
        by_route.setdefault(route, []).append(ts)
    clock = {route: sorted(times, reverse=True)[min(2, len(times) - 1)] for route, times in by_route.items()}
    votes = sorted(clock[route] for route, _ in events)
    times = sorted(ts for _, ts in events)
    mid = (len(votes) - 1) // 2
    return min(votes[mid], times[mid])


class _Route:
    __slots__ = ("name", "open", "next_start", "last_seen", "t2", "t3", "seq", "seen", "empty",
                 "suspects", "suspect_lo", "wake")

    def __init__(self, name: str, next_start: int, last_seen: int, seq: int = 0, seen: int = 0):
        self.name = name
        self.open: dict[int, WindowAggregate] = {}
        self.next_start = next_start
        #: The route's three newest event times (0: not yet seen); its clock is the third (or the oldest of
        #: fewer), so two absurd timestamps from one producer cannot move it.
        self.last_seen = last_seen
        self.t2 = 0
        self.t3 = 0
        #: Creation order: routes are walked in this order when windows close.
        self.seq = seq
        #: Events seen, counted up to ESTABLISHED (a learned baseline is worth keeping over a one-off).
        self.seen = seen
        #: Empty windows closed in a row (after ``idle_evict_s`` of them, a route with events ahead skips on).
        self.empty = 0
        #: Events accepted more than ``max_skew_s`` ahead of stream time, not yet known to be a wrong clock
        #: or the route's traffic after a gap, and the earliest of their times.
        self.suspects = 0
        self.suspect_lo = 0
        #: Asleep (see Windower.sleep): the start of the window at which it must be walked again (its idle
        #: eviction); -1 while awake.
        self.wake = -1

    @property
    def clock(self) -> int:
        """The route's clock: its third-newest event time (the oldest of fewer)."""
        return self.t3 or self.t2 or self.last_seen


class Windower:
    """Assigns events to per-route windows and closes them as the watermark moves."""

    def __init__(self, cfg: WindowsConfig):
        self.size_ms = cfg.size_s * 1000
        self.lateness_ms = cfg.allowed_lateness_s * 1000
        self.idle_ms = cfg.idle_evict_s * 1000
        self.max_future_ms = cfg.max_future_s * 1000
        self.max_skew_ms = cfg.max_skew_s * 1000
        self.max_routes = cfg.max_routes
        #: Stream time (see the module docstring): None until MIN_VOTES events; never moves back.
        self.stream_ts: int | None = None
        #: An upper bound of the stream time the votes could give now (the newest clock at the last count,
        #: or a newer event time since): while it is below the next window end, no count is needed.
        self.hint = 0
        #: The routes of the last VOTES accepted events, and their event times.
        self.voters: deque[_Route] = deque(maxlen=VOTES)
        self.times: deque[int] = deque(maxlen=VOTES)
        #: Events later than this are ahead of stream time by more than max_skew_s (see _set_stream).
        self.skew_at = 1 << 62
        #: Every window ending at or before this is closed, for every route.
        self.closed_end: int | None = None
        self.routes: dict[str, _Route] = {}
        #: The routes walked when windows close (creation order); the others sleep until an event or their
        #: wake-up (a heap of (window start, seq, name); entries of routes woken since are stale).
        self.awake: dict[str, _Route] = {}
        self._wakes: list[tuple[int, int, str]] = []
        self._resort = False
        self._evicted: list[RouteEvicted] = []
        self._seq = 0
        #: Window steps walked by :meth:`advance` (the work of closing; it must not grow with a time jump).
        self.steps = 0
        self._skew_found: list[tuple[str, int]] = []
        #: The routes' vote at the last count (their clocks' lower median), before the event-time bound.
        self._vote = 0

    @property
    def watermark(self) -> int | None:
        return None if self.stream_ts is None else self.stream_ts - self.lateness_ms

    def stream_time(self, force: bool = False) -> int | None:
        """Count the votes: stream time moves to their lower median, bounded by the recent event times less
        their newest tenth, when that is later (see the module docstring); None until MIN_VOTES events were
        accepted (``force``: count whatever votes there are, at the end of a replay)."""
        voters = self.voters
        if len(voters) < MIN_VOTES and self.stream_ts is None and not force:
            return None
        if voters:
            votes = sorted([r.t3 or r.t2 or r.last_seen for r in voters])
            self._vote = votes[(len(votes) - 1) // 2]
            median = min(self._vote, newest_but_few(sorted(self.times)))
            self.hint = votes[-1]
            if self.stream_ts is None or median > self.stream_ts:
                self._set_stream(median)
            if votes[-1] > self._vote + self.max_skew_ms:
                self._judge_skew(voters)
        return self.stream_ts

    def _judge_skew(self, routes: Iterable[_Route]) -> None:
        """A route whose own clock runs more than ``max_skew_s`` ahead of the stream time the other routes
        carry has a wrong clock: its suspect events count as skewed. (A route back after a gap has its clock
        behind its suspects, and on a partition of its own it carries stream time with it.)"""
        if self.stream_ts is None:
            return
        limit = max(self._vote, self.stream_ts) + self.max_skew_ms  # the clock the routes' votes carry
        for r in {id(r): r for r in routes}.values():
            if r.suspects and r.clock > limit:
                self._skew_found.append((r.name, r.suspects))
                r.suspects = 0

    def take_skewed(self) -> list[tuple[str, int]]:
        """(route, events) found to come from clocks skewed ahead since the last call."""
        out, self._skew_found = self._skew_found, []
        return out

    def start(self, stream_ts: int) -> None:
        """Start stream time at ``stream_ts`` (from :func:`first_stream_time`, or the service's wall clock):
        windows more than ``max_future_s`` behind it count as closed, so an event dated far in the past
        is late instead of making every window since its date walked."""
        self.set_floor(stream_ts)
        if self.closed_end is None:
            floor = stream_ts - self.lateness_ms - self.max_future_ms
            self.closed_end = floor - floor % self.size_ms

    def set_floor(self, ts_ms: int) -> None:
        """Stream time is at least ``ts_ms`` (the service's wall-clock advance of a silent partition)."""
        if self.stream_ts is None or ts_ms > self.stream_ts:
            self._set_stream(ts_ms)
        if ts_ms > self.hint:
            self.hint = ts_ms

    def _set_stream(self, ts_ms: int | None) -> None:
        self.stream_ts = ts_ms
        self.skew_at = 1 << 62 if ts_ms is None else ts_ms + self.max_skew_ms

    def check(self, ts_ms: int) -> Literal["future", "late"] | None:
        """Whether an event at ``ts_ms`` would be rejected as absurdly ahead, or late.

        (``Pipeline.process_many`` inlines this on its hot path; keep the two alike.)"""
        if self.stream_ts is None:
            return None
        if ts_ms > self.stream_ts + self.max_future_ms:
            return "future"
        if self.closed_end is not None and ts_ms < self.closed_end:
            return "late"
        return None

    def add(self, ev: TelemetryEvent, ts_ms: int) -> None:
        """Add an event that passed :meth:`check`."""
        size = self.size_ms
        start = ts_ms - ts_ms % size
        r = self.routes.get(ev.route)
        if r is None:
            first = start if self.closed_end is None else max(start, self.closed_end)
            self._seq += 1
            r = self.routes[ev.route] = self.awake[ev.route] = _Route(ev.route, first, ts_ms, self._seq)
            if len(self.routes) > self.max_routes:
                self._evict_lru(keep=ev.route)
        else:
            if r.wake > start:  # asleep: walked again when this window closes (the ones before are empty)
                r.wake = max(start, r.next_start)
                self._schedule(r)
            if ts_ms > r.t3:  # the route's clock: its third-newest event time
                if ts_ms > r.t2:
                    r.t3 = r.t2
                    if ts_ms > r.last_seen:
                        r.t2 = r.last_seen
                        r.last_seen = ts_ms
                    else:
                        r.t2 = ts_ms
                else:
                    r.t3 = ts_ms
        if ts_ms > self.hint:  # an upper bound of every route clock (so of stream time)
            self.hint = ts_ms
        if r.seen < ESTABLISHED:
            r.seen += 1
        if ts_ms > self.skew_at:  # ahead of stream time: a wrong clock, or a gap (see _judge_skew)
            if not r.suspects or ts_ms < r.suspect_lo:
                r.suspect_lo = ts_ms
            r.suspects += 1
        elif r.suspects:  # the route's traffic is back near stream time
            if ts_ms < r.suspect_lo - self.max_skew_ms:  # and behind its suspects: they came from a wrong clock
                self._skew_found.append((r.name, r.suspects))
            r.suspects = 0
        self.voters.append(r)
        self.times.append(ts_ms)
        agg = r.open.get(start)
        if agg is None:
            agg = r.open[start] = WindowAggregate(ev.route, start, start + size)
            if start < r.next_start:  # an in-time event before the route's first window
                r.next_start = start
        agg.add(ev, ts_ms)

    def _evict_lru(self, keep: str) -> None:
        """Evict a tenth of the routes (one sort serves many new routes): the routes with the least history
        first (events seen, counted up to ESTABLISHED), the least recently seen first among equals, so a
        burst of one-off routes cannot push out the routes whose baselines are learned (the route cap is
        not a way to switch detection off)."""
        order = sorted((r.seen, r.last_seen, name) for name, r in self.routes.items()
                       if name != keep)
        at = self.stream_ts or self.hint
        for _, _, name in order[: max(1, len(self.routes) - self.max_routes * 9 // 10)]:
            del self.routes[name]
            self.awake.pop(name, None)
            self._evicted.append(RouteEvicted(name, at, "capacity"))
        self._drop_voters()

    def _drop_voters(self) -> None:
        """Forget the votes of routes no longer held (a restore could not bring them back)."""
        routes = self.routes
        if any(routes.get(r.name) is not r for r in self.voters):
            self.voters = deque((r for r in self.voters if routes.get(r.name) is r), maxlen=VOTES)

    def sleep(self, route: str) -> bool:
        """Stop walking ``route`` every window: it has no window open, and the pipeline's stages say its empty
        windows can be judged later in one step (:class:`EmptyRun`). It is walked again from its first
        window not yet closed when an event of it arrives, or at the window where it would be evicted as
        idle; until then closing windows costs it nothing. False when it cannot sleep (events ahead)."""
        r = self.awake.get(route)
        if r is None or r.open:
            return False
        size = self.size_ms
        due = r.last_seen + self.idle_ms  # the first window end at or after it evicts the route
        r.wake = max(r.next_start, -(-due // size) * size - size)
        del self.awake[route]
        self._schedule(r)
        return True

    def _schedule(self, r: _Route) -> None:
        """Put a sleeping route's wake-up on the heap. An earlier entry of the route stays there, stale
        (it no longer matches ``r.wake``): when stale ones outnumber the sleeping routes, the heap is
        rebuilt from the live ones, so its size stays within twice the routes asleep."""
        wakes = self._wakes
        heapq.heappush(wakes, (r.wake, r.seq, r.name))
        if len(wakes) > 2 * (len(self.routes) - len(self.awake)) + 64:
            routes = self.routes
            wakes[:] = [e for e in wakes if (x := routes.get(e[2])) is not None and x.wake == e[0] and x.seq == e[1]]
            heapq.heapify(wakes)  # in place: a walk in progress holds the list

    def _wake_due(self, start: int) -> None:
        """Wake the sleeping routes whose wake-up is at or before the window ``start``."""
        wakes, routes = self._wakes, self.routes
        while wakes and wakes[0][0] <= start:
            at, seq, name = heapq.heappop(wakes)
            r = routes.get(name)
            if r is not None and r.wake == at and r.seq == seq:
                r.wake = -1
                self.awake[name] = r
                self._resort = True

    def advance(self, watermark: int | None = None,
                partial_after: int | None = None) -> list[WindowAggregate | EmptyRun]:
        """Close every window the watermark has passed; evictions wait in :meth:`take_evictions`.

        Stretches of time where no route has a window due are skipped, a route idle for ``idle_evict_s``
        is evicted, and sleeping routes are not walked (their windows come as one :class:`EmptyRun` when
        they wake), so the work does not grow with the size of a jump in time nor with idle routes. Windows
        ending after ``partial_after`` are marked partial (the end of a replay: the watermark has not
        passed them, so they may still be missing events)."""
        wm = self.watermark if watermark is None else watermark
        if wm is None:
            return []
        size = self.size_ms
        target = wm - wm % size
        routes = self.routes
        if self.closed_end is None:
            starts = [r.next_start for r in routes.values()]
            if not starts or target <= min(starts):
                return []
            self.closed_end = min(starts)
        out: list[WindowAggregate | EmptyRun] = []
        end = self.closed_end + size
        quiet = self.idle_ms // size  # empty windows in a row after which a route with events ahead skips on
        wakes = self._wakes
        while end <= target:
            self.steps += 1
            start = end - size
            if wakes and wakes[0][0] <= start:
                self._wake_due(start)
            if self._resort:  # woken routes take their places in creation order again
                self._resort = False
                self.awake = dict(sorted(self.awake.items(), key=lambda kv: kv[1].seq))
            gone: list[str] = []
            due = False
            soonest = target if not wakes or wakes[0][0] > target else wakes[0][0]
            for name, r in self.awake.items():
                ns = r.next_start
                if ns > start:
                    if ns < soonest:
                        soonest = ns
                    continue
                if ns < start:  # windows it slept through (or a restored route's): closed empty, in one run
                    out.append(self._slept(r, start))
                agg = r.open.pop(start, None)
                if agg is not None:
                    r.empty = 0
                    out.append(agg)
                elif r.empty >= quiet and r.open:  # a day of nothing, events ahead: skip to them
                    ns = r.next_start = min(r.open)
                    if ns < soonest:
                        soonest = ns
                    continue
                else:
                    r.empty += 1
                    out.append(WindowAggregate.closed_empty(name, start, end))
                due = True
                r.next_start = end
                if end - r.last_seen >= self.idle_ms and not r.open:
                    gone.append(name)
            for name in gone:
                del routes[name]
                del self.awake[name]
                self._evicted.append(RouteEvicted(name, end, "idle"))
            if gone:
                self._drop_voters()
            self.closed_end = end
            if not due and soonest > end:  # nothing due until the soonest route's next window
                self.closed_end = soonest
                end = soonest
            end += size
        if target > self.closed_end:
            self.closed_end = target
        if partial_after is not None:
            out = _mark_partial(out, partial_after)
        return out

    def flush(self) -> list[WindowAggregate | EmptyRun]:
        """The end of a replay: close every window up to the one holding the newest event that is not
        skewed ahead of stream time. Windows the watermark has not passed are marked partial (they may
        lack events that would have come late, or after an export's cut); windows further ahead (events
        from clocks skewed ahead) stay unjudged (:meth:`unjudged`)."""
        st = self.stream_time(force=True)
        if st is None:
            return []
        self._judge_skew(self.routes.values())
        limit = st + max(self.max_skew_ms, self.lateness_ms)
        # each route's newest event time within the limit (its clock when none is)
        last = max((max((t for t in (r.last_seen, r.t2, r.t3) if t and t <= limit), default=r.clock)
                    for r in self.routes.values()), default=st)
        last = max(min(last, limit), st)
        after = st - self.lateness_ms
        out = _mark_partial(self._wake_all(), after)
        return out + self.advance(last - last % self.size_ms + self.size_ms, partial_after=after)

    def _wake_all(self) -> list[WindowAggregate | EmptyRun]:
        """Wake every sleeping route; the windows each slept through up to those closed, as runs."""
        out: list[WindowAggregate | EmptyRun] = []
        end = self.closed_end
        for name, r in self.routes.items():
            if r.wake < 0:
                continue
            r.wake = -1
            self.awake[name] = r
            self._resort = True
            if end is not None and r.next_start < end:
                out.append(self._slept(r, end))
                r.next_start = end
        self._wakes.clear()
        return out

    def _slept(self, r: _Route, until: int) -> EmptyRun:
        """The windows a route slept through, from its next window to ``until``, counted as empty ones."""
        run = EmptyRun(r.name, r.next_start, until, self.size_ms)
        r.empty += run.count
        return run

    def unjudged(self) -> int:
        """Events held in windows that are still open (after :meth:`flush`: events from clocks skewed ahead)."""
        return sum(w.events for r in self.routes.values() for w in r.open.values())

    @property
    def has_evictions(self) -> bool:
        """Whether evictions are waiting in :meth:`take_evictions`."""
        return bool(self._evicted)

    def take_evictions(self) -> list[RouteEvicted]:
        """Evictions since the last call, in order."""
        out, self._evicted = self._evicted, []
        return out

    # -- snapshots ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able state, for checkpoints."""
        d = self.stream_state()
        d["routes"] = {name: self.route_state(name) for name in self.routes}
        return d

    # -- per-route checkpoints (the service writes only the routes that changed) ----------------------
    def stream_state(self) -> dict[str, Any]:
        """The state that is not per route."""
        runs: list[list[int]] = []  # the voters by route seq, run-length coded: no route name in it
        for r in self.voters:
            if runs and runs[-1][0] == r.seq:
                runs[-1][1] += 1
            else:
                runs.append([r.seq, 1])
        return {"stream_ts": self.stream_ts, "hint": self.hint,
                "closed_end": self.closed_end, "seq": self._seq, "voters": runs,
                "times": [t - (self.stream_ts or 0) for t in self.times]}  # small numbers: offsets

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state (None when it is not held)."""
        r = self.routes.get(route)
        if r is None:
            return None
        return {"next_start": r.next_start, "last_seen": r.last_seen, "t2": r.t2, "t3": r.t3, "seq": r.seq,
                "seen": r.seen, "empty": r.empty, "suspects": [r.suspects, r.suspect_lo],
                "open": [w.to_dict() for w in r.open.values()]}

    def restore_parts(self, stream: dict[str, Any], routes: dict[str, dict[str, Any]],
                      in_order: bool = False) -> None:
        """Load :meth:`stream_state` and :meth:`route_state` outputs; routes keep their creation order
        (``in_order``: ``routes`` already is in that order, as in a whole snapshot)."""
        self._set_stream(stream.get("stream_ts", stream.get("max_ts")))  # max_ts: checkpoints before votes
        self.closed_end = stream["closed_end"]
        self._seq = int(stream.get("seq", 0))
        self.routes = {}
        self._evicted = []
        items = list(routes.items())
        if not in_order:
            items.sort(key=lambda kv: (kv[1].get("seq", 0), kv[0]))
        for name, rd in items:
            r = _Route(name, rd["next_start"], rd["last_seen"], int(rd.get("seq", 0)),
                       int(rd.get("seen", ESTABLISHED)))
            r.t2, r.t3, r.empty = int(rd.get("t2", 0)), int(rd.get("t3", 0)), int(rd.get("empty", 0))
            r.suspects, r.suspect_lo = (int(x) for x in rd.get("suspects", (0, 0)))
            for wd in rd["open"]:
                w = WindowAggregate.from_dict(wd)
                r.open[w.start] = w
            self.routes[name] = r
        self.awake = dict(self.routes)  # a route asleep when saved is walked from its first window not closed
        self._wakes = []
        self._resort = False
        by_seq = {r.seq: r for r in self.routes.values()}
        self.times = deque((t + (self.stream_ts or 0) for t in stream.get("times", [])), maxlen=VOTES)
        self.voters = deque((by_seq[q] for q, n in stream.get("voters", []) if q in by_seq for _ in range(n)),
                            maxlen=VOTES)
        self.hint = int(stream.get("hint", max((r.clock for r in self.routes.values()), default=0)))

    def restore(self, d: dict[str, Any]) -> None:
        """Load :meth:`to_dict` output."""
        self.restore_parts(d, d["routes"], in_order=True)


def _mark_partial(windows: list[WindowAggregate | EmptyRun], after: int) -> list[WindowAggregate | EmptyRun]:
    """Windows ending after ``after`` marked partial; an empty run reaching past it is cut there, its
    partial windows given one by one."""
    out: list[WindowAggregate | EmptyRun] = []
    for w in windows:
        if w.__class__ is EmptyRun:
            assert isinstance(w, EmptyRun)
            if w.end <= after:
                out.append(w)
                continue
            cut = w.start + max(0, (after - w.start) // w.size) * w.size  # the first window ending after it
            if cut > w.start:
                out.append(EmptyRun(w.route, w.start, cut, w.size))
            for agg in EmptyRun(w.route, cut, w.end, w.size).windows():
                agg.partial = True
                out.append(agg)
        else:
            assert isinstance(w, WindowAggregate)
            if w.end > after:
                w.partial = True
            out.append(w)
    return out
