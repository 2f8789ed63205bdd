"""What each alert receiver is sent for an incident event (pure: no I/O, the clock passed in).

- **Alertmanager** (``POST /api/v2/alerts``): one alert per incident. Its labels identify the incident
  (``alertname``, ``route``, ``incident_type``, ``severity``, ``incident_id``; ``group_id`` when it
  shares a cause), its annotations carry the summary and the ordered recommendations. A firing alert
  ends by itself at ``endsAt`` unless it is sent again, so open incidents are re-sent; a resolved one is
  sent with ``endsAt`` at its resolution.
- **PagerDuty** (Events API v2): ``dedup_key`` is the incident_id; ``opened``, ``updated`` and
  ``escalated`` trigger, ``acknowledged`` and ``contained`` acknowledge, ``resolved`` resolves.
- **Webhook**: the incident event's own bytes, signed: ``X-Detector-Signature: v1=<hex>``, the
  HMAC-SHA256 of ``<timestamp>.<body>`` under the shared key, the timestamp (Unix seconds) in
  ``X-Detector-Timestamp``. A receiver checks it with :func:`verify_signature` and drops a message
  whose ``X-Detector-Message`` (``incident_id:seq``) it has seen.

Only fields the incident event already holds are sent: the engine's evidence is redacted, and no free
text from telemetry events reaches a receiver.

>>> inc = {"event": "opened", "incident_id": "inc-1", "seq": 1, "route": "support.reply",
...        "incident_type": "bad_output", "severity": "high", "status": "open",
...        "started_at": "2026-01-01T10:00:00Z", "at": "2026-01-01T10:04:00Z", "resolved_at": None,
...        "summary": "Reviewers reject replies.", "group": None, "signals": [],
...        "recommendations": [{"action": "rollback", "target": {"kind": "prompt", "to_version": "v3"},
...                             "rationale": "prompt v4 began just before", "auto_applicable": False}]}
>>> alert = alertmanager_alert(inc, now_s=1767261900.0, resend_s=60)
>>> alert["labels"]["alertname"], alert["labels"]["severity"], alert["endsAt"]
('AIIncident', 'high', '2026-01-01T10:09:00Z')
>>> print(alert["annotations"]["recommendations"])
1. rollback prompt to v3: prompt v4 began just before
>>> pagerduty_event(inc, "KEY")["event_action"], pagerduty_event({**inc, "event": "contained"}, "KEY")
('trigger', {'routing_key': 'KEY', 'event_action': 'acknowledge', 'dedup_key': 'inc-1'})
>>> headers = webhook_headers(b'{"a":1}', b"k", inc, now_s=1767261900.0)
>>> verify_signature(b"k", headers["X-Detector-Timestamp"], b'{"a":1}', headers["X-Detector-Signature"],
...                  now_s=1767261960.0)
True
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from detector.ingest.decode import event_time_ms

__all__ = [
    "ALERTNAME",
    "alertmanager_alert",
    "alert_labels",
    "pagerduty_event",
    "webhook_headers",
    "sign",
    "verify_signature",
    "rfc3339",
    "parse_rfc3339",
]

ALERTNAME = "AIIncident"
#: Incident severity -> PagerDuty's.
PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
_PD_ACTION = {"opened": "trigger", "updated": "trigger", "escalated": "trigger",
              "acknowledged": "acknowledge", "contained": "acknowledge", "resolved": "resolve"}
#: Longest summary PagerDuty takes.
PD_SUMMARY_MAX = 1024
#: Alertmanager keeps an alert this many re-send intervals after the last time it was sent.
RESEND_MARGIN = 4
#: 9999-12-31T23:59:59Z, the last second datetime can show.
_MAX_S = 253_402_300_799


def rfc3339(seconds: float) -> str:
    """Unix seconds as RFC 3339 UTC text (whole seconds, as in incident events).

    >>> rfc3339(1767225600.7), rfc3339(-1e12)  # out of datetime's range: clamped, never an error
    ('2026-01-01T00:00:00Z', '1970-01-01T00:00:00Z')
    """
    return datetime.fromtimestamp(min(max(int(seconds), 0), _MAX_S), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: Any) -> float | None:
    """Unix seconds from RFC 3339 text; None when it is not that.

    >>> parse_rfc3339("2026-01-01T00:00:00Z"), parse_rfc3339(None)
    (1767225600.0, None)
    """
    ms = event_time_ms(text)
    return None if ms is None else ms / 1000


def _target(rec: Mapping[str, Any]) -> str:
    target = rec.get("target")
    if isinstance(target, Mapping):
        kind, version = target.get("kind"), target.get("to_version")
        if version is not None:
            return f" {kind} to {version}"
    elif isinstance(target, str):
        return f" {target}"
    return ""


def recommendations_text(incident: Mapping[str, Any], limit: int = 5) -> str:
    """The first recommendations, one numbered line each: action, target, rationale."""
    lines = []
    for i, rec in enumerate(incident.get("recommendations") or [], 1):
        if i > limit or not isinstance(rec, Mapping):
            break
        why = rec.get("rationale")
        lines.append(f"{i}. {rec.get('action')}{_target(rec)}" + (f": {why}" if why else ""))
    return "\n".join(lines)


def alert_labels(incident: Mapping[str, Any]) -> dict[str, str]:
    """The labels that identify an incident's alert (a new severity is a new label set)."""
    labels = {"alertname": ALERTNAME, "route": str(incident.get("route")),
              "incident_type": str(incident.get("incident_type")), "severity": str(incident.get("severity")),
              "incident_id": str(incident.get("incident_id"))}
    group = incident.get("group")
    if isinstance(group, Mapping) and group.get("group_id"):
        labels["group_id"] = str(group["group_id"])
    if incident.get("owner"):
        labels["owner"] = str(incident["owner"])
    return labels


