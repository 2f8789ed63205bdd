"""`detector replay --report DIR`: one self-contained HTML file (no network, no CDN) of what a replay did.

Plots use **uPlot** (MIT, 50 KB, vendored in ``vendor/``): a canvas time-series library made for many
series of thousands of points, so a week of 50 routes stays fast to open and small on disk, where
SVG-based libraries (or one PNG per plot) grow with every point. The plot data is gzip-compressed JSON
in the page, inflated by the browser's own ``DecompressionStream``; a route's plots are drawn when its
section is opened, so the page opens at once.

Per route, one plot per signal judged: the observed value, its baseline, the threshold, the windows
judged anomalous (red points), incident spans shaded by type and change markers (purple lines). Then a
table of incidents with their recommendations, a summary of events, rejections and incidents, and, with
``--compare``, the incidents the other config adds or removes.

>>> inc = [{"event": "opened", "incident_id": "i1", "route": "r", "incident_type": "cost", "severity": "high",
...         "started_at": "2026-01-01T00:00:00Z", "detected_at": "2026-01-01T00:03:00Z", "resolved_at": None,
...         "recommendations": [{"action": "rate_limit", "target": None}]}]
>>> fold(inc)[0]["severity"], fold(inc)[0]["resolved_at"]
('high', None)
>>> a = fold(inc); b = fold([{**inc[0], "incident_id": "i9", "started_at": "2026-01-01T00:01:00Z"}])
>>> [len(x) for x in compare(a, b)]  # the same incident by route, type and overlapping span
[0, 0, 1]
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from detector.ingest.decode import event_time_ms as _ms
from detector.pipeline import Stats
from detector.report.record import Recorder

__all__ = ["fold", "compare", "render", "write_report"]

_SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}
TYPE_COLORS = {"bad_output": "#d62728", "retrieval_failure": "#9467bd", "tool_failure": "#ff7f0e",
               "access_privacy": "#8c564b", "performance": "#1f77b4", "cost": "#2ca02c"}


def fold(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per incident from its messages: the highest severity, times, the last recommendations."""
    rows: dict[str, dict[str, Any]] = {}
    for m in messages:
        iid = str(m.get("incident_id"))
        row = rows.get(iid)
        if row is None:
            row = rows[iid] = {"incident_id": iid, "route": m.get("route"), "incident_type": m.get("incident_type"),
                               "severity": m.get("severity"), "started_at": m.get("started_at"),
                               "detected_at": m.get("detected_at"), "resolved_at": None, "recommendations": [],
                               "messages": 0}
        row["messages"] += 1
        if _SEVERITY.get(str(m.get("severity")), -1) > _SEVERITY.get(str(row["severity"]), -1):
            row["severity"] = m.get("severity")
        if m.get("resolved_at"):
            row["resolved_at"] = m.get("resolved_at")
        if m.get("recommendations"):
            row["recommendations"] = m["recommendations"]
    return sorted(rows.values(), key=lambda r: (str(r["started_at"]), r["incident_id"]))


def _overlap(a: dict[str, Any], b: dict[str, Any], end_ms: int) -> bool:
    a0, b0 = _ms(a["started_at"]) or 0, _ms(b["started_at"]) or 0
    a1, b1 = _ms(a["resolved_at"]) or end_ms, _ms(b["resolved_at"]) or end_ms
    return a["route"] == b["route"] and a["incident_type"] == b["incident_type"] and a0 <= b1 and b0 <= a1


