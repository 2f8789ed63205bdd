"""Writes examples/events.jsonl: 150 minutes of one route, with a tool release that breaks.

A small, readable stand-in for real telemetry, used by README's main job:
`crm.update_record` serves about 12 requests a minute through two tools; at
minute 70 a change event releases `crm.write@2.4.0`, and from then on a third of
the calls to that tool fail with `tool_error`. The replay should open a
tool_failure incident that names the tool and recommends rolling it back to
`crm.write@2.3.1`, the last version seen healthy. At minute 100 the release
is rolled back, the errors stop, and the incident resolves once its signals
have stayed healthy for 15 minutes.

Run: python examples/make_events.py  (deterministic: same output every time)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

START_MS = 1_795_770_000_000  # 2026-11-27T09:00:00Z
ROUTE = "crm.update_record"


def events(seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    n = 0
    for minute in range(150):
        released = 70 <= minute < 100
        if minute == 70:
            out.append({"event_id": "chg-1", "type": "change", "ts": START_MS + minute * 60_000, "route": ROUTE,
                        "change_kind": "tool", "from_version": "crm.write@2.3.1", "to_version": "crm.write@2.4.0",
                        "actor": "release-bot"})
        if minute == 100:
            out.append({"event_id": "chg-2", "type": "change", "ts": START_MS + minute * 60_000, "route": ROUTE,
                        "change_kind": "tool", "from_version": "crm.write@2.4.0", "to_version": "crm.write@2.3.1",
                        "actor": "on-call"})
        for _ in range(rng.randint(9, 15)):
            n += 1
            ts = START_MS + minute * 60_000 + rng.randrange(60_000)
            writes = rng.random() < 0.6
            tool = ("crm.write@2.4.0" if released else "crm.write@2.3.1") if writes else "crm.lookup@1.9.0"
            ctx = {"route": ROUTE, "model": "gpt-4o-mini", "prompt_version": "crm-v5", "tool": tool,
                   "tenant": f"tenant-{rng.randrange(12)}", "request_id": f"req-{n:05d}",
                   "trace_id": f"tr-{n // 2:05d}"}
            out.append({"event_id": f"u{n}", "type": "usage", "ts": ts, **ctx,
                        "input_tokens": rng.randint(400, 1600), "output_tokens": rng.randint(40, 200)})
            broken = released and writes and rng.random() < 0.35
            if broken or rng.random() < 0.005:
                out.append({"event_id": f"e{n}", "type": "error", "ts": ts + 800, **ctx,
                            "error_class": "tool_error", "status_code": 502})
    out.sort(key=lambda e: (int(e["ts"]), str(e["event_id"])))  # type: ignore[call-overload]
    return out


if __name__ == "__main__":
    path = Path(__file__).resolve().parent / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events()), encoding="utf-8")
    print(f"wrote {path.name}")
