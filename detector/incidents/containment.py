"""Containment policy: which actions to recommend for an incident, in priority order.

Contain first, investigate after (DOMAIN.md): the first recommendation is
the one that stops the problem spreading. Each type has a default list;
``route_cfg.containment[type]``, when set, replaces it (the operator's order
is kept as given). Actions that need something the incident lacks are left
out: ``rollback`` without a target, ``disable_tool`` without a tool,
``failover_route`` without ``route_cfg.fallback_route``.

Severity: on a customer-facing route, at ``critical`` or ``high``, the
human gates (``draft_only``, ``manual_review``) move ahead of the slower
fixes (rollback, narrowing sources, rate limits) in a default list, since
they stop bad output reaching customers at once while the fix is prepared.
They never move ahead of a leading ``pause_feature`` or ``disable_tool``,
which stop more. A list set in the config is never reordered.

An action is ``auto_applicable`` only when it is listed in
``route_cfg.auto_actions``; nothing is automatic by default (so pausing a
customer-facing feature always needs a person unless the route opts in).

>>> from detector.config import RouteConfig
>>> cfg = RouteConfig(fallback_route="chat.small", auto_actions=["failover_route"])
>>> recs = recommend("performance", "chat", cfg, rollback={"kind": "model", "to_version": "m1"},
...                  tool=None, severity="high")
>>> [(r["action"], r["auto_applicable"]) for r in recs]
[('failover_route', True), ('rate_limit', False), ('rollback', False)]
>>> recs[0]["target"], recs[2]["target"]
('chat.small', {'kind': 'model', 'to_version': 'm1'})
"""

from __future__ import annotations

from typing import Any

from detector.config import RouteConfig
from detector.incidents.redact import redact_id

__all__ = ["recommend", "DEFAULTS", "describe"]

#: Default actions per incident type, highest priority first.
DEFAULTS: dict[str, tuple[str, ...]] = {
    "access_privacy": ("pause_feature", "disable_tool", "narrow_sources", "rollback"),
    "bad_output": ("rollback", "draft_only", "manual_review"),
    "tool_failure": ("disable_tool", "rollback", "draft_only", "manual_review"),
    "retrieval_failure": ("rollback", "narrow_sources"),
    "cost": ("rate_limit", "pause_feature", "rollback"),
    "performance": ("failover_route", "rate_limit", "rollback"),
}
_GATES = ("draft_only", "manual_review")
_STOPS = ("pause_feature", "disable_tool")

# Why each action fits each type; {tool}, {kind}, {version}, {fallback} are filled in.
_RATIONALE: dict[str, dict[str, str]] = {
    "pause_feature": {
        "access_privacy": "Stop new requests so no more material reaches people who should not see it.",
        "cost": "Pause the looping automation or batch job so spend stops growing while the cause is found.",
        "": "Stop new requests until the cause is understood.",
    },
    "disable_tool": {
        "access_privacy": "Stop calls to {tool}, which may be reading or exposing records it should not.",
        "tool_failure": "Stop calls to the failing tool {tool} so no more actions fail or hit the wrong "
                        "record.",
        "": "Stop calls to {tool} while it is investigated.",
    },
    "narrow_sources": {
        "access_privacy": "Retrieve only from a small trusted set of sources until access filters "
                          "are checked.",
        "retrieval_failure": "Retrieve only from a small trusted set of sources until the index is fixed.",
        "": "Retrieve only from a small trusted set of sources.",
    },
    "rollback": {
        "": "The problem began with a {kind} change and sits on the new version; "
            "go back to {version}, the last {kind} version seen healthy.",
    },
    "draft_only": {
        "bad_output": "Show AI output only as suggestions so people catch wrong answers before "
                      "they are used.",
        "tool_failure": "{tool} can write: let the AI only propose actions, with no automatic writes.",
        "": "Show AI output only as suggestions, with no automatic action.",
    },
    "manual_review": {
        "bad_output": "Have a person check each output before it is used while quality is restored.",
        "tool_failure": "{tool} can write: have a person approve each action before it runs.",
        "": "Have a person check each output or action before use.",
    },
    "rate_limit": {
        "cost": "Cap request and retry rates to bound spend while the cause is found.",
        "performance": "Shed load with a rate limit so queued requests stop timing out.",
        "": "Cap the request rate on the route.",
    },
    "failover_route": {
        "": "Send traffic to the fallback route {fallback} while this one is slow or failing.",
    },
}