def compare(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                        list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Incidents only with config A (B removes them), only with B (B adds them), and the pairs in both."""
    end = max([_ms(x["resolved_at"]) or _ms(x["started_at"]) or 0 for x in a + b] + [0]) + 1
    used: set[int] = set()
    both: list[tuple[dict[str, Any], dict[str, Any]]] = []
    only_a = []
    for x in a:
        j = next((j for j, y in enumerate(b) if j not in used and _overlap(x, y, end)), None)
        if j is None:
            only_a.append(x)
        else:
            used.add(j)
            both.append((x, b[j]))
    only_b = [y for j, y in enumerate(b) if j not in used]
    return only_a, only_b, both


def _recs(row: dict[str, Any]) -> str:
    out = []
    for r in row["recommendations"][:3]:
        t = r.get("target")
        if isinstance(t, dict) and t.get("to_version") is not None:
            out.append(f"{r.get('action')} {t.get('kind')} → {t.get('to_version')}")
        elif isinstance(t, str):
            out.append(f"{r.get('action')} {t}")
        else:
            out.append(str(r.get("action")))
    return "; ".join(out)


def _table(rows: list[dict[str, Any]], empty: str) -> str:
    if not rows:
        return f"<p class=muted>{html.escape(empty)}</p>"
    head = "<tr><th>incident</th><th>route</th><th>type</th><th>severity</th><th>started</th><th>detected</th>" \
           "<th>resolved</th><th>recommendations</th></tr>"
    body = "".join(
        f"<tr><td><code>{html.escape(r['incident_id'])}</code></td><td><a href='#r-{html.escape(str(r['route']))}'>"
        f"{html.escape(str(r['route']))}</a></td><td><span class=dot style='background:"
        f"{TYPE_COLORS.get(str(r['incident_type']), '#777')}'></span>{html.escape(str(r['incident_type']))}</td>"
        f"<td>{html.escape(str(r['severity']))}</td><td>{html.escape(str(r['started_at']))}</td>"
        f"<td>{html.escape(str(r['detected_at']))}</td><td>{html.escape(str(r['resolved_at'] or 'open'))}</td>"
        f"<td>{html.escape(_recs(r))}</td></tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _summary(stats: Stats, incidents: list[dict[str, Any]]) -> str:
    rej = ", ".join(f"{k} {v:,}" for k, v in sorted(stats.rejected.items()) if k != "late" and v) or "none"
    by_type: dict[str, int] = {}
    for r in incidents:
        by_type[str(r["incident_type"])] = by_type.get(str(r["incident_type"]), 0) + 1
    types = ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())) or "none"
    items = [("events read", f"{stats.read:,}"), ("accepted", f"{stats.accepted:,}"), ("rejected", rej),
             ("late", f"{stats.late:,}"), ("duplicates", f"{stats.duplicates:,}"),
             ("windows closed", f"{stats.windows_closed:,}"), ("incidents", f"{len(incidents)} ({types})")]
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>"


def _vendor(name: str) -> str:
    return resources.files("detector.report").joinpath("vendor", name).read_text(encoding="utf-8")


def render(recorder: Recorder, messages: list[dict[str, Any]], stats: Stats, *, title: str = "Replay report",
           other: list[dict[str, Any]] | None = None, other_name: str = "config B", points: int = 600) -> str:
    """The report page. ``other``: the incident messages of a replay under another config (``--compare``)."""
    incidents = fold(messages)
    grid, series = recorder.series(points)
    for route, sigs in series.items():  # signals that never moved (a canary with no canary) say nothing
        kept = {n: v for n, v in sigs.items() if v["anomalous"] or any(x for x in v["observed"] if x is not None)}
        series[route] = dict(sorted(kept.items(), key=lambda kv: (-len(kv[1]["anomalous"]), kv[0])))
    spans: dict[str, list[list[Any]]] = {}
    for r in incidents:
        s, e = _ms(r["started_at"]), _ms(r["resolved_at"]) or recorder.last_ms
        if s is not None:
            spans.setdefault(str(r["route"]), []).append([s, e, r["incident_type"], r["incident_id"]])
    changes = {route: [[ts, f"{kind} {frm} → {to}"] for ts, kind, frm, to in cs]
               for route, cs in recorder.changes.items()}
    data = {"grid": grid, "routes": series, "spans": spans, "changes": changes, "colors": TYPE_COLORS}
    packed = base64.b64encode(gzip.compress(json.dumps(data, separators=(",", ":")).encode(), 9)).decode()
    by_route: dict[str, int] = {}
    for r in incidents:
        by_route[str(r["route"])] = by_route.get(str(r["route"]), 0) + 1
    routes_html = "".join(
        f"<details id='r-{html.escape(route)}' data-route='{html.escape(route)}'"
        f"{' open' if by_route.get(route) else ''}><summary>{html.escape(route)} "
        f"<span class=muted>{len(series[route])} signals, {by_route.get(route, 0)} incident(s)</span></summary>"
        f"<div class=plots></div></details>" for route in sorted(series))
    compare_html = ""
    if other is not None:
        only_a, only_b, both = compare(incidents, fold(other))
        compare_html = (f"<h2>Compared with {html.escape(other_name)}</h2>"
                        f"<p>{len(both)} incident(s) in both; {len(only_a)} only with this config (the other "
                        f"removes them); {len(only_b)} only with {html.escape(other_name)} (it adds them).</p>"
                        f"<div class=side><div><h3>Removed by {html.escape(other_name)}</h3>"
                        f"{_table(only_a, 'none')}</div><div><h3>Added by {html.escape(other_name)}</h3>"
                        f"{_table(only_b, 'none')}</div></div>")
    legend = " ".join(f"<span class=dot style='background:{c}'></span>{html.escape(t)}" for t, c in TYPE_COLORS.items())
    return _PAGE.format(
        title=html.escape(title), css=_vendor("uPlot.min.css"), js=_vendor("uPlot.iife.min.js"),
        summary=_summary(stats, incidents), compare=compare_html,
        incidents=_table(incidents, "No incident."), routes=routes_html or "<p class=muted>No window judged.</p>",
        legend=legend, data=packed)


def write_report(out_dir: Path, recorder: Recorder, messages: list[dict[str, Any]], stats: Stats,
                 **kw: Any) -> Path:
    """Write ``report.html`` into ``out_dir`` (made if needed); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    path.write_text(render(recorder, messages, stats, **kw), encoding="utf-8")
    return path


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{css}</style>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0; }} td, th {{ border: 1px solid #ddd; padding: 3px 6px;
 text-align: left; vertical-align: top; font-size: 13px; }}
