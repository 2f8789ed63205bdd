"""Containment state per route (SPEC 2b ``ai.containment``, compacted, key = route).

A gateway reads this topic to learn the recommended operating mode of each
route that has or had an incident; staff read it to know whether a feature
is paused, draft-only, under review or restricted. Pure: no I/O, no clock.

How the record is made, from the latest message of each open incident of
the route (:func:`containment_record`):

- **mode**: each open incident contributes the mode of its *first*
  recommendation, the one that stops the problem spreading (containment
  lists are in priority order, DOMAIN.md: contain first); the route's mode
  is the most restrictive of these: ``paused`` (``pause_feature``) over
  ``draft_only`` over ``manual_review`` over ``restricted`` (any other
  action: ``rollback``, ``disable_tool``, ``narrow_sources``,
  ``rate_limit``, ``failover_route``). Later actions of a list are
  fallbacks, not the mode: a cost incident recommends a rate limit first
  and pausing only if that is not enough, so its route is ``restricted``,
  not ``paused``. ``normal`` when the route has no open incident (or its
  incidents recommend nothing).
- **auto_applicable does not choose the mode.** The mode is what is
  recommended, whether or not a machine may apply it (by default no action
  is automatic, and staff must still be told the route should be paused).
  Which part a gateway may apply by itself is in ``actions``: each keeps
  its ``auto_applicable``. ``actions[0]`` is always the action that set the
  mode, so a gateway applies ``mode`` automatically only when
  ``actions[0]["auto_applicable"]`` is true, and otherwise applies the
  auto-applicable actions it finds further down, if any.
- **actions**: every recommendation of the open incidents, the same action
  and target once, in priority order: by position in its incident's list,
  then the more restrictive mode first, then the more severe incident, then
  incident id (so the order is deterministic).
- **open_incidents**: their ids, sorted; **updated_at**: the ``at`` of the
  message that changed the record.

>>> t = ContainmentTracker()
>>> rec = t.observe({"event": "opened", "incident_id": "inc-1", "route": "r", "status": "open", "at": "T1",
...     "severity": "high",
...     "recommendations": [{"action": "draft_only", "target": None, "rationale": "x", "auto_applicable": True}]})
>>> rec["mode"], rec["open_incidents"]
('draft_only', ['inc-1'])
>>> t.observe({"event": "acknowledged", "incident_id": "inc-1", "route": "r", "status": "acknowledged",
...     "at": "T2", "severity": "high", "recommendations": rec["actions"]}) is None  # nothing changed
True
>>> t.observe({"event": "resolved", "incident_id": "inc-1", "route": "r", "status": "resolved", "at": "T3",
...     "recommendations": []})["mode"]
'normal'
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["containment_record", "mode_of", "ContainmentTracker", "MODE_OF_ACTION", "MODES"]

Incident = dict[str, Any]

#: Actions that set a mode of their own; every other action restricts the route.
MODE_OF_ACTION = {"pause_feature": "paused", "draft_only": "draft_only", "manual_review": "manual_review"}
#: Modes from least to most restrictive.
MODES: tuple[str, ...] = ("normal", "restricted", "manual_review", "draft_only", "paused")
_RANK = {m: i for i, m in enumerate(MODES)}
_SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def mode_of(action: str) -> str:
    """The operating mode one action puts a route in.

    >>> mode_of("pause_feature"), mode_of("manual_review"), mode_of("rollback")
    ('paused', 'manual_review', 'restricted')
    """
    return MODE_OF_ACTION.get(action, "restricted")


def containment_record(route: str, open_incidents: Sequence[Incident], at: str) -> dict[str, Any]:
    """The SPEC 2b record for ``route`` from the latest message of each of its open incidents.

    Each incident needs ``incident_id`` and ``recommendations`` (``severity`` orders ties).

    >>> def rec(action, target=None, auto=False):
    ...     return {"action": action, "target": target, "rationale": "", "auto_applicable": auto}
    >>> cost = {"incident_id": "inc-a", "severity": "medium",
    ...         "recommendations": [rec("rate_limit", auto=True), rec("pause_feature")]}
    >>> r = containment_record("chat", [cost], "2026-12-01T10:00:00Z")
    >>> r["mode"], [(a["action"], a["auto_applicable"]) for a in r["actions"]]
    ('restricted', [('rate_limit', True), ('pause_feature', False)])
    >>> quality = {"incident_id": "inc-b", "severity": "high",
    ...            "recommendations": [rec("draft_only"), rec("manual_review")]}
    >>> r = containment_record("chat", [cost, quality], "2026-12-01T10:05:00Z")
    >>> r["mode"], r["open_incidents"], [a["action"] for a in r["actions"]]
    ('draft_only', ['inc-a', 'inc-b'], ['draft_only', 'rate_limit', 'pause_feature', 'manual_review'])
    >>> containment_record("chat", [], "2026-12-01T11:00:00Z")["mode"]
    'normal'
    """
    ranked: list[tuple[tuple[int, int, int, str], dict[str, Any]]] = []
    mode = "normal"
    for inc in open_incidents:
        iid = str(inc["incident_id"])
        sev = -_SEVERITY.get(str(inc.get("severity")), 0)
        for pos, r in enumerate(inc.get("recommendations") or ()):
            m = mode_of(str(r["action"]))
            if pos == 0 and _RANK[m] > _RANK[mode]:
                mode = m
            ranked.append(((pos, -_RANK[m], sev, iid), r))
    actions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _, r in sorted(ranked, key=lambda kv: kv[0]):
        key = json.dumps([r["action"], r.get("target")], sort_keys=True)
        if key not in seen:
            seen.add(key)
            actions.append(copy.deepcopy(r))
    return {"route": route, "mode": mode, "open_incidents": sorted(str(i["incident_id"]) for i in open_incidents),
            "actions": actions, "updated_at": at}


class ContainmentTracker:
    """Follows the incident messages of a stream; says when a route's containment record changes.

    Feed it every incident message emitted (in order). It keeps, per route, the latest
    message of each open incident (only its id, severity and recommendations) and the
    last record it returned. State is JSON-able, per route (:meth:`route_state`,
    :meth:`restore_route`) or whole (:meth:`snapshot`, :meth:`restore`).
    """

    def __init__(self) -> None:
        #: route -> incident_id -> what the record needs of the incident's latest message
        self._open: dict[str, dict[str, Incident]] = {}
        #: route -> the last record returned
        self._last: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def observe(self, incident: Incident) -> dict[str, Any] | None:
        """The route's new record when its mode, open incidents or actions changed, else None.

        Actions count as well as the mode and the open set: a gateway must not keep applying
        a rollback target that an update replaced. A route's first record is always returned.
        """
        route = str(incident["route"])
        held = self._open.setdefault(route, {})
        iid = str(incident["incident_id"])
        if incident["event"] == "resolved" or incident.get("status") == "resolved":
            held.pop(iid, None)
        else:
            held[iid] = {"incident_id": iid, "severity": incident.get("severity"),
                         "recommendations": copy.deepcopy(incident.get("recommendations") or [])}
        if not held:
            del self._open[route]
        rec = containment_record(route, list(held.values()), str(incident["at"]))
        last = self._last.get(route)
        if last is not None and _same(last, rec):
            return None
        self._last[route] = rec
        self._dirty.add(route)
        return copy.deepcopy(rec)

    def record(self, route: str) -> dict[str, Any] | None:
        """The last record returned for ``route`` (None if it never had an incident here)."""
        last = self._last.get(route)
        return copy.deepcopy(last) if last is not None else None

    def take_dirty(self) -> set[str]:
        """Routes whose state changed since the previous call (to checkpoint)."""
        out, self._dirty = self._dirty, set()
        return out

    def route_state(self, route: str) -> dict[str, Any] | None:
        """One route's state, JSON-able (None when nothing is held for it)."""
        if route not in self._last and route not in self._open:
            return None
        return copy.deepcopy({"open": self._open.get(route, {}), "last": self._last.get(route)})

    def restore_route(self, route: str, d: dict[str, Any]) -> None:
        """Load one route's :meth:`route_state` (``d`` is copied, never written to)."""
        d = copy.deepcopy(d)
        self._open.pop(route, None)
        self._last.pop(route, None)
        if d.get("open"):
            self._open[route] = d["open"]
        if d.get("last") is not None:
            self._last[route] = d["last"]

    def snapshot(self) -> dict[str, Any]:
        """All state: ``{"routes": {route: route_state}}``, sharing nothing with the tracker."""
        return {"routes": {r: self.route_state(r) for r in sorted(set(self._open) | set(self._last))}}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load :meth:`snapshot` output, replacing everything held."""
        self._open, self._last, self._dirty = {}, {}, set()
        for route, d in snap.get("routes", {}).items():
            if d is not None:
                self.restore_route(route, d)

    def forget(self, route: str) -> None:
        """Drop a route (evicted: its incidents were resolved)."""
        self._open.pop(route, None)
        self._last.pop(route, None)

    def open_counts(self) -> dict[str, int]:
        """Open incidents held, by route (for the route inventory)."""
        return {r: len(v) for r, v in self._open.items()}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two records equal but for ``updated_at``."""
    return all(a.get(k) == b.get(k) for k in ("route", "mode", "open_incidents", "actions"))
