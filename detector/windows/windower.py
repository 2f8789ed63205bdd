"""Event-time tumbling windows per route, closed by a watermark.

Stream time is the second-largest event time seen (so that one absurd
timestamp, even the first, cannot move it); the watermark trails it by the
allowed lateness. A window ``[s, s + size)`` closes when the watermark
passes ``s + size``; an event for a closed window is late and dropped. The
watermark is per stream (in the service: per Kafka partition, whose routes
all share it), so a route that goes quiet still has its empty windows closed
as other routes move time on, which is what lets a detector see traffic
stop. Routes idle for ``idle_evict_s`` are evicted, and at most
``max_routes`` are tracked.

>>> from detector.config import WindowsConfig
>>> from detector.events import UsageEvent
>>> w = Windower(WindowsConfig(size_s=60, allowed_lateness_s=0))
>>> def ev(route, ts):
...     return UsageEvent(event_id=f"{route}{ts}", ts=float(ts), route=route)
>>> w.add(ev("a", 1_000), 1_000); w.add(ev("b", 2_000), 2_000)
>>> w.add(ev("b", 130_000), 130_000); w.add(ev("b", 130_001), 130_001)
>>> [(c.route, c.start, c.requests) for c in w.advance()]
[('a', 0, 1), ('b', 0, 1), ('a', 60000, 0), ('b', 60000, 0)]
>>> w.check(50_000)
'late'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from detector.config import WindowsConfig
from detector.events import TelemetryEvent
from detector.windows.aggregate import ADDERS, WindowAggregate

__all__ = ["Windower", "RouteEvicted"]


@dataclass(frozen=True, slots=True)
class RouteEvicted:
    """A route was dropped from memory (idle, or over ``max_routes``) at event time ``at_ms``."""

    route: str
    at_ms: int
    why: Literal["idle", "capacity"]


#: Events after which a route counts as established: over capacity, routes with fewer go first.
ESTABLISHED = 20


class _Route:
    __slots__ = ("open", "next_start", "last_seen", "seq", "seen")

    def __init__(self, next_start: int, last_seen: int, seq: int = 0, seen: int = 0):
        self.open: dict[int, WindowAggregate] = {}
        self.next_start = next_start
        self.last_seen = last_seen
        #: Creation order: routes are walked in this order when windows close.
        self.seq = seq
        #: Events seen, counted up to ESTABLISHED (a learned baseline is worth keeping over a one-off).
        self.seen = seen


class Windower:
    """Assigns events to per-route windows and closes them as the watermark moves."""

    def __init__(self, cfg: WindowsConfig):
        self.size_ms = cfg.size_s * 1000
        self.lateness_ms = cfg.allowed_lateness_s * 1000
        self.idle_ms = cfg.idle_evict_s * 1000
        self.max_future_ms = cfg.max_future_s * 1000
        self.max_routes = cfg.max_routes
        #: Stream time: the second-highest event time seen, so that one absurd timestamp (even the
        #: first) cannot drag the watermark; ``top_ts`` is the highest.
        self.max_ts: int | None = None
        self.top_ts: int | None = None
        #: Every window ending at or before this is closed, for every route.
        self.closed_end: int | None = None
        self.routes: dict[str, _Route] = {}
        self._evicted: list[RouteEvicted] = []
        self._seq = 0

    @property
    def watermark(self) -> int | None:
        return None if self.max_ts is None else self.max_ts - self.lateness_ms

    def check(self, ts_ms: int) -> Literal["future", "late"] | None:
        """Whether an event at ``ts_ms`` would be rejected as absurdly ahead, or late.

        (``Pipeline.process_many`` inlines this on its hot path; keep the two alike.)"""
        if self.max_ts is None:
            return None
        if ts_ms > self.max_ts + self.max_future_ms:
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
            r = self.routes[ev.route] = _Route(first, ts_ms, self._seq)
            if len(self.routes) > self.max_routes:
                self._evict_lru(keep=ev.route)
        elif ts_ms > r.last_seen:
            r.last_seen = ts_ms
        if r.seen < ESTABLISHED:
            r.seen += 1
        agg = r.open.get(start)
        if agg is None:
            agg = r.open[start] = WindowAggregate(ev.route, start, start + size)
            if start < r.next_start:  # an in-time event before the route's first window
                r.next_start = start
        agg.events += 1  # WindowAggregate.add, inlined on the hot path
        ADDERS[type(ev)](agg, ev, ts_ms)
        top = self.top_ts
        if top is None or ts_ms > top:
            self.top_ts = ts_ms
            if top is not None:
                self.max_ts = top
        elif self.max_ts is None or ts_ms > self.max_ts:
            self.max_ts = ts_ms

    def _evict_lru(self, keep: str) -> None:
        """Evict a tenth of the routes (one sort serves many new routes): the routes with the least history
        first (events seen, counted up to ESTABLISHED), the least recently seen first among equals, so a
        burst of one-off routes cannot push out the routes whose baselines are learned (the route cap is
        not a way to switch detection off)."""
        order = sorted((r.seen, r.last_seen, name) for name, r in self.routes.items()
                       if name != keep)
        for _, _, name in order[: max(1, len(self.routes) - self.max_routes * 9 // 10)]:
            del self.routes[name]
            self._evicted.append(RouteEvicted(name, self.max_ts or self.top_ts or 0, "capacity"))

    def advance(self, watermark: int | None = None) -> list[WindowAggregate]:
        """Close every window the watermark has passed; evictions wait in :meth:`take_evictions`."""
        wm = self.watermark if watermark is None else watermark
        if wm is None:
            return []
        size = self.size_ms
        target = wm - wm % size
        if self.closed_end is None:
            starts = [r.next_start for r in self.routes.values()]
            if not starts or target <= min(starts):
                return []
            self.closed_end = min(starts)
        out: list[WindowAggregate] = []
        end = self.closed_end + size
        while end <= target:
            start = end - size
            gone: list[str] = []
            for name, r in self.routes.items():
                if r.next_start > start:
                    continue
                agg = r.open.pop(start, None)
                out.append(agg if agg is not None else WindowAggregate(name, start, end))
                r.next_start = end
                if end - r.last_seen >= self.idle_ms and not r.open:
                    gone.append(name)
            for name in gone:
                del self.routes[name]
                self._evicted.append(RouteEvicted(name, end, "idle"))
            self.closed_end = end
            end += size
        if target > self.closed_end:
            self.closed_end = target
        return out

    def flush(self) -> list[WindowAggregate]:
        """Close every window up to the one holding the latest plausible event (end of a replay)."""
        last = self.max_ts
        if self.top_ts is not None and (last is None or self.top_ts - last <= self.max_future_ms):
            last = self.top_ts
        if last is None:
            return []
        return self.advance(last - last % self.size_ms + self.size_ms)

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
        return {
            "max_ts": self.max_ts,
            "top_ts": self.top_ts,
            "closed_end": self.closed_end,
            "seq": self._seq,
            "routes": {
                name: {
                    "next_start": r.next_start,
                    "last_seen": r.last_seen,
                    "seq": r.seq,
                    "seen": r.seen,
                    "open": [w.to_dict() for w in r.open.values()],
                }
                for name, r in self.routes.items()
            },
        }

    # -- per-route checkpoints (the service writes only the routes that changed) ----------------------
    def stream_state(self) -> dict[str, Any]:
        """The state that is not per route."""
        return {"max_ts": self.max_ts, "top_ts": self.top_ts, "closed_end": self.closed_end, "seq": self._seq}

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state (None when it is not held)."""
        r = self.routes.get(route)
        if r is None:
            return None
        return {"next_start": r.next_start, "last_seen": r.last_seen, "seq": r.seq, "seen": r.seen,
                "open": [w.to_dict() for w in r.open.values()]}

    def restore_parts(self, stream: dict[str, Any], routes: dict[str, dict[str, Any]],
                      in_order: bool = False) -> None:
        """Load :meth:`stream_state` and :meth:`route_state` outputs; routes keep their creation order
        (``in_order``: ``routes`` already is in that order, as in a whole snapshot)."""
        self.max_ts = stream["max_ts"]
        self.top_ts = stream["top_ts"]
        self.closed_end = stream["closed_end"]
        self._seq = int(stream.get("seq", 0))
        self.routes = {}
        self._evicted = []
        items = list(routes.items())
        if not in_order:
            items.sort(key=lambda kv: (kv[1].get("seq", 0), kv[0]))
        for name, rd in items:
            r = _Route(rd["next_start"], rd["last_seen"], int(rd.get("seq", 0)),
                       int(rd.get("seen", ESTABLISHED)))
            for wd in rd["open"]:
                w = WindowAggregate.from_dict(wd)
                r.open[w.start] = w
            self.routes[name] = r

    def restore(self, d: dict[str, Any]) -> None:
        """Load :meth:`to_dict` output."""
        self.restore_parts(d, d["routes"], in_order=True)
