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

>>> from detector.events import tool_identity, UsageEvent, ErrorEvent, ChangeEvent
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

from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from detector.events import CHANGE_KINDS, tool_identity
from detector.incidents.concentration import CANARY_SHARE, TYPE_MEASURES, enough, longer, share, sudden, worse
from detector.windows.aggregate import (
    OTHER,
    V_EVENTS,
    V_REQUESTS,
    V_REVIEWS,
    WindowAggregate,
)

__all__ = ["ChangeTracker", "KIND_PREFERENCE", "TIMELINE_CAP"]

#: Most timeline entries (and healthy runs) kept per route and kind.
TIMELINE_CAP = 16
#: Most distinct versions remembered per route and kind (least recently seen dropped).
SEEN_CAP = 32
#: Most change keys (kinds, one per tool identity) remembered per route.
KEY_CAP = 64
#: Events of healthy traffic an epoch needs to replace the baseline on its own.
BASE_MIN_EVENTS = 30
#: Counters per version in an epoch: 8 for healthy windows, then 8 for the others.
_N = 8
#: How long the last change of a kind, its new version still serving, remains a suspect (see explain), and
#: for which incident types (bad output drifts in slowly, as reviewers reject more and more).
STANDING_MS = 86_400_000
STANDING_TYPES = frozenset(("bad_output",))
#: Requests a change's new version must serve before an incident, without a hint of it, to be cleared of
#: it however soon after the change it began (see :meth:`ChangeTracker._verdict`).
SETTLE_REQUESTS = 100
#: Share of the traffic since the last change above which a version is part of a split, not new.
SPLIT_SHARE = 0.1
#: Change kinds most likely to cause each incident type, best first. The
#: other kinds can still explain an incident, ranked after these.
KIND_PREFERENCE: dict[str, tuple[str, ...]] = {
    "retrieval_failure": ("source_index",),
    "tool_failure": ("tool",),
    "bad_output": ("prompt", "model"),
    "performance": ("model", "config"),
    "cost": ("model", "config", "prompt"),
    "access_privacy": ("source_index", "config", "tool"),
}
_Stats = dict[str, list[float]]


def _key(kind: str, version: str | None) -> str:
    """Where a kind's versions are tracked: per tool identity for ``tool``, else per kind."""
    if kind == "tool" and version:
        return f"tool:{tool_identity(version)}"
    return kind


