"""What `detector demo` prints: a line per incident event, and a status line (pure: strings in, strings out).

>>> inc = {"event": "opened", "incident_id": "inc-1a2b", "route": "support.reply", "incident_type": "bad_output",
...        "severity": "high", "at": "2026-12-02T10:04:00Z",
...        "summary": "[HIGH] Bad output on support.reply: reviewers reject drafts. Affected so far: 9 requests.",
...        "recommendations": [{"action": "rollback", "target": {"kind": "prompt", "to_version": "reply-v7"}},
...                            {"action": "draft_only", "target": None}, {"action": "manual_review", "target": None}]}
>>> print(incident_lines(inc, elapsed_s=34, color=False))
[  0:34] OPENED     high     bad_output         support.reply        inc-1a2b
         do: rollback prompt to reply-v7; draft_only; manual_review
         [HIGH] Bad output on support.reply: reviewers reject drafts.
>>> status_line(elapsed_s=65, events=12000, rate=3100.4, windows=340, open_incidents=2,
...             injected="bad_output on support.reply")
'[  1:05] 12,000 events (3,100/s) · 340 windows closed · 2 open incidents · injecting: bad_output on support.reply'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["incident_lines", "status_line", "clock"]

_COLORS = {"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[36m",
           "resolved": "\033[32m"}
_RESET = "\033[0m"


def clock(elapsed_s: float) -> str:
    """Wall time since the demo started, as ``[m:ss]``."""
    m, s = divmod(int(elapsed_s), 60)
    return f"[{m:3d}:{s:02d}]"


def _recommendation(rec: Mapping[str, Any]) -> str:
    target = rec.get("target")
    if isinstance(target, Mapping) and target.get("to_version") is not None:
        return f"{rec.get('action')} {target.get('kind')} to {target.get('to_version')}"
    if isinstance(target, str):
        return f"{rec.get('action')} {target}"
    return str(rec.get("action"))


def _first_sentence(text: str) -> str:
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


def incident_lines(inc: Mapping[str, Any], elapsed_s: float, color: bool = True, recommendations: int = 3) -> str:
    """An incident event: what happened to which incident, the first recommendations, the summary's first
    sentence."""
    event = str(inc.get("event", "")).upper()
    sev = str(inc.get("severity", ""))
    paint = _COLORS.get("resolved" if event == "RESOLVED" else sev, "") if color else ""
    head = (f"{clock(elapsed_s)} {paint}{event:10s} {sev:8s} {inc.get('incident_type', ''):18s}"
            f"{_RESET if paint else ''} {inc.get('route', ''):20s} {inc.get('incident_id', '')}")
    pad = " " * 9
    lines = [head]
    recs = [r for r in inc.get("recommendations") or [] if isinstance(r, Mapping)][:recommendations]
    if recs and event != "RESOLVED":
        lines.append(f"{pad}do: " + "; ".join(_recommendation(r) for r in recs))
    summary = str(inc.get("summary") or "")
    if summary:
        lines.append(pad + _first_sentence(summary))
    return "\n".join(lines)


def status_line(elapsed_s: float, events: int, rate: float, windows: int, open_incidents: int,
                injected: str | None) -> str:
    """The counters: events sent and their rate, windows closed, incidents open, what is being injected."""
    what = f" · injecting: {injected}" if injected else " · all routes healthy"
    return (f"{clock(elapsed_s)} {events:,} events ({rate:,.0f}/s) · {windows:,} windows closed · "
            f"{open_incidents} open incident{'s' if open_incidents != 1 else ''}{what}")
