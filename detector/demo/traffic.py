"""Synthetic AI telemetry for `detector demo`: a few routes of different volume, and an incident of another
type every ``period_min`` minutes of event time (pure: seeded, no clock, no I/O).

The incidents come in a fixed cycle so that the first minutes show the range of what the detector finds:

- ``bad_output`` on ``support.reply``, caused by a prompt release (a ``change`` event just before):
  reviewers reject most drafts, and the incident recommends rolling the prompt back to the version
  before it;
- ``tool_failure`` on ``crm.update``: its write tool fails on many calls;
- ``performance`` on ``docs.search``: latency several times its usual, and timeouts;
- ``retrieval_failure`` on ``docs.search`` after a new source index (rolled back afterwards);
- ``cost`` on ``claims.summarise``: one trace repeating in a loop, with many more tokens;
- ``access_privacy`` on ``sales.assistant``: access denials.

Each lasts ``length_min`` minutes, then the route is healthy again (a release is rolled back with a
``change`` event), so the incident resolves.

>>> t = Traffic(seed=1, start_ms=1_767_225_600_000)
>>> events = t.minute(0)
>>> sorted({e["type"] for e in events}) == ["change", "cost", "latency", "review", "usage"] or len(events) > 50
True
>>> t.active(0).incident_type, t.active(0).route
('bad_output', 'support.reply')
>>> t.active(15) is None, t.active(20).incident_type
(True, 'tool_failure')
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Traffic", "DemoRoute", "Injection", "ROUTES", "CYCLE"]


@dataclass(frozen=True)
class DemoRoute:
    name: str
    #: Requests a minute, on average.
    rpm: float
    model: str
    provider: str
    prompt: str
    latency_ms: float
    tokens_in: int
    tokens_out: int
    price_per_1k: float
    tool: str | None = None
    source_index: str | None = None
    #: Share of outputs a human reviews (drafting routes).
    reviewed: float = 0.0
    tenants: int = 20


ROUTES: tuple[DemoRoute, ...] = (
    DemoRoute("support.reply", 40, "gpt-4o-mini", "openai", "reply-v7", 900, 1200, 350, 0.0006, reviewed=0.5),
    DemoRoute("crm.update", 20, "claude-3-5-haiku", "anthropic", "crm-v3", 1400, 800, 120, 0.0010,
              tool="crm.update_record"),
    DemoRoute("docs.search", 30, "gpt-4o-mini", "openai", "search-v12", 700, 2500, 200, 0.0004,
              source_index="kb-2026-11-28"),
    DemoRoute("claims.summarise", 10, "gpt-4o", "openai", "claims-v5", 2500, 6000, 600, 0.0050, reviewed=0.2),
    DemoRoute("sales.assistant", 6, "gemini-1.5-flash", "google", "sales-v2", 1100, 900, 250, 0.0003),
)
_BY_NAME = {r.name: r for r in ROUTES}


@dataclass(frozen=True)
class Injection:
    incident_type: str
    route: str
    #: What is wrong, one line for the demo's view.
    what: str
    #: A release that causes it: (change_kind, bad version); rolled back when the injection ends.
    change: tuple[str, str] | None = None
    effects: dict[str, float] = field(default_factory=dict)


CYCLE: tuple[Injection, ...] = (
    Injection("bad_output", "support.reply", "prompt reply-v8 released: reviewers reject most drafts",
              change=("prompt", "reply-v8"), effects={"rejected": 0.65}),
    Injection("tool_failure", "crm.update", "crm.update_record fails on 40% of calls",
              effects={"tool_error": 0.4}),
    Injection("performance", "docs.search", "latency x5 and 15% timeouts",
              effects={"latency": 5.0, "timeout": 0.15}),
    Injection("retrieval_failure", "docs.search", "index kb-2026-12-01 released: half the searches find nothing",
              change=("source_index", "kb-2026-12-01"), effects={"retrieval_empty": 0.5}),
    Injection("cost", "claims.summarise", "an agent loop: one trace repeating, 8x the tokens",
              effects={"loop": 12.0, "tokens": 8.0}),
    Injection("access_privacy", "sales.assistant", "30% of requests denied access",
              effects={"access_denied": 0.3}),
)

_BASE_ERRORS = {"timeout": 0.003, "rate_limited": 0.002, "provider_error": 0.002, "validation_error": 0.002}
_STATUS = {"timeout": 504, "rate_limited": 429, "provider_error": 502, "tool_error": 502,
           "validation_error": 422, "access_denied": 403, "retrieval_empty": 200}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Traffic:
    """The demo's telemetry, a minute of event time at a time: ``minute(k)`` is minute ``k`` after
    ``start_ms``. Injections begin at minute ``first_min`` and every ``period_min`` after."""

    def __init__(self, seed: int, start_ms: int, *, period_min: int = 20, length_min: int = 12,
                 first_min: int = 0, routes: tuple[DemoRoute, ...] = ROUTES):
        self.rng = random.Random(seed)
        self.start_ms = start_ms - start_ms % 60_000
        self.period_min = period_min
        self.length_min = length_min
        self.first_min = first_min
        self.routes = routes
        self._n = 0

    def active(self, k: int) -> Injection | None:
        """The injection running at minute ``k``, if any."""
        if k < self.first_min:
            return None
        i, into = divmod(k - self.first_min, self.period_min)
        return CYCLE[i % len(CYCLE)] if into < self.length_min else None

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:x}"

    def minute(self, k: int) -> list[dict[str, Any]]:
        """Every event of minute ``k``, in time order."""
        base = self.start_ms + k * 60_000
        inj = self.active(k)
        out: list[dict[str, Any]] = []
        for r in self.routes:
            on = inj is not None and inj.route == r.name
            eff = inj.effects if on and inj is not None else {}
            prompt, index = r.prompt, r.source_index
            if on and inj is not None and inj.change is not None:
                kind, bad = inj.change
                start = self.active(k - 1) is not inj
                end_next = self.active(k + 1) is not inj
                good = prompt if kind == "prompt" else index
                if kind == "prompt":
                    prompt = bad
                else:
                    index = bad
                if start:
                    out.append(self._change(r, base, kind, str(good), bad))
                if end_next:  # rolled back at the end of this minute
                    out.append(self._change(r, base + 59_000, kind, bad, str(good)))
            n = self._poisson(r.rpm * (1 + 0.15 * math.sin(2 * math.pi * k / 90)))
            for _ in range(n):
                out.extend(self._request(r, base + self.rng.randrange(58_000), prompt, index, eff))
            if eff.get("loop"):
                trace = f"tr-loop-{k // self.period_min}"
                for _ in range(int(eff["loop"])):
                    out.extend(self._request(r, base + self.rng.randrange(58_000), prompt, index, eff, trace=trace))
        out.sort(key=lambda e: e["_ms"])
        for e in out:
            e["ts"] = _iso(e.pop("_ms"))
        return out

    def _poisson(self, lam: float) -> int:
        # Knuth's method is fine at these rates
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _change(self, r: DemoRoute, ms: int, kind: str, frm: str, to: str) -> dict[str, Any]:
        return {"event_id": self._id("chg"), "type": "change", "_ms": ms, "route": r.name, "change_kind": kind,
                "from_version": frm, "to_version": to, "actor": "release-bot"}

    def _request(self, r: DemoRoute, ms: int, prompt: str, index: str | None, eff: dict[str, float],
                 trace: str | None = None) -> list[dict[str, Any]]:
        rng = self.rng
        ctx: dict[str, Any] = {"route": r.name, "model": r.model, "provider": r.provider, "prompt_version": prompt,
                               "config_version": "cfg-3", "tenant": f"tenant-{rng.randrange(r.tenants)}",
                               "request_id": self._id("req"), "trace_id": trace or self._id("tr")}
        if r.tool is not None:
            ctx["tool"] = r.tool
        if index is not None:
            ctx["source_index"] = index
        scale = eff.get("tokens", 1.0)
        tin = int(r.tokens_in * scale * rng.uniform(0.7, 1.3))
        tout = int(r.tokens_out * scale * rng.uniform(0.6, 1.4))
        events: list[dict[str, Any]] = [
            {"event_id": self._id("u"), "type": "usage", "_ms": ms, **ctx, "input_tokens": tin, "output_tokens": tout},
            {"event_id": self._id("l"), "type": "latency", "_ms": ms + 1,
             **ctx, "latency_ms": round(r.latency_ms * eff.get("latency", 1.0) * rng.lognormvariate(0, 0.25), 1)},
            {"event_id": self._id("c"), "type": "cost", "_ms": ms + 2, **ctx,
             "cost_usd": round((tin + tout) / 1000 * r.price_per_1k, 6)},
        ]
        for cls, p in {**_BASE_ERRORS, **{k: v for k, v in eff.items() if k in _STATUS}}.items():
            if cls == "tool_error" and r.tool is None:
                continue
            if rng.random() < p:
                events.append({"event_id": self._id("e"), "type": "error", "_ms": ms + 3, **ctx, "error_class": cls,
                               "status_code": _STATUS[cls]})
                break
        if r.reviewed and rng.random() < r.reviewed:
            bad = eff.get("rejected", 0.04)
            u = rng.random()
            outcome = "rejected" if u < bad else "edited" if u < bad + 0.2 else "accepted"
            events.append({"event_id": self._id("rv"), "type": "review", "_ms": ms + 60_000 // 4, **ctx,
                           "outcome": outcome})
        return events