class _Kind:
    """What the tracker knows about one change kind (one tool, for ``tool``) on one route."""

    __slots__ = ("timeline", "healthy", "seen", "dominant", "epoch", "post", "base")

    def __init__(self) -> None:
        #: Changes, oldest first: {at, kind, from_version, to_version, event_id}.
        self.timeline: list[dict[str, Any]] = []
        #: Runs of healthy windows with one dominant version: [version, first_start, last_end].
        self.healthy: list[list[Any]] = []
        #: version -> end of the last window it was seen in.
        self.seen: dict[str, int] = {}
        #: The version that held most of the kind's events in the last window with enough.
        self.dominant: str | None = None
        #: Start of the current epoch (the last change of this key), epoch ms.
        self.epoch = 0
        #: version -> counters since the epoch began: healthy windows, then the others.
        self.post: _Stats = {}
        #: version -> counters of healthy windows before the epoch (the baseline).
        self.base: _Stats = {}

    def rotate(self, at: int) -> None:
        """A change: the healthy traffic so far becomes the baseline, a new epoch begins."""
        prev = {v: st[:_N] for v, st in self.post.items() if st[V_EVENTS] > 0}
        if sum(st[V_EVENTS] for st in prev.values()) >= BASE_MIN_EVENTS:
            self.base = prev
        else:
            for v, st in prev.items():
                _add(self.base.setdefault(v, [0.0] * _N), st)
            _cap(self.base)
        self.post = {}
        self.epoch = int(at)

    def to_dict(self) -> dict[str, Any]:
        return {"timeline": [dict(c) for c in self.timeline], "healthy": [list(h) for h in self.healthy],
                "seen": dict(self.seen), "dominant": self.dominant, "epoch": self.epoch,
                "post": {v: list(s) for v, s in self.post.items()},
                "base": {v: list(s) for v, s in self.base.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Kind:
        k = cls()
        k.timeline = [dict(c) for c in d.get("timeline", [])][-TIMELINE_CAP:]
        k.healthy = [list(h) for h in d.get("healthy", [])][-TIMELINE_CAP:]
        k.seen = {str(v): int(t) for v, t in d.get("seen", {}).items()}
        k.dominant = d.get("dominant")
        k.epoch = int(d.get("epoch", 0))
        k.post = {str(v): ([float(x) for x in s] + [0.0] * (2 * _N))[: 2 * _N] for v, s in d.get("post", {}).items()}
        k.base = {str(v): [float(x) for x in s][:_N] for v, s in d.get("base", {}).items()}
        _cap(k.post)
        _cap(k.base)
        return k


class _Route:
    __slots__ = ("kinds", "healthy_spans", "last_ms", "stamp")

    def __init__(self) -> None:
        #: Order of the last observation (the tracker forgets the least recently observed first).
        self.stamp = 0
        #: key (change kind, or ``tool:<identity>``) -> what is known about it.
        self.kinds: dict[str, _Kind] = {}
        #: Runs of consecutive healthy windows, flat: first_start, last_end of each, oldest first (an array of
        #: machine integers: a quiet route's windows are each a run of their own, TIMELINE_CAP of them).
        self.healthy_spans: array[int] = array("q")
        self.last_ms = 0

    def kind(self, name: str) -> _Kind:
        k = self.kinds.pop(name, None)
        if k is None:
            k = _Kind()
        self.kinds[name] = k  # most recently used last
        if len(self.kinds) > KEY_CAP:
            del self.kinds[next(iter(self.kinds))]
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
        A fully rolled-out version that then ran healthy this long, with a
        bad measure no worse than the old version's, is no longer blamed
        just because it carries all the traffic.
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
        self._stamp = 0
        #: Event time of the change behind the last target :meth:`explain` returned.
        self.explained_at = 0

    # -- learning -------------------------------------------------------------------
    def observe(self, window: WindowAggregate, healthy: bool) -> None:
        """Record one closed window of a route (call in time order)."""
        r = self._touch(window.route, window.end, 1)
        rotated: set[str] = set()
        for ch in sorted(window.changes, key=lambda c: (c.get("ts", 0), str(c.get("event_id")))):
            self._explicit(r, ch, rotated)
        enough = window.events >= self.min_events
        off = 0 if healthy else _N
        versions = window.versions
        for kind in sorted(versions):
            per_kind = versions[kind]
            if kind != "tool":  # one tracking key: the kind (no split to make)
                if per_kind:
                    self._observe_key(r, kind, kind, per_kind, window, healthy and enough, off, rotated)
                continue
            for key, per in sorted(_split(kind, per_kind).items()):
                self._observe_key(r, kind, key, per, window, healthy and enough, off, rotated)
        if healthy and enough:
            spans = r.healthy_spans
            if spans and spans[-1] >= window.start:
                spans[-1] = window.end
            else:
                spans.extend((window.start, window.end))
                if len(spans) > 2 * TIMELINE_CAP:
                    del spans[:-2 * TIMELINE_CAP]

    def _observe_key(self, r: _Route, kind: str, key: str, per: _Stats, window: WindowAggregate, good: bool,
                     off: int, rotated: set[str]) -> None:
        """:meth:`observe` of one tracking key's versions in a window (``good``: healthy, with enough events)."""
        k = r.kind(key)
        had_history = bool(k.seen)
        # reviews arrive minutes late carrying the versions of the request they judge:
        # only traffic (usage, latency, cost, error events) shows which version is live
        traffic = {v: st[V_EVENTS] - st[V_REVIEWS] for v, st in per.items()}
        total = sum(traffic.values())
        for v in (traffic if len(traffic) == 1 else sorted(traffic, key=lambda v: (-traffic[v], v))):
            if v == OTHER or traffic[v] <= 0:
                continue
            if v not in k.seen and had_history and _last_to(k) != v:
                _append(k, _entry(window.start, kind, k.dominant, v, None))
                _rotate_once(k, key, window.start, rotated)
            k.seen[v] = window.end
        if len(k.seen) > SEEN_CAP:
            oldest = sorted(k.seen.items(), key=lambda kv: (kv[1], kv[0]))
            for v, _ in oldest[: len(k.seen) - SEEN_CAP]:
                del k.seen[v]
        dom = _dominant_traffic(traffic) if total >= self.min_events else None
        if dom is not None:
            if k.dominant is not None and dom != k.dominant and _last_to(k) != dom \
                    and not _splitting(k, dom):
                _append(k, _entry(window.start, kind, k.dominant, dom, None))
                _rotate_once(k, key, window.start, rotated)
            k.dominant = dom
            if good:
                _extend(k.healthy, dom, window.start, window.end)
        post = k.post
        for v, st in per.items():
            if v != OTHER:
                acc = post.get(v)
                if acc is None:
                    acc = post[v] = [0.0] * (2 * _N)
                for i in range(_N):
                    acc[off + i] += st[i]
        _cap(post)

    def observe_empty(self, route: str, end: int, count: int) -> None:
        """:meth:`observe` of ``count`` empty windows of a route, the last ending at ``end``, in one step."""
        self._touch(route, end, count)

    def _touch(self, route: str, end: int, windows: int) -> _Route:
        """The route's timeline, as most recently observed (``windows`` of it, the last ending at ``end``)."""
        r = self._routes.pop(route, None) or _Route()
        self._routes[route] = r  # most recently observed last
        self._stamp += windows
        r.stamp = self._stamp
        if len(self._routes) > self.max_routes:
            del self._routes[next(iter(self._routes))]
        r.last_ms = max(r.last_ms, end)
        return r

    def _explicit(self, r: _Route, ch: dict[str, Any], rotated: set[str]) -> None:
        kind = ch.get("kind")
        if kind not in CHANGE_KINDS:
            return
        key = _key(kind, ch.get("to_version") or ch.get("from_version"))
        k = r.kind(key)
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
            _rotate_once(k, key, at, rotated)

    def forget(self, route: str) -> None:
        """Drop everything known about a route (it was evicted)."""
        self._routes.pop(route, None)

    # -- queries ------------------------------------------------------------------------
    def in_use(self, route: str, within_ms: int = 3_600_000, limit: int = 5) -> dict[str, list[str]]:
        """Versions of each kind the route's traffic carried within ``within_ms`` of the last time it carried
        any, the dominant one first, then the most recently seen (the route inventory).

        >>> from detector.windows.aggregate import WindowAggregate
        >>> from detector.events import UsageEvent
        >>> t = ChangeTracker(min_events=1)
        >>> w = WindowAggregate("r", 0, 60_000)
        >>> w.add(UsageEvent(event_id="a", ts=1, route="r", model="m1", prompt_version="p3"))
        >>> t.observe(w, healthy=True)
        >>> t.in_use("r")
        {'model': ['m1'], 'prompt': ['p3']}
        """
        r = self._routes.get(route)
        if r is None:
            return {}
        out: dict[str, list[str]] = {}
        newest = max((t for k in r.kinds.values() for t in k.seen.values()), default=0)
        for key, k in sorted(r.kinds.items()):
            recent = sorted((t, v) for v, t in k.seen.items() if t >= newest - within_ms)
            names = [v for _, v in reversed(recent)]
            if k.dominant in names:
                names.remove(k.dominant)
                names.insert(0, k.dominant)
            kind = key.split(":", 1)[0]  # each tool is tracked apart ("tool:<identity>"): listed together
            out.setdefault(kind, []).extend(n for n in names if n not in out[kind])
        return {kind: names[:limit] for kind, names in out.items() if names}

    def recent_changes(self, route: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        """Changes (explicit and inferred) with ``since_ms <= at < until_ms``, oldest first.

        Each is ``{at, kind, from_version, to_version, event_id}``; ``at`` is
        epoch ms, ``event_id`` None for a change inferred from version fields.
        """
        return [c for _, c in self._recent(route, since_ms, until_ms)]

    def _recent(self, route: str, since_ms: int, until_ms: int) -> list[tuple[str, dict[str, Any]]]:
        r = self._routes.get(route)
        if r is None:
            return []
        out = [(key, dict(c)) for key, k in r.kinds.items() for c in k.timeline
               if since_ms <= c["at"] < until_ms]
        out.sort(key=lambda kc: (kc[1]["at"], kc[1]["kind"], str(kc[1]["to_version"]), kc[0]))
        return out

    def last_healthy(self, route: str, kind: str, before_ms: int, exclude: Iterable[str] = (),
                     tool: str | None = None) -> str | None:
        """The last version of ``kind`` seen dominant in a healthy window starting before ``before_ms``.

        For ``kind="tool"`` pass ``tool`` (a tool identity or any of its versions):
        tool versions are tracked per tool.
        """
        r = self._routes.get(route)
        k = r.kinds.get(_key(kind, tool)) if r is not None else None
        return None if k is None else _last_healthy(k, before_ms, set(exclude))

    def explain(self, route: str, incident_type: str, start_ms: int, anomalous: list[WindowAggregate],
                lookback_ms: int) -> dict[str, str] | None:
        """The rollback target for an incident that a change explains, else None.

        Candidates are the changes at ``start - lookback <= at < end of the
        second anomalous window`` (also explicit changes and never-seen
        versions in ``anomalous`` itself, should it not have been observed
        yet). Tool versions are tracked per tool identity (the part of the
        ``tool`` value before ``@``), so a route calling several tools does
        not see a "change" each time another tool dominates.

        A candidate explains the incident when the type's bad measure
        (errors per request; bad reviews per review for ``bad_output``;
        mean latency, then errors, for ``performance``; cost per request for
        ``cost``), counted on the new version since the change (the key's
        current epoch, anomalous windows included), is clearly worse than
        the old versions': their traffic over the same epoch when they
        still carry enough (a canary), else their healthy traffic before
        the change (a full rollout). "Clearly worse": for rates at least 2x,
        5 points higher, >= 2 bad events and a one-sided Poisson p-value
        below :data:`P_VALUE`; for latency and cost a mean 1.5x higher.
        When the events name a tool but not its version, the tool itself is
        compared with its traffic before the change. A full rollout that
        then ran healthy for ``settle_ms``, with its healthy traffic no
        worse than the old versions', is not blamed (for ``bad_output``, not even
        a hint worse: :func:`~detector.incidents.concentration.worse` with ``hint``).

        For ``bad_output``, the last change of each kind, while its new version
        still serves, remains a candidate for :data:`STANDING_MS` before the start, if it
        tests worse, and was already worse in the windows that still counted
        as healthy; it ranks after every change within the lookback, and a
        revert (to a version that ran healthy before) is no such suspect:
        review rejections that drift up for hours after a prompt change are
        laid at its door however late they are detected, but a fault that
        strikes a day after a release is not.
        :attr:`explained_at` is the time of the change behind the last target.

        A change whose kind the events do not carry (e.g. ``route``) cannot
        be tested; it explains the incident only within ``near_ms`` of the
        start, and ranks after tested candidates. Among candidates: tested
        first, then the kind most relevant to the type, then the latest.

        The target is the last version (of the same tool, for ``tool``) seen
        healthy on the route before the change (else, for an explicit change
        made while the route was healthy, its ``from_version``), never the
        change's new version.
        """
        # the onset is known to a window or two (the windows just before a firing that hold a few of its
        # errors count as its start): a change in the incident's first two windows is still a candidate
        ends = sorted(w.end for w in anomalous)
        first_end = ends[min(1, len(ends) - 1)] if ends else start_ms + 1
        since = start_ms - lookback_ms
        r = self._routes.get(route) or _Route()
        unseen = [w for w in anomalous if w.end > r.last_ms]  # not observed yet
        candidates = self._recent(route, since, first_end)
        # the last change of each kind whose new version still serves stays a suspect for a day, however
        # long the evidence took to gather (a slow drift of review rejections); it must test worse
        standing = set()
        for key, kd in (r.kinds.items() if incident_type in STANDING_TYPES else ()):
            last = kd.timeline[-1] if kd.timeline else None
            if (last is not None and start_ms - STANDING_MS <= last["at"] < since and last["to_version"] == kd.dominant
                    and not any(h[0] == last["to_version"] and h[2] <= last["at"] for h in kd.healthy)):
                # (a version that ran healthy before the change, a revert, is no new suspect)
                candidates.append((key, dict(last)))
                standing.add(id(candidates[-1][1]))
        known = {c["event_id"] for _, c in candidates if c["event_id"] is not None}
        known_to = {(key, c["to_version"]) for key, c in candidates}
        for w in sorted(anomalous, key=lambda w: w.start):
            for ch in w.changes:
                at = int(ch.get("ts", w.start))
                eid, kind = ch.get("event_id"), ch.get("kind")
                if since <= at < first_end and eid not in known and kind in CHANGE_KINDS:
                    old, new = ch.get("from_version"), ch.get("to_version")
                    key = _key(kind, new or old)
                    known.add(eid)
                    known_to.add((key, new))
                    candidates.append((key, _entry(at, kind, old, new, eid)))
            if w not in unseen:
                continue
            for kind, per_kind in w.versions.items():
                for key, per in _split(kind, per_kind).items():
                    k = r.kinds.get(key)
                    if k is None or not k.seen:
                        continue
                    for v in per:
                        if v != OTHER and v not in k.seen and (key, v) not in known_to and since <= w.start:
                            known_to.add((key, v))
                            candidates.append((key, _entry(w.start, kind, k.dominant, v, None)))
        pref = KIND_PREFERENCE.get(incident_type, ())
        best: tuple[tuple[int, int, int, int], dict[str, str]] | None = None
        for key, c in candidates:
            kind, new = c["kind"], c["to_version"]
            if new is None or new == c["from_version"]:
                continue
            verdict = self._verdict(r, key, c, incident_type, unseen, start_ms, anomalous)
            if verdict is False or (verdict is None and c["at"] < start_ms - self.near_ms):
                continue
            if id(c) in standing and not (verdict and self._drifted(r, key, c, incident_type)):
                continue
            target = self._target(r, key, c)
            if target is None:
                continue
            rank = (1 if id(c) in standing else 0, 0 if verdict else 1, pref.index(kind) if kind in pref else len(pref),
                    -c["at"])
            if best is None or rank < best[0]:
                best = (rank, {"kind": kind, "to_version": target})
                self.explained_at = int(c["at"])
        return None if best is None else best[1]

    def _verdict(self, r: _Route, key: str, c: dict[str, Any], incident_type: str,
                 unseen: list[WindowAggregate], start_ms: int, anomalous: Sequence[WindowAggregate]) -> bool | None:
        """True when the bad measure sits on the change's new version, False when not, None: untestable.

        ``unseen``: the incident's windows not observed yet; ``anomalous``: all of them (those observed as
        healthy before it fired are no part of the new version's traffic before the incident)."""
        k = r.kinds.get(key)
        kind, new = c["kind"], str(c["to_version"])
        post = {v: list(st) for v, st in k.post.items()} if k is not None else {}
        for w in unseen:
            for v, st in _split(kind, w.versions.get(kind, {})).get(key, {}).items():
                acc = post.setdefault(v, [0.0] * (2 * _N))
                for i in range(_N):
                    acc[_N + i] += st[i]
        base = k.base if k is not None else {}
        if new not in post:
            ident = tool_identity(new)
            if kind == "tool" and ident != new and ident in post and not any("@" in v for v in post):
                new = ident  # the events name the tool, not its version: test the tool itself
            else:
                return False if any(st[V_EVENTS] + st[_N + V_EVENTS] for st in post.values()) else None
        bare = new not in (c["to_version"], None)
        cur = post[new]
        new_all = [cur[i] + cur[_N + i] for i in range(_N)]
        # the new version's traffic before the incident: its healthy windows less the incident's own first
        # windows, observed healthy before it fired (its lead, and a first anomalous window held for persistence)
        before = cur[:_N]
        spans = r.healthy_spans
        for w in anomalous:
            if w.end <= r.last_ms and any(spans[i] <= w.start and w.end <= spans[i + 1]
                                          for i in range(len(spans) - 2, -1, -2)):
                early = _split(kind, w.versions.get(kind, {})).get(key, {}).get(new)
                if early is not None:
                    before = [max(0.0, before[i] - early[i]) for i in range(_N)]
        old_now = _sum(([st[i] + st[_N + i] for i in range(_N)] for v, st in post.items() if v != new))
        old_before = _sum(st for v, st in base.items() if v != new or bare)
        if kind == "prompt" and incident_type == "performance":
            # a prompt slows requests down (or makes them time out) only by making them longer: a new prompt
            # version whose requests cost no more than the old one's did not cause a slowdown or timeouts on
            # it (the provider or the model did, e.g. an outage that began just after a prompt release)
            old = old_now if enough("cost", old_now) and share("cost", old_now, new_all) >= CANARY_SHARE \
                else old_before
            if longer(new_all, old) is False:
                return False
        verdicts: list[bool | None] = []
        for m in TYPE_MEASURES.get(incident_type, ("errors",)):
            # compare with the old version's concurrent traffic only in a real split (a canary); the
            # few in-flight requests of a full rollout are noise: compare with its healthy past
            old = old_now if enough(m, old_now) and share(m, old_now, new_all) >= CANARY_SHARE else old_before
            verdict = worse(m, new_all, old)
            # (for a slow type, "no worse" means not even a hint of it: reviews that drift up for an hour
            # after a prompt change are too few to be clearly worse before the incident opens)
            if verdict and self._settled(k, new, c["at"], start_ms) and not worse(
                    m, cur[:_N], old, hint=incident_type in STANDING_TYPES):
                verdict = False  # ran healthy long enough, and no worse while healthy
            elif verdict and incident_type not in STANDING_TYPES and (
                    (before[V_REQUESTS] >= SETTLE_REQUESTS and not worse(m, before, old, hint=True))
                    or sudden(m, before, cur[_N:])):
                # served a hundred requests before the incident without a hint of it, or clearly better
                # than during it: a bad prompt, config, model, tool or index fails from its first requests
                # (an outage that strikes minutes after an unrelated release is not the release's doing);
                # reviewers' rejections drift up for hours
                verdict = False
            verdicts.append(verdict)
            if verdict:
                return True
        return False if False in verdicts else None

    def _drifted(self, r: _Route, key: str, c: dict[str, Any], incident_type: str) -> bool:
        """Whether the change's new version was already worse than the old ones' healthy past in the
        windows that still counted as healthy (a drift that crept up before it was detected), not only in
        the incident's own windows (a fault that struck long after the change)."""
        k = r.kinds.get(key)
        cur = k.post.get(str(c["to_version"])) if k is not None else None
        if k is None or cur is None:
            return False
        old = _sum(st for v, st in k.base.items() if v != c["to_version"])
        return any(worse(m, cur[:_N], old) for m in TYPE_MEASURES.get(incident_type, ("errors",)))

    def _target(self, r: _Route, key: str, c: dict[str, Any]) -> str | None:
        new, old = c["to_version"], c["from_version"]
        k = r.kinds.get(key)
        target = _last_healthy(k, c["at"], {new}) if k is not None else None
        if target is not None and c["kind"] == "tool" and "@" not in target and "@" in str(new):
            target = None  # the events carry the tool's name only: its version comes from the change
        if target is None and c["event_id"] is not None:
            if old is not None and old != new and any(first < c["at"] for first in r.healthy_spans[::2]):
                target = old
        return None if target is None else str(target)

    def _settled(self, k: _Kind | None, version: str, at: int, start_ms: int) -> bool:
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
            "stamp": self._stamp,
            "routes": {
                name: {"kinds": {kn: k.to_dict() for kn, k in r.kinds.items()},
                       "healthy_spans": _spans(r.healthy_spans), "last_ms": r.last_ms,
                       "stamp": r.stamp}
                for name, r in self._routes.items()
            },
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot` (parameters stay as constructed)."""
        self._routes = {}
        for name, d in snap.get("routes", {}).items():
            r = _Route()
            r.kinds = {kn: _Kind.from_dict(kd) for kn, kd in list(d.get("kinds", {}).items())[-KEY_CAP:]}
            r.healthy_spans = array("q", [int(x) for span in d.get("healthy_spans", [])[-TIMELINE_CAP:]
                                          for x in span[:2]])
            r.last_ms = int(d.get("last_ms", 0))
            r.stamp = int(d.get("stamp", 0))
            self._routes[name] = r
        if "stamp" in snap:
            self._stamp = int(snap["stamp"])

    # -- per-route checkpoints ---------------------------------------------------------------------
    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state, JSON-able, with its last-observed stamp (None when not remembered)."""
        r = self._routes.get(route)
        if r is None:
            return None
        return {"kinds": {kn: k.to_dict() for kn, k in r.kinds.items()},
                "healthy_spans": _spans(r.healthy_spans), "last_ms": r.last_ms, "stamp": r.stamp}

    def global_state(self) -> dict[str, Any]:
        """Parameters and the stamp counter: what is not per route."""
        return {"params": {"min_events": self.min_events, "near_ms": self.near_ms, "settle_ms": self.settle_ms,
                           "max_routes": self.max_routes}, "stamp": self._stamp}

    def restore_parts(self, glob: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None:
        """Load :meth:`global_state` and :meth:`route_state` outputs, in the original LRU order."""
        self.restore({"stamp": int(glob.get("stamp", 0)),
                      "routes": dict(sorted(routes.items(), key=lambda kv: (kv[1].get("stamp", 0), kv[0])))})

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


def _spans(flat: array[int]) -> list[list[int]]:
    """Healthy spans as a checkpoint holds them: [first_start, last_end] each.

    >>> _spans(array("q", [0, 120_000, 300_000, 360_000]))
    [[0, 120000], [300000, 360000]]
    """
    return [[flat[i], flat[i + 1]] for i in range(0, len(flat) - 1, 2)]


def _append(k: _Kind, entry: dict[str, Any]) -> None:
    k.timeline.append(entry)
    del k.timeline[:-TIMELINE_CAP]


def _rotate_once(k: _Kind, key: str, at: int, rotated: set[str]) -> None:
    """Begin a new epoch for ``key`` at ``at``, at most once per window."""
    if key not in rotated:
        rotated.add(key)
        k.rotate(at)


def _splitting(k: _Kind, version: str) -> bool:
    """Whether ``version`` has carried a real share of the traffic since the last change (a canary or
    split): its becoming the majority of one window is then no change (a quiet route's majority
    flips back and forth while two versions serve)."""
    total = 0.0
    mine = 0.0
    for v, st in k.post.items():
        t = st[V_EVENTS] - st[V_REVIEWS] + st[_N + V_EVENTS] - st[_N + V_REVIEWS]
        total += t
        if v == version:
            mine = t
    return total > 0 and mine >= SPLIT_SHARE * total


def _last_to(k: _Kind) -> str | None:
    return k.timeline[-1]["to_version"] if k.timeline else None


def _last_healthy(k: _Kind, before_ms: int, skip: set[str]) -> str | None:
    runs = k.healthy
    for i in range(len(runs) - 1, -1, -1):  # newest first (an index: mypyc cannot unpack a list of Any)
        version, first = runs[i][0], runs[i][1]
        if first < before_ms and version not in skip:
            return str(version)
    return None


def _extend(runs: list[list[Any]], version: str, start: int, end: int) -> None:
    if runs and runs[-1][0] == version:
        runs[-1][2] = end
    else:
        runs.append([version, start, end])
        del runs[:-TIMELINE_CAP]


def _split(kind: str, per: _Stats) -> dict[str, _Stats]:
    """A window's versions of ``kind`` by tracking key: per tool identity for ``tool``."""
    if kind != "tool":
        return {kind: per} if per else {}
    out: dict[str, _Stats] = {}
    for v, st in per.items():
        if v != OTHER:
            out.setdefault(_key(kind, v), {})[v] = st
    return out


def _add(acc: list[float], st: list[float]) -> None:
    for i, x in enumerate(st[: len(acc)]):
        acc[i] += x


def _sum(stats: Iterable[list[float]]) -> list[float]:
    out = [0.0] * _N
    for st in stats:
        _add(out, st)
    return out


def _cap(stats: _Stats) -> None:
    """Keep the :data:`SEEN_CAP` versions with the most events."""
    if len(stats) > SEEN_CAP:
        for v in sorted(stats, key=lambda v: (stats[v][V_EVENTS] + (stats[v][_N + V_EVENTS]
                                                                       if len(stats[v]) > _N else 0), v)):
            if len(stats) <= SEEN_CAP:
                break
            del stats[v]


def _dominant_traffic(traffic: dict[str, float]) -> str | None:
    """The version holding at least half of the kind's traffic events (None if none does)."""
    if len(traffic) == 1:  # the common case: one version in the window
        for only, t in traffic.items():
            return only if only != OTHER and t > 0 else None
    total = sum(traffic.values())
    if total <= 0:
        return None
    v = min((v for v in traffic if v != OTHER), key=lambda v: (-traffic[v], v), default=None)
    return v if v is not None and traffic[v] * 2 >= total else None
