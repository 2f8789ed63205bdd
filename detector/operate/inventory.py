"""The route inventory: every AI route seen, what it runs, who owns it, and its state (pure).

A small team's first habit is knowing what uses AI and who can shut it off: for each route held, the
versions in use per kind (models, prompts, configs, source indexes, tools), the owner and escalation
from the config, the containment mode recommended now and the open incidents, and the last event time.
`detector routes --events FILE` builds it from a replay; the service serves it at ``/routes``.

>>> from detector.config import Config
>>> from detector.pipeline import Pipeline
>>> import json
>>> cfg = Config.model_validate({"routes": {"support.*": {"owner": "support-ai", "escalation": "pd:support"}}})
>>> pipe = Pipeline(cfg)
>>> lines = [json.dumps({"event_id": f"e{i}", "type": "usage", "ts": 1767225600000 + i * 1000,
...                      "route": "support.reply", "model": "gpt-4o-mini"}).encode() for i in range(300)]
>>> _ = pipe.process_many(lines); _ = pipe.flush()
>>> (row,) = route_rows(pipe, cfg, ContainmentTracker())
>>> row["route"], row["owner"], row["mode"], row["versions"], row["last_event"]
('support.reply', 'support-ai', 'normal', {'model': ['gpt-4o-mini']}, '2026-01-01T00:04:59Z')
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from detector.config import Config
from detector.incidents.changes import ChangeTracker
from detector.incidents.mode import ContainmentTracker
from detector.pipeline import Pipeline

__all__ = ["route_rows", "render", "ContainmentTracker"]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def route_rows(pipe: Pipeline, config: Config, containment: ContainmentTracker) -> list[dict[str, Any]]:
    """One row per route the pipeline holds, by route name."""
    out = []
    changes = getattr(pipe.incidents, "changes", None)  # an engine without a change tracker lists no versions
    for name in sorted(list(pipe.windower.routes)):
        r = pipe.windower.routes.get(name)
        if r is None:  # evicted meanwhile (the service's HTTP thread reads while the loop runs)
            continue
        rc = config.route(name)
        rec = containment.record(name) or {}
        out.append({
            "route": name,
            "owner": rc.owner,
            "escalation": rc.escalation,
            "versions": changes.in_use(name) if isinstance(changes, ChangeTracker) else {},
            "mode": rec.get("mode", "normal"),
            "open_incidents": list(rec.get("open_incidents", [])),
            "last_event": _iso(r.last_seen),
        })
    return out


def render(rows: list[dict[str, Any]]) -> str:
    """A table for a terminal: one line per route, then its versions."""
    if not rows:
        return "no routes"
    lines = []
    w = max(len(r["route"]) for r in rows)
    lines.append(f"{'route':{w}}  {'owner':16}  {'mode':12}  {'open':4}  last event            escalation")
    for r in rows:
        lines.append(f"{r['route']:{w}}  {str(r['owner'] or '(none)'):16}  {r['mode']:12}  "
                     f"{len(r['open_incidents']):4}  {r['last_event']}  {r['escalation'] or ''}")
        for kind, vs in sorted(r["versions"].items()):
            lines.append(f"{'':{w}}    {kind}: {', '.join(vs)}")
    return "\n".join(lines)