th {{ background: #f4f4f4; }} .muted {{ color: #777; }} code {{ font-size: 12px; }}
dl {{ display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }} dt {{ font-weight: 600; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 8px; }}
details {{ border-top: 1px solid #eee; padding: 4px 0; }} summary {{ cursor: pointer; font-weight: 600; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 8px; }} .plot h4 {{ margin: 4px 0 0 8px; font-weight: 500; }}
.side {{ display: flex; gap: 2em; flex-wrap: wrap; }} #errors {{ color: #b00; }}
</style></head>
<body data-rendered="0">
<h1>{title}</h1>
<div id="errors"></div>
<h2>Summary</h2>{summary}
{compare}
<h2>Incidents</h2>{incidents}
<h2>Routes</h2>
<p class="muted">Per signal: observed (blue), baseline (grey), threshold (orange, dashed), windows judged
anomalous (red points), incident spans shaded by type: {legend}; changes as purple lines. Drag to zoom,
double-click to reset. Routes with incidents are open; open another to draw it.</p>
{routes}
<script>{js}</script>
<script id="data" type="application/octet-stream">{data}</script>
<script>
window.addEventListener("error", e => {{
  document.getElementById("errors").textContent += "script error: " + e.message + "\\n";
}});
(async () => {{
  const b64 = document.getElementById("data").textContent.trim();
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  const D = await new Response(stream).json();
  const xs = D.grid.map(t => t / 1000);
  const own = (o, k) => Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined;  // routes named "constructor"
  let drawn = 0;
  function shade(route) {{
    return u => {{
      const ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
      for (const [s, e, type] of (own(D.spans, route) || [])) {{
        const x0 = u.valToPos(s / 1000, "x", true), x1 = u.valToPos(e / 1000, "x", true);
        ctx.fillStyle = (D.colors[type] || "#777") + "33";
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), h);
      }}
      ctx.strokeStyle = "#9b30ff"; ctx.lineWidth = 1.5;
      for (const [t] of (own(D.changes, route) || [])) {{
        const x = u.valToPos(t / 1000, "x", true);
        ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      }}
    }};
  }}
  function draw(el) {{
    if (el.dataset.drawn) return;
    el.dataset.drawn = "1";
    const route = el.dataset.route, box = el.querySelector(".plots"), sigs = own(D.routes, route) || {{}};
    for (const name of Object.keys(sigs)) {{
      const s = sigs[name];
      const anom = s.observed.map(() => null);
      for (const i of s.anomalous) anom[i] = s.observed[i];
      const div = document.createElement("div");
      div.className = "plot";
      div.innerHTML = "<h4></h4>";
      div.firstChild.textContent = name + (s.anomalous.length ? " (" + s.anomalous.length + " anomalous)" : "");
      box.appendChild(div);
      new uPlot({{
        width: 560, height: 190, scales: {{ x: {{ time: true }} }}, legend: {{ show: false }},
        axes: [{{}}, {{ size: 64 }}],
        series: [{{}}, {{ label: "observed", stroke: "#1f77b4", spanGaps: true }},
                 {{ label: "baseline", stroke: "#999", spanGaps: true }},
                 {{ label: "threshold", stroke: "#ff7f0e", dash: [5, 4], spanGaps: true }},
                 {{ label: "anomalous", stroke: "#d62728", width: 0, points: {{ show: true, size: 6,
                    fill: "#d62728" }} }}],
        hooks: {{ drawClear: [shade(route)] }},
      }}, [xs, s.observed, s.baseline, s.threshold, anom], div);
      drawn += 1;
    }}
    document.body.dataset.rendered = String(drawn);
  }}
  for (const el of document.querySelectorAll("details[data-route]")) {{
    if (el.open) draw(el);
    el.addEventListener("toggle", () => {{ if (el.open) draw(el); }});
  }}
  document.body.dataset.ready = "1";
}})().catch(e => {{ document.getElementById("errors").textContent += "report error: " + e + "\\n"; }});
</script>
</body></html>
"""
