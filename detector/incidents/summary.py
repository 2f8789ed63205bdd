"""The incident ``summary``: plain operating guidance for staff, one short paragraph.

It answers what DOMAIN.md says staff need to be told: which feature is
affected and how, who and what may be affected, the mode recommended, what
to do meanwhile, who owns it, where to send examples and when the next
update comes. It is built only from the incident's own fields (type,
severity, counts, recommendations, config owner); identifiers pass
:func:`~detector.incidents.redact.redact_id`, and no free text from events
is ever read.

>>> s = summarize(incident_id="inc-1", route="support.draft", incident_type="bad_output",
...               severity="high", blast_radius={"requests": 120, "tenants": 3, "share": 0.4},
...               recommendations=[{"action": "draft_only", "target": None, "auto_applicable": False}],
...               owner="team-support", escalation=None)
>>> print(s)  # doctest: +NORMALIZE_WHITESPACE
[HIGH] Bad output on support.draft: reviewers are rejecting or escalating its AI output more than
usual. Affected so far: 120 requests, 3 tenants, 40% of the route's traffic. Recommended mode: switch
to draft-only (suggestions, no automatic action) (needs approval). Meanwhile: check every AI draft or
answer before using it and send nothing unreviewed to customers. Owner: team-support. Send examples
(request or trace ids only) to incident inc-1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.config import RouteConfig
from detector.incidents.containment import describe
from detector.incidents.redact import redact_id

__all__ = ["summarize"]

_WHAT = {
    "bad_output": "reviewers are rejecting or escalating its AI output more than usual",
    "retrieval_failure": "answers may be built on missing, stale or wrong sources",
    "tool_failure": "calls to {tool} are failing",
    "access_privacy": "access is being denied unusually often; material may be reaching people "
                      "who should not see it",
    "performance": "requests are slow, timing out or failing",
    "cost": "spend has jumped (retries, loops, long prompts or a costlier model)",
}
_MEANWHILE = {
    "bad_output": "check every AI draft or answer before using it and send nothing unreviewed to customers",
    "retrieval_failure": "check answers against the source documents and do not rely on the AI's citations",
    "tool_failure": "do actions by hand and check any record {tool} touched since the start; do not retry "
                    "failed actions blindly",
    "access_privacy": "do not share or forward this feature's output and report anything that looks like "
                      "someone else's data",
    "performance": "expect delays, use the fallback or manual process for urgent work and do not resubmit "
                   "requests repeatedly",
    "cost": "hold batch jobs and automations on this route and do not re-run them until cleared",
}
_STATUS = {
    "acknowledged": " It is acknowledged and being worked on.",
    "contained": " It is contained; keep to the current mode until it is restored.",
    "resolved": " It is resolved; the route is watched more closely for a while.",
}


def summarize(incident: Mapping[str, Any] | None = None, route_cfg: RouteConfig | None = None, *,
              incident_id: str | None = None, route: str | None = None, incident_type: str | None = None,
              severity: str | None = None, blast_radius: Mapping[str, Any] | None = None,
              recommendations: Sequence[Mapping[str, Any]] | None = None, owner: str | None = None,
              escalation: str | None = None, status: str | None = None, tool: str | None = None,
              next_update_s: int | None = None, recurrence: bool = False, stopped: bool = False) -> str:
    """One paragraph of guidance for staff.

    Either pass the incident message (SPEC section 2 fields) and the
    route's config, or the fields one by one as keywords (a keyword wins
    over the message). ``status`` is the state after this message
    (``resolved`` for the last one); ``tool`` the tool a tool failure names
    (from the message: the ``disable_tool`` target, else the commonest tool
    in the evidence); ``route_cfg`` fills in an owner or escalation the
    message lacks; ``next_update_s`` is the shortest time between two updates;
    ``recurrence``: the route failed again soon after a resolved
    incident; ``stopped``: the route's traffic stopped or collapsed.

    >>> s = summarize(incident_id="i9", route="r", incident_type="tool_failure", severity="low",
    ...               blast_radius={"requests": 1, "tenants": 0, "share": 0.01}, recommendations=[],
    ...               owner=None, escalation="pager-x", tool="crm", next_update_s=900)
    >>> s.split(". ")[-2][:44], s.split(". ")[-1][:50]
    ('Send examples (request or trace ids only) to', 'Updates follow when it changes (at most every 15 m')
    >>> "calls to the tool crm are failing" in s, "No owner configured — assign one" in s
    (True, True)
    >>> inc = {"incident_id": "i1", "route": "r", "incident_type": "tool_failure", "severity": "low",
    ...        "status": "open", "blast_radius": {}, "recommendations": [], "owner": None,
    ...        "escalation": None, "evidence": {"tools": {"crm": 4}}}
    >>> "the tool crm" in summarize(inc)
    True
    """
    inc: Mapping[str, Any] = incident or {}
    incident_id = incident_id if incident_id is not None else str(inc.get("incident_id", ""))
    route = route if route is not None else str(inc.get("route", ""))
    incident_type = incident_type if incident_type is not None else str(inc.get("incident_type", ""))
    severity = severity if severity is not None else str(inc.get("severity", ""))
    blast_radius = blast_radius if blast_radius is not None else (inc.get("blast_radius") or {})
    recommendations = recommendations if recommendations is not None else (inc.get("recommendations") or [])
    owner = owner or inc.get("owner") or (route_cfg.owner if route_cfg else None)
    escalation = escalation or inc.get("escalation") or (route_cfg.escalation if route_cfg else None)
    if status is None:
        status = "resolved" if inc.get("event") == "resolved" else str(inc.get("status", "open"))
    if tool is None and incident_type == "tool_failure":
        tool = _tool(inc, recommendations)
    tool_name = f"the tool {redact_id(tool)}" if tool else "a tool"
    kind = incident_type.replace("_", " ") or "incident"
    what = _WHAT.get(incident_type, "it is behaving abnormally").format(tool=tool_name)
    if stopped:
        what = "its traffic has stopped or collapsed"
    parts = [f"[{severity.upper()}] {kind[:1].upper()}{kind[1:]} on {redact_id(route)}: {what}."]
    if recurrence:
        parts.append("It recurs soon after a resolved incident on the same route.")
    parts.append(f"Affected so far: {_radius(blast_radius)}.")
    if status in _STATUS:
        parts[-1] += _STATUS[status]
    if status == "resolved":
        # Over: say what was recommended while it was live, and that lifting it is a decision, not a default.
        if recommendations:
            parts.append(f"While it was open the recommendation was: {describe(dict(recommendations[0]))}; "
                         "lifting any containment still in place needs the owner's approval.")
        parts.append("Normal work can resume once containment is lifted.")
    else:
        if recommendations:
            first = recommendations[0]
            how = "can be applied automatically" if first.get("auto_applicable") else "needs approval"
            parts.append(f"Recommended mode: {describe(dict(first))} ({how}).")
        else:
            parts.append("No containment is recommended yet; keep watching the route.")
        meanwhile = _MEANWHILE.get(incident_type, "report anything unusual to the owner")
        parts.append(f"Meanwhile: {meanwhile.format(tool=tool_name)}.")
    esc = f" (escalation: {redact_id(escalation)})" if escalation else ""
    if owner:
        parts.append(f"Owner: {redact_id(owner)}{esc}.")
    else:
        parts.append(f"No owner configured — assign one{esc}.")
    parts.append(f"Send examples (request or trace ids only) to incident {redact_id(incident_id)}.")
    if next_update_s:
        parts.append(f"Updates follow when it changes (at most every {max(1, round(next_update_s / 60))} min); "
                     "it resolves once its signals stay healthy.")
    return " ".join(parts)


def _tool(incident: Mapping[str, Any], recs: Sequence[Mapping[str, Any]]) -> str | None:
    for r in recs:
        if r.get("action") == "disable_tool" and isinstance(r.get("target"), str):
            return str(r["target"])
    tools = (incident.get("evidence") or {}).get("tools") or {}
    return str(min(tools, key=lambda t: (-tools[t], t))) if tools else None


def _radius(b: Mapping[str, Any]) -> str:
    requests = int(b.get("requests", 0) or 0)
    tenants = int(b.get("tenants", 0) or 0)
    share = float(b.get("share", 0.0) or 0.0)
    pct = f"{share * 100:.0f}%" if share >= 0.01 or share == 0 else "under 1%"
    req = f"{requests:,} request{'s' if requests != 1 else ''}"
    ten = f"{tenants:,} tenant{'s' if tenants != 1 else ''}"
    return f"{req}, {ten}, {pct} of the route's traffic"
