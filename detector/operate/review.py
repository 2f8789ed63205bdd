"""`detector incident review ID`: a Markdown draft of the post-incident review, from the incident's messages.

Pure: the incident events in (any order, redeliveries allowed), Markdown out. Everything in the draft
comes from those events, which hold no free text from telemetry (evidence is redacted at the source);
operator notes appear as the incident events carry them (already masked). What only people can answer
is left as prompts.

>>> msgs = [
...   {"event": "opened", "incident_id": "inc-1", "seq": 1, "route": "support.reply", "incident_type": "bad_output",
...    "severity": "high", "status": "open", "started_at": "2026-12-02T10:00:00Z",
...    "detected_at": "2026-12-02T10:04:00Z", "at": "2026-12-02T10:04:00Z", "resolved_at": None,
...    "signals": [{"signal": "review_rejection_rate", "observed": 0.61, "baseline": 0.05, "threshold": 0.2,
...                 "window_start": "2026-12-02T10:03:00Z", "window_end": "2026-12-02T10:04:00Z"}],
...    "blast_radius": {"requests": 40, "tenants": 6, "share": 0.5},
...    "evidence": {"changes": [{"at": "2026-12-02T09:58:00Z", "kind": "prompt", "from_version": "v7",
...                              "to_version": "v8"}], "prompt_versions": {"v8": 40}},
...    "recommendations": [{"action": "rollback", "target": {"kind": "prompt", "to_version": "v7"},
...                         "rationale": "v8 began just before", "auto_applicable": False}],
...    "summary": "[HIGH] Bad output on support.reply.", "by": None, "note": None, "group": None},
...   {"event": "contained", "incident_id": "inc-1", "seq": 2, "status": "contained", "at": "2026-12-02T10:10:00Z",
...    "by": "ana", "note": "rolled back to v7", "severity": "high"},
...   {"event": "resolved", "incident_id": "inc-1", "seq": 3, "status": "resolved", "at": "2026-12-02T10:30:00Z",
...    "resolved_at": "2026-12-02T10:30:00Z", "severity": "high"}]
>>> text = review(msgs)
>>> print(text.splitlines()[0])
# Post-incident review (draft): bad_output on support.reply
>>> "| time to detect | 4 min |" in text, "| time to contain | 6 min |" in text, "| time to resolve | 30 min |" in text
(True, True, True)
>>> "prompt v7 → v8" in text, "contained by ana: rolled back to v7" in text
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from detector.ingest.decode import event_time_ms

__all__ = ["review", "pick"]

QUESTIONS = (
    "What will change so that this does not happen again (a test, a release check, a guardrail)?",
    "Were the logs, traces and the incident's evidence enough to find the cause? What was missing?",
    "Was the containment recommended the right one? Was it applied fast enough, and by whom?",
    "Should this route's detector settings change (`detector config explain ROUTE`, then "
    "`detector replay --report` with the new config on this period)?",
    "Who else was affected (downstream teams, customers) and have they been told?",
)


def pick(messages: Iterable[Mapping[str, Any]], incident_id: str) -> list[dict[str, Any]]:
    """The messages of one incident, in seq order, each seq once (the last copy of a redelivered one)."""
    by_seq: dict[int, dict[str, Any]] = {}
    for m in messages:
        if m.get("incident_id") == incident_id and isinstance(m.get("seq"), int):
            by_seq[m["seq"]] = dict(m)
    return [by_seq[k] for k in sorted(by_seq)]


def _span(a: int | None, b: int | None) -> str:
    if a is None or b is None:
        return "n/a"
    minutes = (b - a) / 60_000
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _target(rec: Mapping[str, Any]) -> str:
    t = rec.get("target")
    if isinstance(t, Mapping) and t.get("to_version") is not None:
        return f" {t.get('kind')} to {t.get('to_version')}"
    return f" {t}" if isinstance(t, str) else ""


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def review(messages: list[dict[str, Any]]) -> str:
    """The Markdown draft for one incident's messages (as :func:`pick` returns them)."""
    msgs = sorted(messages, key=lambda m: int(m.get("seq") or 0))
    if not msgs:
        raise ValueError("no messages for this incident")
    first, last = msgs[0], msgs[-1]
    head = next((m for m in msgs if m.get("event") == "opened"), first)
    route, itype = head.get("route"), head.get("incident_type")
    started, detected = event_time_ms(head.get("started_at")), event_time_ms(head.get("detected_at"))

    def when(event: str) -> dict[str, Any] | None:
        return next((m for m in msgs if m.get("event") == event), None)

    acked, contained, resolved = when("acknowledged"), when("contained"), when("resolved")
    contained_at = event_time_ms(contained.get("at")) if contained else None
    resolved_text = (resolved.get("resolved_at") or resolved.get("at")) if resolved else None
    resolved_at = event_time_ms(resolved_text)
    out = [f"# Post-incident review (draft): {itype} on {route}", "",
           f"Incident `{head.get('incident_id')}`; severity at the end: **{last.get('severity')}**; "
           f"status: **{last.get('status')}**. Drafted from {len(msgs)} incident message(s); edit freely.", ""]
    summary = head.get("summary")
    if summary:
        out += [f"> {summary}", ""]

    out += ["## Timeline", "", "| seq | event | at | severity | status | by | note |", "|---|---|---|---|---|---|---|"]
    for m in msgs:
        out.append(f"| {m.get('seq')} | {m.get('event')} | {m.get('at')} | {m.get('severity')} | {m.get('status')} "
                   f"| {_cell(m.get('by') or '')} | {_cell(m.get('note') or '')} |")
    out += ["", "| measure | value |", "|---|---|",
            f"| anomaly started | {head.get('started_at')} |",
            f"| detected | {head.get('detected_at')} |",
            f"| time to detect | {_span(started, detected)} |",
            f"| acknowledged | {acked.get('at') if acked else 'not acknowledged'} |",
            f"| contained | {contained.get('at') if contained else 'not contained'} |",
            f"| time to contain | {_span(detected, contained_at) if contained else 'n/a'} |",
            f"| resolved | {resolved_text if resolved_at else 'not resolved'} |",
            f"| time to resolve | {_span(started, resolved_at) if resolved_at else 'n/a'} |", ""]

    out += ["## What was affected", ""]
    radii: list[Mapping[str, Any]] = [m["blast_radius"] for m in msgs if isinstance(m.get("blast_radius"), Mapping)]
    def reach(b: Mapping[str, Any]) -> int:
        n = b.get("requests")
        return n if isinstance(n, int) else 0

    widest: Mapping[str, Any] = max(radii, key=reach, default={})
    if widest:
        share = widest.get("share")
        out.append(f"- requests: {widest.get('requests')}, tenants: {widest.get('tenants')}, share of the route's "
                   f"traffic: {share:.0%}" if isinstance(share, float) else f"- {widest}")
    severities = [m.get("severity") for m in msgs]
    path = [s for i, s in enumerate(severities) if i == 0 or s != severities[i - 1]]
    out.append(f"- severity: {' → '.join(str(s) for s in path)}")
    group = next((m.get("group") for m in reversed(msgs) if m.get("group")), None)
    if isinstance(group, Mapping):
        cause = group.get("cause") or {}
        out.append(f"- shared cause with other routes: {cause.get('kind')} `{cause.get('value')}` "
                   f"(group `{group.get('group_id')}`: {', '.join(map(str, group.get('routes') or []))})")
    out.append("")

    out += ["## Signals", "", "| signal | observed | baseline | threshold | window |", "|---|---|---|---|---|"]
    seen: set[str] = set()
    for m in msgs:
        for s in m.get("signals") or []:
            if not isinstance(s, Mapping) or s.get("signal") in seen:
                continue
            seen.add(str(s.get("signal")))
            out.append(f"| {s.get('signal')} | {s.get('observed')} | {s.get('baseline')} | {s.get('threshold')} | "
                       f"{s.get('window_start')} – {s.get('window_end')} |")
    out.append("")

    out += ["## Changes and versions", ""]
    changes: list[Mapping[str, Any]] = []
    versions: dict[str, dict[str, int]] = {}
    before: dict[str, list[str]] = {}
    for m in msgs:
        ev = m.get("evidence") or {}
        for c in (ev.get("changes") or []) if isinstance(ev, Mapping) else []:
            if isinstance(c, Mapping) and c not in changes:
                changes.append(c)
        if not isinstance(ev, Mapping):
            continue
        for kind in ("models", "prompt_versions", "config_versions", "source_indexes", "tools"):
            counts = ev.get(kind)
            for v, n in (counts.items() if isinstance(counts, Mapping) else ()):
                if isinstance(n, int):
                    versions.setdefault(kind, {})[str(v)] = max(n, versions.get(kind, {}).get(str(v), 0))
        vb = ev.get("versions_before")
        if isinstance(vb, Mapping):
            before.update({str(k): [str(x) for x in v] for k, v in vb.items() if isinstance(v, list)})
    if changes:
        for c in changes:
            out.append(f"- {c.get('at')}: {c.get('kind')} {c.get('from_version')} → {c.get('to_version')}")
    else:
        out.append("- no change recorded on the route in the lookback before the anomaly")
    for kind, vs in versions.items():
        out.append(f"- {kind.replace('_', ' ')} in the anomalous windows: "
                   + ", ".join(f"{v} ({n})" for v, n in sorted(vs.items(), key=lambda kv: -kv[1])))
    if before:
        out.append("- versions before the anomaly: " + "; ".join(f"{k} {', '.join(v)}" for k, v in before.items()))
    out.append("")

    out += ["## Containment: recommended and done", "", "Recommended (in priority order, as last published):", ""]
    recs: list[Mapping[str, Any]] = next(
        (m["recommendations"] for m in reversed(msgs) if m.get("recommendations")), [])
    for i, r in enumerate(recs, 1):
        auto = " (auto-applicable)" if r.get("auto_applicable") else ""
        out.append(f"{i}. {r.get('action')}{_target(r)}{auto}: {r.get('rationale')}")
    out += ["", "Operator commands given:", ""]
    done = [m for m in msgs if m.get("by")]
    for m in done:
        note = f": {m.get('note')}" if m.get("note") else ""
        out.append(f"- {m.get('at')}: {m.get('event')} by {m.get('by')}{note}")
    if not done:
        out.append("- none recorded (the incident resolved without an operator command)")
    out += ["", "## Questions for the review", ""]
    out += [f"- [ ] {q}" for q in QUESTIONS]
    return "\n".join(out) + "\n"
