"""Seeded, deterministic synthetic AI telemetry with labelled incidents.

``generate_scenario(seed, days)`` returns SPEC section 1 events (dicts ready
for JSON) for six routes of very different volume, with a diurnal traffic
shape, background errors, human reviews, benign releases, a few late and
duplicated events, canary strings in every free-text field, and the
incidents chosen by :mod:`detector.bench.scenarios.plan`, each with its
:class:`~detector.bench.scenarios.model.Label`. The first ~18 hours are always
clean so that detectors can learn a baseline.

>>> s = generate_scenario(7, days=1)
>>> sorted({e["type"] for e in s.events})
['change', 'cost', 'error', 'latency', 'review', 'usage']
"""

from __future__ import annotations

import gc
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from detector.bench.scenarios.catalog import (
    BASE_ERROR_RATES,
    MODEL_PRICES,
    MODEL_PROVIDER,
    RETRIEVAL_EMPTY_RATE,
    RETRIEVAL_STALE_RATE,
    ROUTES,
    TOOL_ERROR_RATE,
    VALIDATION_ERROR_RATE,
    RouteSpec,
    diurnal,
)
from detector.bench.scenarios.model import Label, Scenario, write_scenario
from detector.bench.scenarios.plan import MIN, Change, Injection, Plan, initial_versions, make_plan
from detector.ingest.decode import parse_ts

__all__ = ["generate_scenario", "write_scenario", "START_MS"]

START_MS = 1_740_960_000_000  # 2025-03-03T00:00:00Z
EPOCH_TS_SHARE = 0.05  # share of events whose ts is epoch milliseconds, not RFC 3339
LATE_SHARE = 0.0002
DUPLICATE_SHARE = 0.0003
EXTRA_TEXT_SHARE = 0.03
STATUS = {
    "timeout": 504,
    "rate_limited": 429,
    "provider_error": 502,
    "tool_error": 502,
    "validation_error": 422,
    "access_denied": 403,
    "other": 500,
}
BASE_REVIEW = (
    ("accepted", 0.70),
    ("edited", 0.245),
    ("rejected", 0.04),
    ("escalated", 0.01),
    ("overridden", 0.005),
)
ACTORS = {
    "benign": "release-pipeline",
    "cause": "deploy-bot",
    "rollback": "oncall-engineer",
    "canary": "canary-controller",
    "promote": "canary-controller",
}
TEXTS = (
    "reviewer note",
    "wrong figure cited",
    "tone too informal",
    "missing clause",
    "hallucinated order id",
)


