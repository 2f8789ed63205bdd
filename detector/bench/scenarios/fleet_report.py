"""What ``detector bench scenarios --suite fleet`` prints: rows, misses, and why alarms were false.

Each false incident gets one line: route, route kind, type, highest severity, the first
signal that fired, detection time and weekday, and the ground truth around it (releases and
canaries on the route, late flushes, labels that overlap or just ended, another route's
provider outage, where it falls in a batch window or business day), read from the
scenario's ``labels.json`` so no events are needed.

>>> from detector.bench.scenarios.model import Scenario
>>> from detector.bench.scenarios.score import IncidentView
>>> sc = Scenario(1, 1, 0, [], [], ["r"], [], {"r": "batch"},
...               {"route_info": {"r": {"kind": "batch", "window_start_min": 60, "window_len_min": 120}}})
>>> v = IncidentView("i", "r", "performance", 60 * 60_000, 63 * 60_000, True, severity="high",
...                  signal="traffic_stop")
>>> false_line(v, sc)
'r (batch) performance sev=high signal=traffic_stop detected 1970-01-01 01:03 Thu | batch window minute 0 of 120'
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from detector.bench.scenarios.model import Scenario
from detector.bench.scenarios.score import IncidentView, ScenarioScore, is_optional

__all__ = ["FLEET_HEADER", "fleet_row", "fleet_misses", "false_line", "false_lines", "false_summary"]

MIN = 60_000
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

FLEET_HEADER = (
    f"{'seed':>4} {'routes':>6} {'events':>8} {'gen s':>6} {'replay s':>8} {'labels':>6} {'found':>5} "
    f"{'false':>5} {'crit':>4} {'wrong':>5} {'false/rd':>8} {'med':>5} {'p90':>5} {'rollback':>8} "
    f"{'rb wrong':>8} {'canary':>6} {'group':>5} {'leaks':>5}"
)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def fleet_row(s: ScenarioScore, timing: dict[str, float], routes: int) -> str:
    """One table row for a fleet seed."""
    return (
        f"{s.seed:>4} {routes:>6} {int(timing.get('events', 0)):>8} {timing.get('generate_s', 0.0):>6.1f} "
        f"{timing.get('replay_s', 0.0):>8.1f} {s.labels:>6} {s.found:>5} {s.false_incidents:>5} "
        f"{s.false_critical:>4} {s.wrong_type:>5} {s.false_per_route_day:>8.3f} {_num(s.median_delay_min):>5} "
        f"{_num(s.p90_delay_min):>5} {s.rollback_right:>3}/{s.rollback_expected:<4} {s.rollback_wrong:>8} "
        f"{s.canary_found:>2}/{s.canary_expected:<3} {s.group_right:>2}/{s.group_expected:<2} {s.leaks:>5}"
    )


def fleet_misses(s: ScenarioScore) -> list[str]:
    """Missed labels, wrong rollbacks and wrong groups (optional labels left out)."""
    out = [f"  seed {s.seed} missed: {r.label.description}" for r in s.results if r.required and r.incident_id is None]
    out += [
        f"  seed {s.seed} wrong rollback: {r.label.description} (expected {r.label.rollback})"
        for r in s.results
        if r.rollback_ok is False or r.rollback_wrong
    ]
    out += [
        f"  seed {s.seed} wrong group: {r.label.description} (expected {r.label.details.get('group')})"
        for r in s.results
        if r.required and r.incident_id is not None and r.group_ok is False
    ]
    return out


def _when(ms: int) -> tuple[str, str]:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%d %H:%M", t), DAY_NAMES[t.tm_wday]


def _context(v: IncidentView, sc: Scenario) -> list[str]:
    """Ground truth near a false incident, most telling first."""
    lo, det = min(v.started_ms, v.detected_ms), v.detected_ms
    out: list[str] = []
    for lb in sc.labels:
        if lb.route != v.route:
            continue
        if lb.start_ms - 5 * MIN <= det and lo <= lb.end_ms + 15 * MIN:
            out.append(f"overlaps label {lb.incident_type}/{lb.variant}")
        elif 0 <= lo - lb.end_ms <= 180 * MIN:
            out.append(f"{(lo - lb.end_ms) // MIN} min after label {lb.variant} ended")
    info: dict[str, Any] = sc.extra.get("route_info", {}).get(v.route, {})
    provider = info.get("provider")
    for lb in sc.labels:
        grp = lb.details.get("group") or {}
        near = lb.start_ms - 5 * MIN <= det <= lb.end_ms + 15 * MIN
        if lb.route != v.route and grp.get("value") == provider and near:
            out.append(f"during {provider} outage" + (" (route labelled optional)" if is_optional(lb) else ""))
            break
    for c in sc.extra.get("changes", []):
        if c["route"] == v.route and lo - 90 * MIN <= c["at_ms"] <= det + 5 * MIN:
            rel = (c["at_ms"] - lo) // MIN
            share = f" {round(c['share'] * 100)}%" if c.get("share") else ""
            out.append(f"{c['role']}{share} {c['kind']} change {c['from_version']}->{c['to_version']} at {rel:+d} min")
    for f in sc.extra.get("late_flushes", []):
        if f["route"] == v.route and lo - 30 * MIN <= f["arrive_ms"] <= det + 5 * MIN:
            late = (f["arrive_ms"] - f["start_ms"]) / MIN
            out.append(f"late flush {(f['end_ms'] - f['start_ms']) // MIN} min long, up to {late:.1f} min late")
    minute = (lo - sc.start_ms) // MIN
    if info.get("kind") == "batch":
        start, length = int(info["window_start_min"]), int(info["window_len_min"])
        into = minute % 1440 - start
        if 0 <= into <= length:
            out.append(f"batch window minute {into} of {length}")
        elif -30 <= into < 0:
            out.append(f"{-into} min before batch window")
        elif length < into <= length + 60:
            out.append(f"{into - length} min after batch window")
        else:
            out.append("outside batch window")
    elif info.get("kind") == "business":
        local = (minute + 60 * int(info.get("utc_offset_h", 0))) % 1440
        out.append(f"local {local // 60:02d}:{local % 60:02d}")
    return out


def false_line(v: IncidentView, sc: Scenario) -> str:
    """One line on a false incident: what fired, when, and the ground truth around it."""
    kind = sc.route_kinds.get(v.route, "?")
    when, day = _when(v.detected_ms)
    ctx = _context(v, sc)
    tail = f" | {'; '.join(ctx)}" if ctx else ""
    return (
        f"{v.route} ({kind}) {v.incident_type} sev={v.severity or '?'} signal={v.signal or '?'} "
        f"detected {when} {day}{tail}"
    )


def false_lines(s: ScenarioScore, sc: Scenario) -> list[str]:
    """One line per false incident of a seed."""
    return [f"  seed {s.seed} false: {false_line(v, sc)}" for v in s.false_views]


def false_summary(pairs: list[tuple[ScenarioScore, Scenario]]) -> list[str]:
    """False incidents counted by route kind, signal, type, severity and weekday."""
    views = [(v, sc) for s, sc in pairs for v in s.false_views]
    if not views:
        return ["false incidents: none"]
    routes = Counter(k for _, sc in pairs for k in sc.route_kinds.values())
    kinds = Counter(sc.route_kinds.get(v.route, "?") for v, sc in views)
    lines = [f"false incidents: {len(views)}"]
    lines.append("  by route kind: " + ", ".join(f"{k} {n} ({routes[k]} routes)" for k, n in kinds.most_common()))
    counts: dict[str, Counter[str]] = {
        "signal": Counter(v.signal or "?" for v, _ in views),
        "type": Counter(v.incident_type for v, _ in views),
        "severity": Counter(v.severity or "?" for v, _ in views),
        "weekday": Counter(_when(v.detected_ms)[1] for v, _ in views),
    }
    for name, c in counts.items():
        lines.append(f"  by {name}: " + ", ".join(f"{k} {n}" for k, n in c.most_common()))
    return lines
