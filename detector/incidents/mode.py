"""Containment state per route (SPEC 2b ``ai.containment``, compacted, key = route).

A gateway reads this topic to learn the recommended operating mode of each
route that has or had an incident. The mode comes from the open incidents'
recommendations: the most restrictive of their actions, where ``pause_feature``
-> ``paused`` is the strongest, then ``draft_only``, then ``manual_review``,
and any other action (rollback, disable_tool, narrow_sources, rate_limit,
failover_route) -> ``restricted``. All recommendations count, not only the
auto-applicable ones: the record says what is recommended, and each action
keeps its ``auto_applicable`` flag so the gateway applies only what it is
allowed to. ``normal`` when the route has no open incident.

>>> t = ContainmentTracker()
>>> rec = t.observe({"event": "opened", "incident_id": "inc-1", "route": "r", "status": "open", "at": "T1",
...     "recommendations": [{"action": "draft_only", "target": None, "rationale": "x", "auto_applicable": True}]})
>>> rec["mode"], rec["open_incidents"]
('draft_only', ['inc-1'])
>>> t.observe({"event": "resolved", "incident_id": "inc-1", "route": "r", "status": "resolved", "at": "T2",
...     "recommendations": []})["mode"]
'normal'
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

__all__ = ["containment_record", "ContainmentTracker", "MODE_OF_ACTION"]

Incident = dict[str, Any]

MODE_OF_ACTION = {"pause_feature": "paused", "draft_only": "draft_only", "manual_review": "manual_review"}
_RANK = {"normal": 0, "restricted": 1, "manual_review": 2, "draft_only": 3, "paused": 4}


def containment_record(route: str, open_incidents: Sequence[Incident], at: str) -> dict[str, Any]:
    """The SPEC 2b record for ``route`` from the latest message of each of its open incidents."""
    mode = "normal"
    actions: list[dict[str, Any]] = []
    seen: set[str] = set()
    for inc in sorted(open_incidents, key=lambda i: str(i["incident_id"])):
        for rec in inc.get("recommendations", []):
            m = MODE_OF_ACTION.get(rec["action"], "restricted")
            if _RANK[m] > _RANK[mode]:
                mode = m
            key = repr((rec["action"], rec.get("target")))
            if key not in seen:
                seen.add(key)
                actions.append(rec)
    return {"route": route, "mode": mode, "open_incidents": sorted(str(i["incident_id"]) for i in open_incidents),
            "actions": actions, "updated_at": at}


class ContainmentTracker:
    """Follows the incident messages of a stream; says when a route's containment record changes."""

    def __init__(self) -> None:
        #: route -> incident_id -> the incident's latest message (only what the record needs)
        self._open: dict[str, dict[str, Incident]] = {}
        #: route -> the last record published
        self._last: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def observe(self, incident: Incident) -> dict[str, Any] | None:
        """The route's new record when its mode, open incidents or actions changed, else None."""
        route = str(incident["route"])
        held = self._open.setdefault(route, {})
        if incident["event"] == "resolved":
            held.pop(str(incident["incident_id"]), None)
        else:
            held[str(incident["incident_id"])] = {"incident_id": incident["incident_id"],
                                                  "recommendations": copy.deepcopy(incident["recommendations"])}
        if not held:
            del self._open[route]
        rec = containment_record(route, list(held.values()), str(incident["at"]))
        last = self._last.get(route)
        if last is not None and {k: v for k, v in last.items() if k != "updated_at"} == \
                {k: v for k, v in rec.items() if k != "updated_at"}:
            return None
        self._last[route] = rec
        self._dirty.add(route)
        return rec

    def take_dirty(self) -> set[str]:
        out, self._dirty = self._dirty, set()
        return out

    def route_state(self, route: str) -> dict[str, Any] | None:
        if route not in self._last and route not in self._open:
            return None
        return copy.deepcopy({"open": self._open.get(route, {}), "last": self._last.get(route)})

    def restore_route(self, route: str, d: dict[str, Any]) -> None:
        d = copy.deepcopy(d)
        if d.get("open"):
            self._open[route] = d["open"]
        if d.get("last") is not None:
            self._last[route] = d["last"]

    def forget(self, route: str) -> None:
        self._open.pop(route, None)
        self._last.pop(route, None)

    def open_counts(self) -> dict[str, int]:
        """Open incidents held, by route (for the route inventory)."""
        return {r: len(v) for r, v in self._open.items()}