def recommend(incident_type: str, route: str, route_cfg: RouteConfig, *, rollback: dict[str, str] | None,
              tool: str | None, severity: str, shared: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Recommendations (``events.Recommendation`` dicts) in priority order.

    ``rollback`` is the target from :meth:`ChangeTracker.explain` (or None),
    ``tool`` the tool the incident names (for ``disable_tool``), ``route``
    the incident's route (named in no target; it is the incident's subject).
    ``shared`` is the cause (kind, value) when it fails on other routes at
    once (SPEC 2a): a provider or model outage is met by failing over and
    shedding load, never by a rollback (a change on one route does not
    explain what every route on the provider shows), and the rationale says
    so; ``failover_route`` is then recommended even without a configured
    fallback route (move to another provider's model).

    >>> [(r["action"], r["target"]) for r in recommend("performance", "r", RouteConfig(), rollback=None,
    ...                                                 tool=None, severity="high", shared=("provider", "p1"))]
    [('failover_route', None), ('rate_limit', None)]

    >>> from detector.config import RouteConfig
    >>> cfg = RouteConfig(write_tools=["crm"])
    >>> [r["action"] for r in recommend("tool_failure", "r", cfg, rollback=None, tool="crm", severity="low")]
    ['disable_tool', 'draft_only', 'manual_review']
    >>> [r["action"] for r in recommend("tool_failure", "r", cfg, rollback=None, tool="search",
    ...                                 severity="low")]
    ['disable_tool']
    """
    configured = route_cfg.containment.get(incident_type)  # type: ignore[call-overload]
    if configured:
        actions = list(dict.fromkeys(configured))
    else:
        actions = list(DEFAULTS.get(incident_type, ("manual_review",)))
        if incident_type == "tool_failure":
            # Human gates are for tools that write; a failing read-only tool is just disabled
            # (with no tool named at all, the gates are what is left).
            if tool is not None and tool not in route_cfg.write_tools:
                actions = [a for a in actions if a not in _GATES]
        if route_cfg.customer_facing and severity in ("critical", "high"):
            actions = _gates_first(actions)
    out: list[dict[str, Any]] = []
    for action in actions:
        target: dict[str, str] | str | None = None
        if action == "rollback":
            if shared is not None or not rollback or not rollback.get("to_version") or not rollback.get("kind"):
                continue
            target = {"kind": rollback["kind"], "to_version": redact_id(rollback["to_version"])}
        elif action == "disable_tool":
            if not tool:
                continue
            target = redact_id(tool)
        elif action == "failover_route":
            if not route_cfg.fallback_route and shared is None:
                continue
            target = route_cfg.fallback_route
        rationale = _rationale(action, incident_type, tool, rollback, route_cfg.fallback_route)
        if shared is not None and action in _SHARED:
            rationale = _SHARED[action].format(
                kind=shared[0].replace("_", " "), value=redact_id(shared[1]),
                fallback=f"the fallback route {route_cfg.fallback_route}" if route_cfg.fallback_route
                else "a model from another provider (no fallback route is configured)")
        out.append({
            "action": action,
            "target": target,
            "rationale": rationale,
            "auto_applicable": action in route_cfg.auto_actions,
        })
    return out


#: Rationales when the cause fails on several routes at once (filled: kind, value, fallback).
_SHARED = {
    "failover_route": "The {kind} {value} is failing on several routes at once, not only this one: a change "
                      "on this route does not explain it. Send traffic to {fallback} until it recovers.",
    "rate_limit": "The {kind} {value} is failing on several routes at once: shed load and cut retries on this "
                  "route so requests stop timing out and retries do not add to the overload.",
}


def _gates_first(actions: list[str]) -> list[str]:
    """Move draft_only/manual_review up to just after the leading hard stops (pause, disable)."""
    gates = [a for a in actions if a in _GATES]
    rest = [a for a in actions if a not in _GATES]
    lead = 0
    while lead < len(rest) and rest[lead] in _STOPS:
        lead += 1
    return rest[:lead] + gates + rest[lead:]


def _rationale(action: str, incident_type: str, tool: str | None, rollback: dict[str, str] | None,
               fallback: str | None) -> str:
    texts = _RATIONALE.get(action, {})
    text = texts.get(incident_type) or texts.get("", "")
    return text.format(
        tool=redact_id(tool) if tool else "the tool",
        kind=(rollback or {}).get("kind", "release"),
        version=redact_id((rollback or {}).get("to_version", "the previous version")),
        fallback=fallback or "",
    )


def describe(rec: dict[str, Any]) -> str:
    """A recommendation in a few words, for summaries.

    >>> describe({"action": "rollback", "target": {"kind": "prompt", "to_version": "v3"}})
    'roll the prompt back to v3'
    >>> describe({"action": "disable_tool", "target": "crm"})
    'disable the tool crm'
    """
    action, target = rec.get("action"), rec.get("target")
    if action == "rollback" and isinstance(target, dict):
        kind = str(target.get("kind", "")).replace("_", " ")
        return f"roll the {kind} back to {redact_id(target.get('to_version'))}"
    if action == "disable_tool":
        return f"disable the tool {redact_id(target)}" if target else "disable the failing tool"
    if action == "failover_route":
        return f"fail over to the route {redact_id(target)}" if target else "fail over to a fallback route"
    return {
        "pause_feature": "pause the feature",
        "draft_only": "switch to draft-only (suggestions, no automatic action)",
        "manual_review": "put every output under manual review",
        "narrow_sources": "narrow retrieval to trusted sources",
        "rate_limit": "rate-limit the route",
    }.get(str(action), str(action))
