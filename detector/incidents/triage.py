"""Triage: severity from magnitude, blast radius and the route's configuration.

Pure functions; the incident engine calls them on every change of an incident.

>>> from detector.config import RouteConfig
>>> severity("access_privacy", 1.2, 0.01, 1, RouteConfig())
'high'
>>> severity("performance", 8.0, 0.9, 40, RouteConfig(tier=1, customer_facing=True))
'critical'
>>> severity("cost", 2.1, 0.05, 1, RouteConfig(tier=3))
'low'
"""

from __future__ import annotations

from detector.config import RouteConfig
from detector.windows.aggregate import WindowAggregate

__all__ = ["severity", "SEVERITIES", "affected", "bump"]

SEVERITIES = ("low", "medium", "high", "critical")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: Error classes whose events are the "affected requests" of each type.
TYPE_CLASSES = {
    "performance": ("timeout", "rate_limited", "provider_error"),
    "tool_failure": ("tool_error",),
    "access_privacy": ("access_denied",),
    "retrieval_failure": ("retrieval_empty", "retrieval_stale"),
    "bad_output": ("validation_error",),
}


def rank(s: str) -> int:
    """Order of a severity: low 0 .. critical 3."""
    return _RANK[s]


def bump(s: str, by: int = 1) -> str:
    """A severity ``by`` levels higher (capped at critical)."""
    return SEVERITIES[min(len(SEVERITIES) - 1, _RANK[s] + by)]


def severity(incident_type: str, magnitude: float, share: float, tenants: int, rc: RouteConfig,
             stopped: bool = False) -> str:
    """Severity of an incident.

    Points: magnitude (observed / baseline) >= 2 and >= 5; share of the
    route's traffic affected >= 10% and >= 50%; ten or more tenants; tier 1
    (tier 3 takes one off); customer-facing; a route that stopped serving.
    ``access_privacy`` is never below high.
    """
    pts = 0
    pts += (magnitude >= 2.0) + (magnitude >= 5.0)
    pts += (share >= 0.10) + (share >= 0.50)
    pts += tenants >= 10
    pts += 1 if rc.tier == 1 else (-1 if rc.tier == 3 else 0)
    pts += rc.customer_facing
    pts += 2 if stopped else 0
    level = "critical" if pts >= 6 else "high" if pts >= 4 else "medium" if pts >= 2 else "low"
    if incident_type == "access_privacy" and _RANK[level] < _RANK["high"]:
        level = "high"
    if incident_type == "access_privacy" and (rc.customer_facing or rc.sensitive_sources) and share >= 0.1:
        level = "critical"
    return level


def affected(incident_type: str, w: WindowAggregate, error_based: bool = False) -> tuple[int, set[str]]:
    """Requests and tenants of one window that the incident type affects.

    Errors (or bad reviews) for the error-driven types, and for a performance
    incident raised by error signals (``error_based``); every request when
    the route as a whole is slow, stopped or costly.
    """
    classes = TYPE_CLASSES.get(incident_type)
    if incident_type == "bad_output":
        n = w.bad_reviews + sum(w.errors.get(c, 0) for c in classes or ())
        return n, w.affected_tenants_of(("bad_review", *(classes or ())))
    if classes is not None and (incident_type != "performance" or error_based):
        return sum(w.errors.get(c, 0) for c in classes), w.affected_tenants_of(classes)
    return w.requests, set(w.tenants)