def _fmt_ts(abs_ms: int, _cache: dict[int, str] = {}) -> str:  # noqa: B006 - deliberate memo
    """RFC 3339 UTC with milliseconds, e.g. ``2025-03-03T00:00:01.500Z``.

    >>> _fmt_ts(START_MS + 1500)
    '2025-03-03T00:00:01.500Z'
    """
    sec, ms = divmod(abs_ms, 1000)
    prefix = _cache.get(sec)
    if prefix is None:
        if len(_cache) > 100_000:
            _cache.clear()
        prefix = _cache[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{prefix}.{ms:03d}Z"


def _base_errors(r: RouteSpec) -> dict[str, float]:
    """Background error probability per class on ``r`` (about 1% in all)."""
    probs = dict(BASE_ERROR_RATES)
    if r.tools:
        probs["tool_error"] = TOOL_ERROR_RATE
    if r.source_index:
        probs["retrieval_empty"] = RETRIEVAL_EMPTY_RATE
        probs["retrieval_stale"] = RETRIEVAL_STALE_RATE
    if r.structured:
        probs["validation_error"] = VALIDATION_ERROR_RATE
    return probs


class _Synth:
    """Builds the events of one scenario, route by route."""

    def __init__(self, seed: int, days: int, plan: Plan) -> None:
        self.seed = seed
        self.days = days
        self.plan = plan
        self.rng = random.Random(seed * 7919 + 1)
        self.np = np.random.default_rng(seed)
        self.canaries: list[str] = []
        self.out: list[tuple[int, dict[str, Any]]] = []  # (rel ts ms, event)
        self.n_ids = 0
        self.loop_traces: dict[int, str] = {}
        self.loop_tenants: dict[int, str] = {}
        self.base_errors: dict[str, dict[str, float]] = {}
        self.start_ms = START_MS
        self.ttft_routes: frozenset[str] = frozenset(("support-chat", "email-draft"))

    # -- small helpers -------------------------------------------------------
    def canary(self) -> str:
        c = f"CANARY-{self.seed}-{len(self.canaries)}"
        self.canaries.append(c)
        return c

    def head(self, kind: str, rel_ms: int, route: str, text: str | None = None) -> dict[str, Any]:
        """Common fields; ``text`` is the pre-formatted RFC 3339 form of ``rel_ms`` if known."""
        self.n_ids += 1
        abs_ms = self.start_ms + rel_ms
        ts: str | int
        if self.rng.random() < EPOCH_TS_SHARE:
            ts = abs_ms
        else:
            ts = text or _fmt_ts(abs_ms)
        return {"event_id": f"ev-{self.seed}-{self.n_ids:07d}", "type": kind, "ts": ts, "route": route}

    def hexid(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    # -- events ----------------------------------------------------------------
    def change(self, c: Change, versions: dict[str, str]) -> None:
        ev = self.head("change", c.at_ms, c.route)
        ev.update(change_kind=c.kind, from_version=c.from_version, to_version=c.to_version)
        ev["actor"] = f"{ACTORS[c.role]} ({self.canary()})"
        ev["prompt_version"] = versions["prompt"]
        ev["config_version"] = versions["config"]
        ev["model"] = versions["model"]
        self.out.append((c.at_ms, ev))

    def request(
        self,
        r: RouteSpec,
        t: int,
        v: dict[str, str],
        effects: list[Injection],
        trace: str,
        tenant: str,
        loop: bool = False,
    ) -> None:
        rng = self.rng
        tool = rng.choice(r.tools) if r.tools else None
        ctx: dict[str, Any] = {
            "model": v["model"],
            "provider": MODEL_PROVIDER[v["model"]],
            "prompt_version": v["prompt"],
            "config_version": v["config"],
            "workflow": r.workflow,
            "tenant": tenant,
            "request_id": self.hexid("req"),
            "trace_id": trace,
        }
        if r.source_index:
            ctx["source_index"] = v["source_index"]
        if tool:
            ctx["tool"] = v[f"tool:{tool}"]  # "<name>@<version>": the tool's version lives in `tool`
        if r.service_account:
            ctx["service_account"] = r.service_account
        err = self.error_class(r, tool, effects)
        in_mult = 2.0 if loop else 1.0
        lat_mult = 1.0
        for e in effects:
            in_mult *= e.input_token_mult
            lat_mult *= e.latency_mult
        gauss, exp = rng.gauss, math.exp
        tok_in = int(r.input_tokens * exp(gauss(0.0, 0.35)) * in_mult)
        tok_out = int(r.output_tokens * exp(gauss(0.0, 0.5)))
        latency = r.latency_ms * exp(gauss(0.0, r.latency_sigma)) * lat_mult
        retries = 1 if rng.random() < 0.02 else 0
        if err in ("timeout", "rate_limited", "provider_error", "access_denied"):
            tok_out = 0
            retries = rng.randint(1, 2) if err != "access_denied" else 0
            latency = {
                "timeout": r.timeout_ms * rng.uniform(1.0, 1.02),
                "rate_limited": rng.uniform(20.0, 300.0),
                "provider_error": rng.uniform(100.0, 2000.0),
                "access_denied": rng.uniform(30.0, 400.0),
            }[err]
            if err in ("rate_limited", "access_denied"):
                tok_in = 0
        elif err == "retrieval_empty":
            latency *= 0.6
        text = _fmt_ts(self.start_ms + t)
        usage = self.head("usage", t, r.name, text)
        usage.update(ctx)
        usage.update(requests=1, input_tokens=tok_in, output_tokens=tok_out, retries=retries)
        if rng.random() < EXTRA_TEXT_SHARE:
            c = self.canary()
            usage.update(
                prompt=f"Please handle this for me {c}",
                output=f"Sure, here it is {c}",
                user_email=f"{c}@example.com",
            )
        self.out.append((t, usage))
        lat = self.head("latency", t, r.name, text)
        lat.update(ctx)
        lat["latency_ms"] = round(latency, 1)
        if r.name in self.ttft_routes and err is None:
            lat["ttft_ms"] = round(latency * rng.uniform(0.12, 0.3), 1)
        self.out.append((t, lat))
        p_in, p_out = MODEL_PRICES[v["model"]]
        cost = self.head("cost", t, r.name, text)
        cost.update(ctx)
        cost["cost_usd"] = round((tok_in * p_in + tok_out * p_out) / 1000.0, 7)
        self.out.append((t, cost))
        if err is not None:
            ev = self.head("error", t, r.name, text)
            ev.update(ctx)
            ev["error_class"] = err
            if err in STATUS and rng.random() < 0.9:
                ev["status_code"] = STATUS[err] if err != "provider_error" else rng.choice((500, 502, 503))
            if rng.random() < 0.2:
                ev["message"] = f"upstream said: {rng.choice(TEXTS)} {self.canary()}"
            self.out.append((t, ev))
        hard = err in ("timeout", "rate_limited", "provider_error", "access_denied")
        if r.review_share and not loop and not hard and rng.random() < r.review_share:
            self.review(r, t, ctx, effects)

    def error_class(self, r: RouteSpec, tool: str | None, effects: list[Injection]) -> str | None:
        probs = self.base_errors.get(r.name)
        if probs is None:
            probs = self.base_errors[r.name] = _base_errors(r)
        if effects:
            probs = dict(probs)
        for inj in effects:
            if inj.error_tool is None or inj.error_tool == tool:
                for cls, p in inj.error_rates.items():
                    probs[cls] = probs.get(cls, 0.0) + p
        u = self.rng.random()
        acc = 0.0
        for cls, p in probs.items():
            acc += p
            if u < acc:
                return cls
        return None

    def review(self, r: RouteSpec, t: int, ctx: dict[str, Any], effects: list[Injection]) -> None:
        rng = self.rng
        lag = int(min(600_000.0, rng.lognormvariate(math.log(120_000.0), 0.6)))
        rej = [e.reject_rate for e in effects if e.reject_rate is not None]
        if rej:
            bad = rej[0]
            table = [("rejected", bad * 0.8), ("escalated", bad * 0.2)]
            good = [x for x in BASE_REVIEW if x[0] in ("accepted", "edited", "overridden")]
            norm = sum(p for _, p in good)
            table += [(o, p / norm * (1.0 - bad)) for o, p in good]
        else:
            table = list(BASE_REVIEW)
        u = rng.random()
        acc = 0.0
        outcome = table[-1][0]
        for o, p in table:
            acc += p
            if u < acc:
                outcome = o
                break
        ev = self.head("review", t + lag, r.name)
        ev.update({k: ctx[k] for k in ("model", "prompt_version", "request_id", "trace_id", "tenant")})
        ev["outcome"] = outcome
        if outcome != "accepted":
            ev["reason"] = f"{rng.choice(TEXTS)} {self.canary()}"
        self.out.append((t + lag, ev))

    # -- one route ---------------------------------------------------------------
    def route(self, r: RouteSpec) -> None:
        rng = self.rng
        changes = [c for c in self.plan.changes if c.route == r.name]
        injs = [i for i in self.plan.injections if i.route == r.name]
        versions = initial_versions(r)
        ci = 0
        minutes = self.days * 1440
        rates = np.array([r.peak_per_min * diurnal(m % 1440) for m in range(minutes)])
        counts = self.np.poisson(rates)
        trace, tenant = self.hexid("tr"), rng.choice(r.tenants)
        for m in range(minutes):
            lo, hi = m * MIN, (m + 1) * MIN
            active = [i for i in injs if i.start_ms < hi and i.end_ms > lo]
            times = sorted(lo + int(rng.random() * MIN) for _ in range(int(counts[m])))
            arrivals: list[tuple[int, bool, Injection | None]] = [(t, False, None) for t in times]
            for inj in active:
                if inj.loop_per_min:
                    n = int(self.np.poisson(inj.loop_per_min))
                    arrivals += [(lo + int(rng.random() * MIN), True, inj) for _ in range(n)]
            arrivals.sort(key=lambda a: a[0])
            for t, loop, looper in arrivals:
                while ci < len(changes) and changes[ci].at_ms <= t:
                    self.apply_change(changes[ci], versions)
                    ci += 1
                effects = [i for i in active if i.active(t)]
                if loop:
                    if looper is None or not looper.active(t):
                        continue
                    lt = self.loop_traces.setdefault(id(looper), self.hexid("tr"))
                    lten = self.loop_tenants.setdefault(id(looper), tenant)
                    self.request(r, t, versions, effects, lt, lten, loop=True)
                    continue
                if any(e.traffic_mult == 0.0 for e in effects):
                    continue
                if not (r.multi_step and rng.random() < r.multi_step):
                    trace, tenant = self.hexid("tr"), rng.choice(r.tenants)
                self.request(r, t, versions, effects, trace, tenant)
            while ci < len(changes) and changes[ci].at_ms < hi:
                self.apply_change(changes[ci], versions)
                ci += 1

    def apply_change(self, c: Change, versions: dict[str, str]) -> None:
        key = f"tool:{c.tool}" if c.kind == "tool" else c.kind
        versions[key] = c.to_version
        self.change(c, versions)

    # -- file order ----------------------------------------------------------------
    def file_order(self) -> list[dict[str, Any]]:
        """Events in arrival order: ts order, except a few late ones and resent duplicates."""
        keyed = self.arrivals()
        keyed.sort(key=lambda k: (k[0], k[1]))
        return [ev for _, _, ev in keyed]

    def arrivals(self) -> list[tuple[int, int, dict[str, Any]]]:
        """(arrival ms, sequence, event) for every event, resent duplicates included, unsorted.

        The sequence is the event's index in ``self.out``; a few events arrive 2-8 min late.
        """
        rng = self.rng
        n = len(self.out)
        late = np.flatnonzero(self.np.random(n) < LATE_SHARE)
        dups = np.flatnonzero(self.np.random(n) < DUPLICATE_SHARE)
        keyed: list[tuple[int, int, dict[str, Any]]] = [(t, seq, ev) for seq, (t, ev) in enumerate(self.out)]
        for i in late.tolist():
            t, seq, ev = keyed[i]
            if ev["type"] != "change":
                keyed[i] = (t + rng.randint(2 * MIN, 8 * MIN), seq, ev)
        for i in dups.tolist():
            t, seq, ev = keyed[i]
            keyed.append((t + rng.randint(500, 90_000), seq, dict(ev)))
        return keyed


def _label(inj: Injection, loop_trace: str | None, start_ms: int = START_MS) -> Label:
    details: dict[str, Any] = {}
    if inj.error_rates:
        details["error_rates"] = dict(inj.error_rates)
    if inj.error_tool:
        details["tool"] = inj.error_tool
    if inj.latency_mult != 1.0:
        details["latency_mult"] = inj.latency_mult
    if inj.reject_rate is not None:
        details["reject_rate"] = inj.reject_rate
    if inj.input_token_mult != 1.0:
        details["input_token_mult"] = inj.input_token_mult
    if inj.loop_per_min:
        details["loop_per_min"] = inj.loop_per_min
        details["trace_id"] = loop_trace
    rollback = None
    what = inj.variant.replace("_", " ")
    if inj.change is not None:
        c = inj.change
        # a "change" to the version already serving changes nothing: no rollback can help, and the only target
        # would be the version failing (the planner no longer makes one; no label may expect it either)
        rollback = {"kind": c.kind, "to_version": c.from_version} if c.from_version != c.to_version else None
        details["change"] = {"kind": c.kind, "from_version": c.from_version, "to_version": c.to_version}
        what = f"{what} after {c.kind} change {c.from_version} -> {c.to_version}"
    if inj.traffic_mult == 0.0:
        details["traffic_mult"] = 0.0
    mins = (inj.end_ms - inj.start_ms) // MIN
    sig = inj.signal
    return Label(
        route=inj.route,
        incident_type=inj.incident_type,
        start_ms=start_ms + inj.start_ms,
        end_ms=start_ms + inj.end_ms,
        rollback=rollback,
        description=f"{inj.incident_type} on {inj.route}: {what} ({sig}, {mins} min)",
        variant=inj.variant,
        signal=sig,
        details=details,
    )


def generate_scenario(seed: int, days: int = 2) -> Scenario:
    """Generate the scenario of ``seed``: same seed and days, identical events and labels."""
    if days < 1:
        raise ValueError("days must be >= 1")
    plan = make_plan(random.Random(seed), seed, days)
    synth = _Synth(seed, days, plan)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small dicts: the cyclic GC only slows this down
    try:
        for r in ROUTES:
            synth.route(r)
        end = START_MS + days * 86_400_000
        # reviews trail their requests by minutes: drop those past the scenario's end, or every
        # route would seem to stop while the trailing reviews move event time on
        events = [e for e in synth.file_order() if (parse_ts(e["ts"]) or 0) < end]
    finally:
        if gc_was_enabled:
            gc.enable()
    labels = [_label(i, synth.loop_traces.get(id(i))) for i in plan.injections]
    return Scenario(
        seed=seed,
        days=days,
        start_ms=START_MS,
        events=events,
        labels=labels,
        routes=[r.name for r in ROUTES],
        canaries=synth.canaries,
    )


def write(seed: int, out_dir: str | Path, days: int = 2) -> tuple[Path, Path]:
    """Generate seed ``seed`` and write ``events.jsonl`` + ``labels.json`` into ``out_dir``."""
    return write_scenario(generate_scenario(seed, days), out_dir)