def alertmanager_alert(incident: Mapping[str, Any], now_s: float, resend_s: float,
                       labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The alert for an incident event at wall-clock ``now_s``: firing until a few re-send intervals from
    now, or ended at its resolution (never later than now) when it is resolved. ``labels`` overrides the
    label set (to end the alert of a label set the incident no longer has)."""
    start = parse_rfc3339(incident.get("started_at")) or now_s
    if incident.get("status") == "resolved" or labels is not None:
        resolved = parse_rfc3339(incident.get("resolved_at")) or now_s
        ends = min(resolved, now_s) if labels is None else now_s
    else:
        ends = now_s + RESEND_MARGIN * resend_s
    start = min(start, ends)
    annotations = {
        "summary": str(incident.get("summary") or ""),
        "recommendations": recommendations_text(incident),
        "status": str(incident.get("status")),
        "event": str(incident.get("event")),
        "seq": str(incident.get("seq")),
    }
    if incident.get("escalation"):
        annotations["escalation"] = str(incident["escalation"])
    return {"labels": dict(labels) if labels is not None else alert_labels(incident), "annotations": annotations,
            "startsAt": rfc3339(start), "endsAt": rfc3339(ends)}


def pagerduty_event(incident: Mapping[str, Any], routing_key: str) -> dict[str, Any]:
    """The Events API v2 body for an incident event."""
    action = _PD_ACTION.get(str(incident.get("event")), "trigger")
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": action,
                            "dedup_key": str(incident.get("incident_id"))}
    if action != "trigger":
        return body
    route = str(incident.get("route"))
    summary = str(incident.get("summary") or f"{incident.get('incident_type')} incident on {route}")
    body["payload"] = {
        "summary": summary[:PD_SUMMARY_MAX],
        "source": route,
        "severity": PD_SEVERITY.get(str(incident.get("severity")), "error"),
        "timestamp": incident.get("at"),
        "component": route,
        "group": incident.get("incident_type"),
        "class": incident.get("incident_type"),
        "custom_details": {k: incident.get(k) for k in (
            "incident_id", "seq", "event", "status", "severity", "started_at", "signals", "recommendations",
            "blast_radius", "group", "owner", "escalation")},
    }
    body["client"] = "detector"
    return body


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    return "v1=" + hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_headers(body: bytes, key: bytes, incident: Mapping[str, Any], now_s: float) -> dict[str, str]:
    """Headers of a webhook delivery: content type, timestamp, signature, and the message's identity."""
    ts = str(int(now_s))
    message = quote(f"{incident.get('incident_id')}:{incident.get('seq')}", safe=":-_.~")  # a header's bytes
    return {"Content-Type": "application/json", "X-Detector-Timestamp": ts,
            "X-Detector-Signature": sign(key, ts, body), "X-Detector-Message": message}


def verify_signature(key: bytes, timestamp: str, body: bytes, signature: str, now_s: float,
                     tolerance_s: float = 300.0) -> bool:
    """What a webhook receiver checks: the signature matches and the timestamp is recent (no replays).

    >>> ts = "1767225600"
    >>> verify_signature(b"k", ts, b"x", sign(b"k", ts, b"x"), now_s=1767225600.0 + 301)
    False
    >>> verify_signature(b"other", ts, b"x", sign(b"k", ts, b"x"), now_s=1767225600.0)
    False
    """
    try:
        age = abs(now_s - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(key, timestamp, body), signature)
