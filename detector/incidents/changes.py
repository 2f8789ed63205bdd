"""Change tracking per route: which versions ran when, which were healthy, what to roll back to.

A route's versions (prompt, model, config, source index, tool, route) change
in two ways the tracker sees:

* explicit ``change`` events (``window.changes``);
* the version fields of ordinary events (``window.versions``): a version
  that appears on a route for the first time, or one that becomes dominant
  where another was dominant before, is an *inferred* change (``event_id``
  None). An explicit change and the switch it causes are one entry.

:meth:`ChangeTracker.observe` is called for every closed window of a route,
in time order, with ``healthy`` = no anomaly firing on the route in that
window. The dominant version of each kind in a healthy window with enough
events is recorded as *seen healthy*; that record is what a rollback targets.

:meth:`ChangeTracker.explain` links an incident to a change: the change is
within the lookback before the incident's start (or in its first anomalous
window) and the anomalous traffic is concentrated on the change's new
version. See :meth:`ChangeTracker.explain` for the concentration test.

Everything is pure and bounded: time is event time (epoch ms) passed in,
at most :data:`TIMELINE_CAP` changes and healthy runs per route and kind.

>>> from detector.events import UsageEvent, ErrorEvent, ChangeEvent
>>> from detector.windows.aggregate import WindowAggregate
>>> def window(i, version, errors=0, change=None):
...     w = WindowAggregate("r", i * 60_000, (i + 1) * 60_000)
...     if change:
...         w.add(ChangeEvent(event_id=f"c{i}", ts=0.0, route="r", change_kind="prompt",
...                           from_version=change[0], to_version=change[1]), i * 60_000)
...     for k in range(10):
...         w.add(UsageEvent(event_id=f"u{i}.{k}", ts=0.0, route="r", prompt_version=version))
...     for k in range(errors):
...         w.add(ErrorEvent(event_id=f"e{i}.{k}", ts=0.0, route="r", prompt_version=version,
...                          error_class="validation_error"))
...     return w
>>> t = ChangeTracker()
>>> for i in range(5):
...     t.observe(window(i, "p1"), healthy=True)
>>> bad = [window(5, "p2", errors=6, change=("p1", "p2")), window(6, "p2", errors=7)]
>>> for w in bad:
...     t.observe(w, healthy=False)
>>> [(c["kind"], c["from_version"], c["to_version"], c["event_id"]) for c in t.recent_changes("r", 0, 10**9)]
[('prompt', 'p1', 'p2', 'c5')]
>>> t.explain("r", "bad_output", 300_000, bad, lookback_ms=7_200_000)
{'kind': 'prompt', 'to_version': 'p1'}
>>> t2 = ChangeTracker.from_snapshot(t.snapshot())
>>> t2.snapshot() == t.snapshot()
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from detector.events import CHANGE_KINDS
from detector.windows.aggregate import (
    OTHER,
    V_BAD_REVIEWS,
    V_COST,
    V_ERRORS,
    V_EVENTS,
    V_LAT_N,
    V_LAT_SUM,
    V_REQUESTS,
    V_REVIEWS,
    WindowAggregate,
)

__all__ = ["ChangeTracker", "KIND_PREFERENCE", "TIMELINE_CAP"]

#: Most timeline entries (and healthy runs) kept per route and kind.
TIMELINE_CAP = 16
#: Most distinct versions remembered per route and kind (least recently seen dropped).
SEEN_CAP = 32
#: Change kinds most likely to cause each incident type, best first. The
#: other kinds can still explain an incident, ranked after these.
KIND_PREFERENCE: dict[str, tuple[str, ...]] = {
    "retrieval_failure": ("source_index",),
    "tool_failure": ("tool",),
    "bad_output": ("prompt", "model"),
    "performance": ("model", "config"),
    "cost": ("model", "config"),
    "access_privacy": ("source_index", "config", "tool"),
}
#: The "bad measure" of each incident type, tried in order.
TYPE_MEASURES: dict[str, tuple[str, ...]] = {
    "bad_output": ("bad_reviews", "errors"),
    "retrieval_failure": ("errors",),
    "tool_failure": ("errors",),
    "access_privacy": ("errors",),
    "performance": ("latency", "errors"),
    "cost": ("cost",),
}
# measure -> (numerator index, denominator index, ratio, absolute margin, counts bad events)
_MEASURES: dict[str, tuple[int, int, float, float, bool]] = {
    "errors": (V_ERRORS, V_EVENTS, 2.0, 0.05, True),
    "bad_reviews": (V_BAD_REVIEWS, V_REVIEWS, 2.0, 0.05, True),
    "latency": (V_LAT_SUM, V_LAT_N, 1.5, 0.0, False),
    "cost": (V_COST, V_REQUESTS, 1.5, 0.0, False),
}
_Stats = dict[str, list[float]]


class _Kind:
    """What the tracker knows about one change kind on one route."""

    __slots__ = ("timeline", "healthy", "seen", "dominant")

    def __init__(self) -> None:
        #: Changes, oldest first: {at, kind, from_version, to_version, event_id}.
        self.timeline: list[dict[str, Any]] = []
        #: Runs of healthy windows with one dominant version: [version, first_start, last_end].
        self.healthy: list[list[Any]] = []
        #: version -> end of the last window it was seen in.
        self.seen: dict[str, int] = {}
        #: The version that held most of the kind's events in the last window with enough.
        self.dominant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"timeline": [dict(c) for c in self.timeline], "healthy": [list(h) for h in self.healthy],
                "seen": dict(self.seen), "dominant": self.dominant}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Kind:
        k = cls()
        k.timeline = [dict(c) for c in d.get("timeline", [])][-TIMELINE_CAP:]
        k.healthy = [list(h) for h in d.get("healthy", [])][-TIMELINE_CAP:]
        k.seen = {str(v): int(t) for v, t in d.get("seen", {}).items()}
        k.dominant = d.get("dominant")
        return k


class _Route:
    __slots__ = ("kinds", "healthy_spans", "last_ms")

    def __init__(self) -> None:
        self.kinds: dict[str, _Kind] = {}
        #: Runs of consecutive healthy windows: [first_start, last_end].
        self.healthy_spans: list[list[int]] = []
        self.last_ms = 0

    def kind(self, name: str) -> _Kind:
        k = self.kinds.get(name)
        if k is None:
            k = self.kinds[name] = _Kind()
        return k


class ChangeTracker:
    """Timeline of versions and changes per route and kind; picks rollback targets.

    Parameters
    ----------
    min_events
        Events a window (and a kind within it) needs before its dominant
        version is trusted, both for "seen healthy" and for dominance switches.
    near_ms
        A change whose concentration cannot be tested (its kind is not
        carried by the events, e.g. ``route``) still explains an incident
        when it happened at most this long before the start.
    settle_ms
        A fully rolled-out version that then ran healthy this long is no
        longer blamed just because it carries all the traffic.
    max_routes
        Routes remembered at once; the least recently observed is dropped.
    """

    def __init__(self, min_events: int = 3, near_ms: int = 900_000, settle_ms: int = 1_800_000,
                 max_routes: int = 10_000):
        self.min_events = min_events
        self.near_ms = near_ms
        self.settle_ms = settle_ms
        self.max_routes = max_routes
        self._routes: dict[str, _Route] = {}

    # -- learning -------------------------------------------------------------------
    def observe(self, window: WindowAggregate, healthy: bool) -> None:
        """Record one closed window of a route (call in time order)."""
        r = self._routes.pop(window.route, None) or _Route()
        self._routes[window.route] = r  # most recently observed last
        if len(self._routes) > self.max_routes:
            del self._routes[next(iter(self._routes))]
        r.last_ms = max(r.last_ms, window.end)
        for ch in sorted(window.changes, key=lambda c: (c.get("ts", 0), str(c.get("event_id")))):
            self._explicit(r, ch)
        enough = window.events >= self.min_events
        for kind in sorted(window.versions):
            per = window.versions[kind]
            k = r.kind(kind)
            had_history = bool(k.seen)
            total = sum(st[V_EVENTS] for st in per.values())
            for v in sorted(per, key=lambda v: (-per[v][V_EVENTS], v)):
                if v == OTHER:
                    continue
                if v not in k.seen and had_history and _last_to(k) != v:
                    _append(k, _entry(window.start, kind, k.dominant, v, None))
                k.seen[v] = window.end
            if len(k.seen) > SEEN_CAP:
                for v, _ in sorted(k.seen.items(), key=lambda kv: (kv[1], kv[0]))[: len(k.seen) - SEEN_CAP]:
                    del k.seen[v]
            dom = _dominant(per) if total >= self.min_events else None
            if dom is None:
                continue
            if k.dominant is not None and dom != k.dominant and _last_to(k) != dom:
                _append(k, _entry(window.start, kind, k.dominant, dom, None))
            k.dominant = dom
            if healthy and enough:
                _extend(k.healthy, dom, window.start, window.end)
        if healthy and enough:
            spans = r.healthy_spans
            if spans and spans[-1][1] >= window.start:
                spans[-1][1] = window.end
            else:
                spans.append([window.start, window.end])
                del spans[:-TIMELINE_CAP]

    def _explicit(self, r: _Route, ch: dict[str, Any]) -> None:
        kind = ch.get("kind")
        if kind not in CHANGE_KINDS:
            return
        k = r.kind(kind)
        eid = ch.get("event_id")
        if eid is not None and any(c["event_id"] == eid for c in k.timeline):
            return
        at = int(ch.get("ts", ch.get("at", 0)))
        entry = _entry(at, kind, ch.get("from_version"), ch.get("to_version"), eid)
        last = k.timeline[-1] if k.timeline else None
        if last is not None and last["event_id"] is None and last["to_version"] == entry["to_version"]:
            k.timeline[-1] = entry  # the switch was seen in the version fields first: same change
        else:
            _append(k, entry)

    def forget(self, route: str) -> None:
        """Drop everything known about a route (it was evicted)."""
        self._routes.pop(route, None)

    # -- queries ------------------------------------------------------------------------
    def recent_changes(self, route: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Changes (explicit and inferred) with ``since_ms <= at < until_ms``, oldest first.

        Each is ``{at, kind, from_version, to_version, event_id}``; ``at`` is
        epoch ms, ``event_id`` None for a change inferred from version fields.
        """
        r = self._routes.get(route)
        if r is None:
            return []
        out = [dict(c) for k in r.kinds.values() for c in k.timeline if since_ms <= c["at"] < until_ms]
        out.sort(key=lambda c: (c["at"], c["kind"], str(c["to_version"])))
        return out

    def last_healthy(self, route: str, kind: str, before_ms: int, exclude: Iterable[str] = ()) -> str | None:
        """The last version of ``kind`` seen dominant in a healthy window starting before ``before_ms``."""
        r = self._routes.get(route)
        k = r.kinds.get(kind) if r is not None else None
        if k is None:
            return None
        skip = set(exclude)
        for version, first, _last in reversed(k.healthy):
            if first < before_ms and version not in skip:
                return str(version)
        return None

    def explain(self, route: str, incident_type: str, start_ms: int, anomalous: list[WindowAggregate],
                lookback_ms: int) -> dict[str, str] | None:
        """The rollback target for an incident that a change explains, else None.

        Candidates are the changes at ``start - lookback <= at < end of the
        first anomalous window`` (also explicit changes and never-seen
        versions in ``anomalous`` itself, should it not have been observed
        yet). A candidate explains the incident when, over the anomalous
        windows and for the type's bad measure (errors per event; bad
        reviews per review for ``bad_output``; mean latency, then errors,
        for ``performance``; cost per request for ``cost``):

        * the old versions still carry traffic (>= 10 events, or >= 3
          latency samples or requests) and the new version's measure is
          clearly worse: at least 2x (1.5x for latency and cost) the old
          versions' and, for rates, 5 points higher, with >= 3 bad events;
        * or the rollout is complete (the old versions carry too little to
          compare) and the new version holds >= 80% of the bad measure,
          unless it then ran healthy for ``settle_ms`` first.

        A change whose kind the events do not carry (e.g. ``route``) cannot
        be tested; it explains the incident only within ``near_ms`` of the
        start, and ranks after tested candidates. Among candidates: tested
        first, then the kind most relevant to the type, then the latest.

        The target is the last version seen healthy on the route before
        the change (else, for an explicit change made while the route was
        healthy, its ``from_version``), never the change's new version.
        """
        first_end = min((w.end for w in anomalous), default=start_ms + 1)
        since = start_ms - lookback_ms
        r = self._routes.get(route) or _Route()
        stats = _merge(anomalous)
        candidates = self.recent_changes(route, since, first_end)
        known = {c["event_id"] for c in candidates if c["event_id"] is not None}
        known_to = {(c["kind"], c["to_version"]) for c in candidates}
        for w in sorted(anomalous, key=lambda w: w.start):
            for ch in w.changes:
                at = int(ch.get("ts", w.start))
                if since <= at < first_end and ch.get("event_id") not in known:
                    known.add(ch.get("event_id"))
                    known_to.add((ch["kind"], ch.get("to_version")))
                    candidates.append(_entry(at, ch["kind"], ch.get("from_version"), ch.get("to_version"),
                                             ch.get("event_id")))
            for kind, per in w.versions.items():
                k = r.kinds.get(kind)
                if k is None or not k.seen:
                    continue
                for v in per:
                    if v != OTHER and v not in k.seen and (kind, v) not in known_to and since <= w.start:
                        known_to.add((kind, v))
                        candidates.append(_entry(w.start, kind, k.dominant, v, None))
        pref = KIND_PREFERENCE.get(incident_type, ())
        best: tuple[tuple[int, int, int], dict[str, str]] | None = None
        for c in candidates:
            kind, new = c["kind"], c["to_version"]
            if new is None or new == c["from_version"]:
                continue
            verdict = _concentration(incident_type, stats.get(kind), new)
            if verdict == "most" and self._settled(r, kind, new, c["at"], start_ms):
                verdict = False
            if verdict is False or (verdict is None and c["at"] < start_ms - self.near_ms):
                continue
            target = self.last_healthy(route, kind, c["at"], exclude=(new,))
            if target is None and c["event_id"] is not None:
                old = c["from_version"]
                if old is not None and old != new and any(s[0] < c["at"] for s in r.healthy_spans):
                    target = old
            if target is None:
                continue
            rank = (0 if verdict else 1, pref.index(kind) if kind in pref else len(pref), -c["at"])
            if best is None or rank < best[0]:
                best = (rank, {"kind": kind, "to_version": target})
        return None if best is None else best[1]

    def _settled(self, r: _Route, kind: str, version: str, at: int, start_ms: int) -> bool:
        k = r.kinds.get(kind)
        if k is None:
            return False
        ran: int = sum(int(min(last, start_ms)) - int(max(first, at)) for v, first, last in k.healthy
                  if v == version and last > at and first < start_ms)
        return ran >= self.settle_ms

    # -- snapshots -------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-able state, for checkpoints."""
        return {
            "params": {"min_events": self.min_events, "near_ms": self.near_ms, "settle_ms": self.settle_ms,
                       "max_routes": self.max_routes},
            "routes": {
                name: {"kinds": {kn: k.to_dict() for kn, k in r.kinds.items()},
                       "healthy_spans": [list(s) for s in r.healthy_spans], "last_ms": r.last_ms}
                for name, r in self._routes.items()
            },
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot` (parameters stay as constructed)."""
        self._routes = {}
        for name, d in snap.get("routes", {}).items():
            r = _Route()
            r.kinds = {kn: _Kind.from_dict(kd) for kn, kd in d.get("kinds", {}).items()}
            r.healthy_spans = [[int(a), int(b)] for a, b in d.get("healthy_spans", [])][-TIMELINE_CAP:]
            r.last_ms = int(d.get("last_ms", 0))
            self._routes[name] = r

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> ChangeTracker:
        """A tracker with the snapshot's parameters and state."""
        t = cls(**snap.get("params", {}))
        t.restore(snap)
        return t

    def __repr__(self) -> str:
        return f"ChangeTracker(min_events={self.min_events}, routes={len(self._routes)})"


# -- helpers ---------------------------------------------------------------------------------
def _entry(at: int, kind: str, from_version: str | None, to_version: str | None,
           event_id: str | None) -> dict[str, Any]:
    return {"at": int(at), "kind": kind, "from_version": from_version, "to_version": to_version,
            "event_id": event_id}


def _append(k: _Kind, entry: dict[str, Any]) -> None:
    k.timeline.append(entry)
    del k.timeline[:-TIMELINE_CAP]


def _last_to(k: _Kind) -> str | None:
    return k.timeline[-1]["to_version"] if k.timeline else None


def _extend(runs: list[list[Any]], version: str, start: int, end: int) -> None:
    if runs and runs[-1][0] == version:
        runs[-1][2] = end
    else:
        runs.append([version, start, end])
        del runs[:-TIMELINE_CAP]


def _dominant(per: _Stats) -> str | None:
    """The version holding at least half of the kind's events (None if none does)."""
    total = sum(st[V_EVENTS] for st in per.values())
    if total <= 0:
        return None
    v = min((v for v in per if v != OTHER), key=lambda v: (-per[v][V_EVENTS], v), default=None)
    return v if v is not None and per[v][V_EVENTS] * 2 >= total else None


def _merge(windows: list[WindowAggregate]) -> dict[str, _Stats]:
    """Per kind and version, the counters summed over the windows."""
    out: dict[str, _Stats] = {}
    for w in windows:
        for kind, per in w.versions.items():
            dst = out.setdefault(kind, {})
            for v, st in per.items():
                acc = dst.setdefault(v, [0.0] * len(st))
                for i, x in enumerate(st):
                    acc[i] += x
    return out


def _concentration(incident_type: str, per: _Stats | None, new: str) -> str | bool | None:
    """``"rate"``/``"most"`` when the bad measure sits on ``new``, False when not, None when untestable."""
    verdicts = [_measure(m, per, new) for m in TYPE_MEASURES.get(incident_type, ("errors",))]
    for v in verdicts:
        if v:
            return v
    return False if False in verdicts else None


def _measure(name: str, per: _Stats | None, new: str) -> str | bool | None:
    if not per:
        return None
    num_i, den_i, ratio, margin, counts = _MEASURES[name]
    if den_i == V_REQUESTS and not any(st[V_REQUESTS] for st in per.values()):
        den_i = V_EVENTS
    total_num = sum(st[num_i] for st in per.values())
    if total_num <= 0:
        return None
    st = per.get(new)
    if st is None:
        return False
    new_num, new_den = st[num_i], st[den_i]
    old_num = total_num - new_num
    old_den = sum(s[den_i] for v, s in per.items() if v != new)
    if new_den < 3 or (counts and new_num < 3):
        return False
    if old_den >= (10 if counts else 3):
        new_rate, old_rate = new_num / new_den, old_num / old_den
        return "rate" if new_rate >= ratio * old_rate and new_rate - old_rate >= margin and new_rate > 0 \
            else False
    return "most" if new_num >= 0.8 * total_num else False
