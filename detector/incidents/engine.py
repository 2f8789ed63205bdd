"""The incident engine: firings in, incident events (SPEC section 2) out.

One open incident per (route, incident_type). Firings of a type attach to
its open incident (``updated``; a rise in severity is ``escalated``); an
incident resolves once its route has gone ``resolve_after_s`` of event
time without a firing of its type. ``acknowledged`` and ``contained``
come from operator commands (:mod:`detector.incidents.commands`).
Silences suppress notification, not tracking; every ``opened`` that was
sent is followed by a ``resolved``, also for routes that go quiet or are
evicted. Decisions read event time only, so replay and the service agree.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from detector.config import Config, RouteConfig
from detector.detectors.firing import Firing, iso
from detector.events import tool_identity
from detector.incidents.changes import STANDING_TYPES, ChangeTracker
from detector.incidents.commands import Command
from detector.incidents.containment import recommend
from detector.incidents.evidence import build_evidence
from detector.incidents.groups import HINT_MIN, HINT_P, Cause, GroupBook, ProviderBoard
from detector.incidents.redact import mask
from detector.incidents.summary import summarize
from detector.incidents.triage import affected, bump, rank, severity
from detector.ingest.decode import parse_ts
from detector.windows.aggregate import OTHER, V_ERRORS, V_EVENTS, V_REVIEWS, WindowAggregate
from detector.windows.windower import EmptyRun, RouteEvicted

__all__ = ["IncidentEngine", "incident_id"]

Incident = dict[str, Any]
#: Anomalous windows kept per incident for evidence and change correlation.
WINDOW_CAP = 10
#: Windows before the firing one that may join an incident when they hold its errors.
LEAD_WINDOWS = 3
#: Signals counted in errors: their incidents' affected requests are the errors, not all traffic.
ERROR_SIGNALS = ("errors_", "slo_burn_rate", "guardrail_error_rate")
#: Runtime silences kept at once (the oldest go first).
MAX_RUNTIME_SILENCES = 1000
#: Resolved incident ids remembered, so a late command on one is recognised.
RESOLVED_MEMORY = 1000
#: A route's traffic gone this long (event time) is a confirmed stop; before, it may be a log shipper
#: flushing late, and the incident is at most medium (it is escalated once the stop lasts).
STOP_CONFIRM_MS = 15 * 60_000
#: Share of a kind's traffic at which one version carries all of it (the rest is in-flight noise).
ONE_VERSION = 0.9
#: The detector name of the rate tests' firings (their window_start is the onset of the excess).
RATE_TEST = "ProportionTest"
#: An incident of availability errors on one provider blames no change on its route until this long after it
#: opened: the first route of a provider's outage to fire sees the other routes' errors a minute or two later.
PROVIDER_WAIT_MS = 2 * 60_000
#: Types whose affected requests are specific events (errors, bad reviews).
COUNTED_TYPES = frozenset(("tool_failure", "access_privacy", "retrieval_failure", "bad_output"))


#: The fields of an incident's checkpoint besides its windows and tenants (every attribute of _Open).
_OPEN_FIELDS = ("route", "itype", "id", "started", "detected", "seq", "status", "severity", "signals",
                "aff_requests", "route_requests", "magnitude", "stopped", "subject", "rollback", "last_fire",
                "last_emit", "notified", "recurrence", "error_based", "pending_update", "versions_before", "strong",
                "cause", "group", "shared", "cause_at")

def incident_id(route: str, incident_type: str, started_ms: int) -> str:
    """Stable id: the same route, type and start always give the same id.

    >>> incident_id("support.draft", "bad_output", 0)
    'inc-3f4b46c414f0928f'
    """
    h = hashlib.sha256(f"{route}\x1f{incident_type}\x1f{started_ms}".encode()).hexdigest()
    return f"inc-{h[:16]}"


class _Open:
    """One incident being tracked."""

    def __init__(self, route: str, itype: str, started: int, detected: int):
        self.route = route
        self.itype = itype
        self.id = incident_id(route, itype, started)
        self.started = started
        self.detected = detected
        self.seq = 0
        self.status = "open"
        self.severity = "low"
        self.signals: dict[str, dict[str, Any]] = {}
        self.windows: list[WindowAggregate] = []
        self.aff_requests = 0
        self.route_requests = 0
        self.tenants: set[str] = set()
        self.magnitude = 1.0
        self.stopped = False
        self.subject: str | None = None
        self.rollback: dict[str, str] | None = None
        self.last_fire = detected
        self.last_emit = -1
        self.notified = False
        self.recurrence = False
        self.error_based = False
        self.pending_update = False
        self.versions_before: dict[str, list[str]] = {}
        #: Some firing of the incident was not weak (Firing.weak): only then may it rise above low.
        self.strong = False
        #: What the incident may share with other routes' incidents ([kind, value]), and its group id.
        self.cause: list[str] | None = None
        self.group: str | None = None
        #: Its cause fails on other routes at once: no change on this route explains it.
        self.shared = False
        #: Event time of the change its rollback undoes (kept in the evidence however old), or None.
        self.cause_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in _OPEN_FIELDS}
        d["windows"] = [w.to_dict() for w in self.windows]
        d["tenants"] = sorted(self.tenants)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _Open:
        o = cls(d["route"], d["itype"], d["started"], d["detected"])
        o.strong = True  # a checkpoint from before weak signals: as it was
        for k, v in d.items():
            if k in _OPEN_FIELDS:  # not a field of an older version (a compiled class holds only its own)
                setattr(o, k, v)
        o.windows = [WindowAggregate.from_dict(w) for w in d["windows"]]
        o.tenants = set(d["tenants"])
        return o


class IncidentEngine:
    """Implements the pipeline's IncidentStage.

    ``board`` and ``groups`` may be shared by the engines of one process (the service runs one per
    partition): a provider failing on routes of several partitions is then seen, and grouped, as one.
    """

    def __init__(self, config: Config, board: ProviderBoard | None = None, groups: GroupBook | None = None):
        self.config = config
        ic = config.incidents
        self.size_ms = config.windows.size_s * 1000
        self.resolve_ms = ic.resolve_after_s * 1000
        self.lookback_ms = ic.change_lookback_s * 1000
        self.update_ms = ic.update_interval_s * 1000
        self.heightened_ms = ic.heightened_s * 1000
        self.persistence = config.detectors.persistence
        self.open: dict[str, _Open] = {}  # key: route \x1f type
        self.heightened: dict[str, int] = {}  # route \x1f type -> until (event ms)
        #: route -> versions of its last healthy window with traffic (kind -> the first five, sorted): only
        #: these, not the window (read only; routes with the same versions share one value)
        self.before: dict[str, dict[str, list[str]]] = {}
        #: route -> its last closed windows, up to LEAD_WINDOWS, that hold errors or reviews, with none
        #: without them after (the only windows an incident's lead can take: see :meth:`_lead`); a list,
        #: as a deque's first block is ~600 bytes a route
        self._recent: dict[str, list[WindowAggregate]] = {}
        self.changes = ChangeTracker(max_routes=config.windows.max_routes)  # every route the windower holds
        self.board = board if board is not None else ProviderBoard()
        self.groups = groups if groups is not None else GroupBook()
        #: The name of the stream this engine reads (the service sets its topic/partition): routes of one
        #: feed going quiet together share it as their cause.
        self.feed = "telemetry"
        self._silences = [
            (s.route, _ms(s.start), _ms(s.end)) for s in config.silences
        ]
        #: Silences from operator commands: [glob, start ms, end ms].
        self.runtime_silences: list[list[Any]] = []
        #: Recently resolved incident ids -> route (for commands naming them).
        self._resolved_ids: dict[str, str] = {}

    # -- stage interface -------------------------------------------------------------
    def on_window(self, w: WindowAggregate, firings: Sequence[Firing]) -> list[Incident]:
        out: list[Incident] = []
        rc = self.config.route(w.route)
        by_type: dict[str, list[Firing]] = {}
        for f in firings:
            by_type.setdefault(f.incident_type, []).append(f)
        healthy = not firings
        self.changes.observe(w, healthy)
        if healthy and w.events:
            self.before[w.route] = _shared_versions(w)
        if w.providers:
            self.board.observe(w)
        for itype in sorted(by_type):
            out.extend(self._fire(w, rc, itype, by_type[itype]))
        ring = self._recent.get(w.route)
        if ring is None:
            ring = self._recent[w.route] = []
        if w.errors or w.reviews:
            ring.append(w)
            if len(ring) > LEAD_WINDOWS:
                del ring[0]
        elif ring:
            ring.clear()  # a lead stops at this window: none before it can join an incident
        for key in [k for k, o in self.open.items() if o.route == w.route and o.itype not in by_type]:
            o = self.open[key]
            if w.end - o.last_fire >= self.resolve_ms:
                out.extend(self._resolve(key, w.end, rc))
            elif self._silenced(o.route, w.end) is False and not o.notified:
                out.extend(self._notify_late(o, w.end, rc))
        return out

    def quiet(self, route: str) -> bool:
        """No incident is open on the route: its empty windows only feed the change tracker and the ring."""
        return not any(o.route == route for o in self.open.values())

    def on_empty_run(self, run: EmptyRun) -> None:
        """What :meth:`on_window` does with each empty window of a quiet route, in one step."""
        self.changes.observe_empty(run.route, run.end, run.count)
        ring = self._recent.get(run.route)
        if ring is None:
            self._recent[run.route] = []
        else:
            ring.clear()  # empty windows: no lead reaches past them

    def on_evict(self, evicted: RouteEvicted) -> list[Incident]:
        rc = self.config.route(evicted.route)
        out: list[Incident] = []
        for key in [k for k, o in self.open.items() if o.route == evicted.route]:
            out.extend(self._resolve(key, evicted.at_ms, rc))
        self.changes.forget(evicted.route)
        self.board.forget(evicted.route)
        self.before.pop(evicted.route, None)
        self._recent.pop(evicted.route, None)
        return out

    def on_command(self, cmd: Command) -> list[Incident]:
        """Apply an operator command (SPEC 2b); returns the incident messages it causes.

        ``acknowledge`` and ``contain`` move an open incident's status forward (never back: a
        repeated or out-of-order one emits nothing); ``resolve`` closes it as a normal resolve does
        (``resolved_at`` is the command's time, and the route is watched harder afterwards). Each
        message carries the command's ``by`` and its ``note``, masked (:func:`redact.mask`); a
        message's ``at`` is the command's, or the incident's last message time if the operator's
        clock is behind. An incident opened under a silence and not yet sent cannot be acknowledged
        or contained (nobody was told of it; the command is ignored); resolving it closes it
        without a message. ``silence`` and ``unsilence`` add and remove a runtime silence (a route
        glob, from ``at`` until ``until``; a new silence of the same glob replaces the old one) in
        :attr:`runtime_silences`, which behaves like one from the config: notification is
        suppressed, tracking is not. A command whose ``at`` is not an RFC 3339 time with an offset,
        or that names an incident not open here, does nothing.
        """
        at = parse_ts(cmd.at)
        if at is None:
            return []
        note = mask(cmd.note) if cmd.note else None
        if cmd.command in ("silence", "unsilence"):
            if cmd.route is None:
                return []
            # Only the glob's old silence goes: one already over by the operator's clock may still
            # cover event time that is behind it (a backlog); the list is capped instead.
            self.runtime_silences = [s for s in self.runtime_silences if s[0] != cmd.route]
            until = parse_ts(cmd.until) if cmd.until else None
            if cmd.command == "silence" and until is not None and until > at:
                self.runtime_silences.append([cmd.route, at, until])
                self.runtime_silences = self.runtime_silences[-MAX_RUNTIME_SILENCES:]
            return []
        for key, o in self.open.items():
            if o.id != cmd.incident_id:
                continue
            rc = self.config.route(o.route)
            if cmd.command == "resolve":
                return self._resolve(key, max(at, o.last_emit), rc, by=cmd.by, note=note)
            new_status = "acknowledged" if cmd.command == "acknowledge" else "contained"
            if rank_status(new_status) <= rank_status(o.status) or not o.notified:
                return []
            o.status = new_status
            # Operators' clocks are not event time: never stamp a message before the last one.
            return [self._emit(o, new_status, max(at, o.last_emit), rc, by=cmd.by, note=note)]
        return []

    def knows(self, incident_id: str) -> bool:
        """Whether the incident is open here or was resolved here recently."""
        return incident_id in self._resolved_ids or any(o.id == incident_id for o in self.open.values())

    def route_of(self, incident_id: str) -> str | None:
        """The route of an incident open or recently resolved here."""
        for o in self.open.values():
            if o.id == incident_id:
                return o.route
        return self._resolved_ids.get(incident_id)

    # -- lifecycle ----------------------------------------------------------------------
    def _fire(self, w: WindowAggregate, rc: RouteConfig, itype: str, firings: list[Firing]) -> list[Incident]:
        key = f"{w.route}\x1f{itype}"
        o = self.open.get(key)
        opened = o is None
        lead: list[WindowAggregate] = []
        if o is None:
            error_based = all(f.signal.startswith(ERROR_SIGNALS) for f in firings)
            # a rate test's window_start is already where its excess began (ProportionTest.onset); another
            # signal's first anomalous window came persistence - 1 windows before the one that fired
            held = (self.persistence - 1) * self.size_ms
            started = max(0, min(f.window_start - (0 if f.detector == RATE_TEST else held) for f in firings))
            onset = all(f.detector == RATE_TEST for f in firings)
            if error_based or itype in COUNTED_TYPES:
                # the windows just before, whose errors (or bad reviews) the rate test pooled (a window
                # without errors or reviews affects none: the ring keeps none before one); never before a
                # rate test's own onset (a route's usual errors just before it are no part of the excess)
                for pw in reversed(self._recent.get(w.route, ())):
                    if affected(itype, pw, error_based)[0] <= 0 or (onset and pw.start < started):
                        break
                    lead.insert(0, pw)
                if lead:
                    started = min(started, lead[0].start)
            o = self.open[key] = _Open(w.route, itype, started, w.end)
            o.error_based = error_based
            o.versions_before = self._versions_before(w.route)
            until = self.heightened.get(key)
            o.recurrence = until is not None and w.end <= until
        o.last_fire = w.end
        new_signals = False
        for f in firings:
            if f.signal not in o.signals:
                new_signals = True
            o.signals[f.signal] = f.entry()
            o.magnitude = max(o.magnitude, f.magnitude) if not opened else max(
                (x.magnitude for x in firings), default=1.0)
            if f.signal == "request_volume" and f.observed < f.baseline:
                o.stopped = True
            o.strong = o.strong or not f.weak
            if f.subject and (o.subject is None or itype == "tool_failure"):
                o.subject = f.subject
        held_only = not any(f.hit for f in firings)  # the excess has ended; the alarm holds on for a while
        for aw in [*lead, w]:
            if len(o.windows) < WINDOW_CAP:
                o.windows.append(aw)
            if held_only:
                continue  # its requests and tenants are no part of the blast radius
            n_aff, tenants = affected(itype, aw, o.error_based)
            o.aff_requests += n_aff
            o.route_requests += max(aw.requests, n_aff)
            if len(o.tenants) < 1000:
                o.tenants |= set(sorted(tenants)[: 1000 - len(o.tenants)])
        share = o.aff_requests / o.route_requests if o.route_requests else (1.0 if o.stopped else 0.0)
        sev = severity(itype, o.magnitude, share, len(o.tenants), rc, o.stopped)
        if o.recurrence:
            sev = bump(sev)
        if not o.strong:
            sev = "low"  # a drop on a kind of day (or a route) without history: no page at night for it
        elif o.stopped and w.end - o.started < STOP_CONFIRM_MS and rank(sev) > rank("medium"):
            sev = "medium"  # a stop this short may be a late log flush: escalated if it lasts
        target_before, group_before = o.rollback, self.groups.public(o.group)
        if o.group is None and len(o.windows) <= 3 + LEAD_WINDOWS:
            self._place(o, w)
        named = next((f.rollback for f in firings if f.rollback is not None), None)
        if named is not None and not o.shared:
            # a canary comparison names the old version itself: the change is known, and the
            # failing traffic is the new version's minority, so no majority check applies
            o.rollback = {"kind": named[0], "to_version": named[1]}
        # other routes on the same provider showing a hint of the same errors: a change on this route is
        # not blamed yet (the group may form in a minute or two; a rollback once sent cannot be unsent)
        # (a slowdown too: timeouts on the provider's other routes make this one's requests slow first);
        # errors of availability wait PROVIDER_WAIT_MS for the other routes' errors to show at all
        hint = (o.cause is not None and o.cause[0] == "provider" and not o.shared
                and (o.error_based and w.end - o.detected < PROVIDER_WAIT_MS
                     or self.board.elsewhere(o.cause[1], o.route, o.started - LEAD_WINDOWS * self.size_ms, w.end,
                                             p_value=HINT_P, min_errors=HINT_MIN)))
        # a slow type (reviews) is explained again while it lasts: its evidence on the new version gathers
        # for an hour after it opens, and a change that is not clearly to blame at first may be later
        if o.rollback is None and not o.shared and not hint and (len(o.windows) <= 3 + LEAD_WINDOWS
                                                                   or itype in STANDING_TYPES):
            target = self.changes.explain(w.route, itype, o.started, o.windows, self.lookback_ms)
            # never "roll back" to the version the anomalous traffic is already on (after a revert); a
            # canary's old version carries most of the traffic too, but the new one serves beside it
            if target is not None and not _all_on(o.windows, target["kind"], target["to_version"]):
                o.rollback = target
                o.cause_at = self.changes.explained_at
        silenced = self._silenced(w.route, w.end)
        if opened:
            o.severity = sev
            if silenced:
                return []
            return [self._emit(o, "opened", w.end, rc)]
        escalated = rank(sev) > rank(o.severity)
        o.severity = sev if escalated else o.severity
        material = escalated or new_signals or (o.rollback != target_before) or (
            self.groups.public(o.group) != group_before)
        o.pending_update = o.pending_update or material
        if silenced:
            return []
        if not o.notified:
            return self._notify_late(o, w.end, rc)
        if escalated:
            o.pending_update = False
            return [self._emit(o, "escalated", w.end, rc)]
        if o.pending_update and w.end - o.last_emit >= self.update_ms:
            o.pending_update = False
            return [self._emit(o, "updated", w.end, rc)]
        return []

    def _notify_late(self, o: _Open, at: int, rc: RouteConfig) -> list[Incident]:
        """A silence ended while the incident is still open: send its ``opened`` now.

        The ``opened`` carries everything learned during the silence, so nothing is left to update.
        """
        o.pending_update = False
        return [self._emit(o, "opened", at, rc)]

    def _place(self, o: _Open, w: WindowAggregate) -> None:
        """Find what the incident may share with other routes (SPEC 2a) and put it in its group.

        An error-based performance incident whose provider shows the same excess on other routes in
        the same windows (:meth:`ProviderBoard.elsewhere`), or that joins a group of two routes or
        more, is *shared*: a change on this route does not explain it, so no rollback is recommended
        (one recommended before is withdrawn), and neither is one on the other members that show
        errors of their own (a slowdown without any may still be its route's change).
        """
        cause = ("feed", self.feed) if o.stopped else _cause(o)
        if cause is None:
            return
        o.cause = list(cause)
        self.groups.expire(w.end)
        o.group = self.groups.join(o.id, o.route, cause, o.started)
        members = self.groups.members(o.group)
        if not (o.error_based and cause[0] in ("provider", "model")):
            return
        shared = len(set(members.values())) >= 2 or (
            cause[0] == "provider"
            and self.board.elsewhere(cause[1], o.route, o.started - LEAD_WINDOWS * self.size_ms, w.end))
        if not shared:
            return
        by_id = {m.id: m for m in self.open.values() if m.route in members.values()}
        for mid in members:
            m = by_id.get(mid)
            if m is None or m.shared or not any(sig.startswith(ERROR_SIGNALS) for sig in m.signals):
                continue  # (an error-based incident holds its opening error signals)
            m.shared = True
            m.rollback = None
            if m is not o:
                m.pending_update = True  # the group and the withdrawn rollback go out with its next update

    def _resolve(self, key: str, at: int, rc: RouteConfig, by: str | None = None,
                 note: str | None = None) -> list[Incident]:
        o = self.open.pop(key)
        if o.group is not None:
            self.groups.closed(o.id)
        self._resolved_ids[o.id] = o.route
        if len(self._resolved_ids) > RESOLVED_MEMORY:
            del self._resolved_ids[next(iter(self._resolved_ids))]
        self.heightened[key] = at + self.heightened_ms
        if len(self.heightened) > 10_000:
            for k in sorted(self.heightened, key=self.heightened.__getitem__)[:1000]:
                del self.heightened[k]
        if not o.notified:
            return []
        o.status = "resolved"
        return [self._emit(o, "resolved", at, rc, resolved_at=at, by=by, note=note)]

    def _silenced(self, route: str, at: int) -> bool:
        return any(fnmatch.fnmatchcase(route, pat) and start <= at < end
                   for pat, start, end in (*self._silences, *self.runtime_silences))

    # -- the message ----------------------------------------------------------------------
    def _emit(self, o: _Open, event: str, at: int, rc: RouteConfig,
              resolved_at: int | None = None, by: str | None = None, note: str | None = None) -> Incident:
        o.seq += 1
        o.notified = True
        o.last_emit = at
        if event == "opened":
            o.detected = at
        share = o.aff_requests / o.route_requests if o.route_requests else (1.0 if o.stopped else 0.0)
        tool = o.subject if o.itype == "tool_failure" else None
        recs = recommend(o.itype, o.route, rc, rollback=o.rollback, tool=tool, severity=o.severity,
                         shared=(o.cause[0], o.cause[1]) if o.shared and o.cause else None)
        since = o.started - self.lookback_ms
        if o.cause_at is not None and o.rollback is not None:
            since = min(since, o.cause_at)
        changes = self.changes.recent_changes(o.route, since, at)
        evidence = build_evidence(o.windows, o.versions_before, changes,
                                  start_ms=o.started, lookback_ms=o.started - since)
        blast = {"requests": int(o.aff_requests), "tenants": len(o.tenants),
                 "share": round(min(share, 1.0), 4)}
        inc: Incident = {
            "schema_version": "1",
            "event": event,
            "incident_id": o.id,
            "seq": o.seq,
            "route": o.route,
            "incident_type": o.itype,
            "severity": o.severity,
            "status": o.status if event != "resolved" else "resolved",
            "started_at": iso(o.started),
            "detected_at": iso(o.detected),
            "at": iso(at),
            "resolved_at": iso(resolved_at) if resolved_at is not None else None,
            "signals": [o.signals[k] for k in sorted(o.signals)],
            "blast_radius": blast,
            "evidence": evidence,
            "recommendations": recs,
            "owner": rc.owner,
            "escalation": rc.escalation,
        }
        inc["group"] = self.groups.public(o.group)
        inc["by"] = by
        inc["note"] = note
        inc["summary"] = summarize(
            inc, rc, recurrence=o.recurrence, stopped=o.stopped,
            next_update_s=None if event == "resolved" else self.update_ms // 1000,
        )
        return inc

    def _versions_before(self, route: str) -> dict[str, list[str]]:
        return dict(self.before.get(route, {}))

    # -- snapshots ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """All state, as a JSON-able value that shares nothing with the engine."""
        return {
            "open": copy.deepcopy({k: o.to_dict() for k, o in self.open.items()}),
            "heightened": dict(self.heightened),
            "before": {r: self._versions_before(r) for r in sorted(self.before)},
            "changes": self.changes.snapshot(),
            "recent": {r: [w.to_dict() for w in ring] for r, ring in self._recent.items()},
            "globals": self.global_state(with_resolved=True),
            "board": self.board.snapshot(),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output; ``snap`` is copied, never written to."""
        snap = copy.deepcopy(snap)
        self.open = {k: _Open.from_dict(v) for k, v in snap["open"].items()}
        self.heightened = dict(snap["heightened"])
        self.before = snap["before"]
        self.changes = ChangeTracker.from_snapshot(snap["changes"])
        self._recent = {r: [WindowAggregate.from_dict(w) for w in ws[-LEAD_WINDOWS:]]
                        for r, ws in snap.get("recent", {}).items()}
        self.restore_global(snap.get("globals", {}))
        self.board.restore(snap.get("board", {}))

    # -- per-route checkpoints --------------------------------------------------------------------
    def global_state(self, with_resolved: bool = False) -> dict[str, Any]:
        """State that belongs to no single route: runtime silences (and, for a whole snapshot, the
        recently resolved ids; per-route checkpoints keep those in each route's :meth:`route_state`)."""
        out: dict[str, Any] = {"runtime_silences": copy.deepcopy(self.runtime_silences),
                               "changes": self.changes.global_state(),
                               "groups": self.groups.snapshot(),
                               "board_recent": self.board.recent_state()}
        if with_resolved:
            out["resolved_ids"] = dict(self._resolved_ids)
        return out

    def restore_global(self, d: dict[str, Any]) -> None:
        """Load :meth:`global_state` output (the change tracker's part is loaded by :meth:`restore_parts`)."""
        self.runtime_silences = copy.deepcopy(d.get("runtime_silences", []))
        self._resolved_ids = dict(d.get("resolved_ids", {}))
        self.groups.restore(d.get("groups", {}))
        self.board.restore_recent(d.get("board_recent", {}))

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's incident state (None when the engine holds nothing of it)."""
        prefix = route + "\x1f"
        opened = [[k, o.to_dict()] for k, o in self.open.items() if o.route == route]
        heightened = {k: v for k, v in self.heightened.items() if k.startswith(prefix)}
        has_before = route in self.before
        ring = self._recent.get(route)
        changes = self.changes.route_state(route)
        providers = self.board.route_state(route)
        if (not opened and not heightened and not has_before and ring is None and changes is None
                and providers is None):
            return None
        return copy.deepcopy({
            "open": opened, "heightened": heightened,
            "before": self._versions_before(route) if has_before else None,
            "recent": [w.to_dict() for w in ring] if ring is not None else None,
            "changes": changes,
            "resolved": [i for i, r in self._resolved_ids.items() if r == route],
            "providers": providers,
        })

    def restore_parts(self, glob: dict[str, Any], routes: dict[str, dict[str, Any]]) -> None:
        """Load :meth:`global_state` and every route's :meth:`route_state` (a fresh engine)."""
        routes = copy.deepcopy(routes)
        self.open, self.heightened, self.before, self._recent = {}, {}, {}, {}
        self.restore_global(glob)
        params = {**glob.get("changes", {}).get("params", {}), "max_routes": self.config.windows.max_routes}
        self.changes = ChangeTracker(**params)  # the route cap follows this config (a reload may raise it)
        for route, d in routes.items():
            for iid in d.get("resolved", []):
                self._resolved_ids[iid] = route
            for key, od in d["open"]:
                self.open[key] = _Open.from_dict(od)
            if d.get("providers"):
                self.board.restore_route(route, d["providers"])
            self.heightened.update(d["heightened"])
            if d["before"] is not None:
                self.before[route] = d["before"]
            if d["recent"] is not None:
                self._recent[route] = [WindowAggregate.from_dict(w) for w in d["recent"][-LEAD_WINDOWS:]]
        self.changes.restore_parts(glob.get("changes", {}),
                                   {r: d["changes"] for r, d in routes.items() if d["changes"] is not None})


#: Versions-before values shared by the routes that hold the same (read only), at most SHARED_CAP of them.
_SHARED: dict[tuple[tuple[str, tuple[str, ...]], ...], dict[str, list[str]]] = {}
SHARED_CAP = 4096


def _shared_versions(w: WindowAggregate) -> dict[str, list[str]]:
    """The versions of a window, kind -> the first five sorted (what an incident's ``versions_before`` holds),
    as one value shared with every route whose last healthy window held the same (never changed in place).

    >>> from detector.events import UsageEvent
    >>> a, b = WindowAggregate("a", 0, 60_000), WindowAggregate("b", 0, 60_000)
    >>> for w in (a, b):
    ...     w.add(UsageEvent(event_id="1", ts=0.0, route=w.route, model="m1", prompt_version="p2"))
    >>> _shared_versions(a), _shared_versions(a) is _shared_versions(b)
    ({'prompt': ['p2'], 'model': ['m1']}, True)
    """
    value = {k: sorted(v)[:5] for k, v in w.versions.items()}
    key = tuple((k, tuple(vs)) for k, vs in value.items())
    held = _SHARED.get(key)
    if held is None:
        if len(_SHARED) >= SHARED_CAP:
            return value
        held = _SHARED[key] = value
    return held


_STATUS_RANK = {"open": 0, "acknowledged": 1, "contained": 2, "resolved": 3}


def rank_status(s: str) -> int:
    return _STATUS_RANK[s]


def _cause(o: _Open) -> Cause | None:
    """What the incident could share with incidents on other routes: for errors of availability, the
    provider carrying most of them (the model when the events name no provider); for latency, the
    provider carrying most requests; the tool of a tool failure; the source index of a retrieval
    failure. None when nothing carries a clear majority."""
    ws = o.windows
    if o.itype == "performance":  # (a stop's cause is its feed: see _place)
        per = _provider_counts(ws, 1 if o.error_based else 0)
        top = _majority(per, 0.6 if o.error_based else 0.8)
        if top is None and o.error_based and not any(per.values()):
            # the events name providers but none of the incident's windows holds an error (the rate test
            # pooled earlier ones): the provider carrying the route's requests
            top = _majority(_provider_counts(ws, 0), 0.8)
        if top is not None:
            return ("provider", top)
        if not per and o.error_based:
            model = _majority(_version_counts(ws, "model", V_ERRORS), 0.6)
            return ("model", model) if model is not None else None
        return None
    if o.itype == "tool_failure" and o.subject:
        return ("tool", tool_identity(o.subject))
    if o.itype == "retrieval_failure":
        idx_name = _majority(_version_counts(ws, "source_index", V_ERRORS), 0.6)
        return ("source_index", idx_name) if idx_name is not None else None
    return None


def _provider_counts(windows: Sequence[WindowAggregate], field: int) -> dict[str, float]:
    """Requests (``field`` 0) or availability errors (1) per provider across ``windows``."""
    out: dict[str, float] = {}
    for w in windows:
        for p, v in w.providers.items():
            out[p] = out.get(p, 0) + v[field]
    return out


def _version_counts(windows: Sequence[WindowAggregate], kind: str, field: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for w in windows:
        for v, st in w.versions.get(kind, {}).items():
            out[v] = out.get(v, 0) + st[field]
    return out


def _majority(counts: dict[str, float], share: float) -> str | None:
    """The key holding at least ``share`` of the total (None if none, or the total is 0)."""
    total = sum(counts.values())
    if total <= 0:
        return None
    best = max(sorted(counts), key=counts.__getitem__)
    return best if best != OTHER and counts[best] >= share * total else None


def _all_on(windows: Sequence[WindowAggregate], kind: str, version: str) -> bool:
    """Whether ``version`` carries (nearly) all traffic events (not reviews) of ``kind`` in ``windows``."""
    counts: dict[str, float] = {}
    for w in windows:
        for v, st in w.versions.get(kind, {}).items():
            counts[v] = counts.get(v, 0) + st[V_EVENTS] - st[V_REVIEWS]
    total = sum(counts.values())
    return total > 0 and counts.get(version, 0) >= ONE_VERSION * total


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
