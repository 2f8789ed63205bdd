"""The "fleet" scenario: a week of gateway traffic over 28-30 routes, with labelled incidents.

``generate_fleet(seed, days=7)`` builds SPEC section 1 events with the event builders of
:mod:`detector.bench.scenarios.generate` (same fields, canaries in every free-text field, a share
of epoch-ms timestamps, a few late and resent events) over the cast of
:mod:`detector.bench.scenarios.fleet` and the plan of :mod:`detector.bench.scenarios.fleet_plan`. What
it adds: per-route weekly shapes, canary releases (only a share of requests carries the
new version, and only those are hurt), ramps, provider outages across routes, and late log
flushes. It starts on a Thursday at 00:00 UTC.

``labels.json`` also holds ``route_kinds`` and, under ``extra``, each route's provider and
shape, every release (``role``: benign, cause, rollback, canary, promote) and the late
flushes, so a false incident can be explained without the events.

>>> s = generate_fleet(5, days=1, routes=6)
>>> len(s.routes), s.extra["start_weekday"], sorted(set(s.route_kinds.values()))
(6, 'Thu', ['batch', 'business', 'consumer', 'steady'])
"""

from __future__ import annotations

import gc
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

from detector.bench.scenarios.catalog import RouteSpec
from detector.bench.scenarios.fleet import FLEET_START_MS, FleetRoute, make_fleet, route_rates, subset, weekday_name
from detector.bench.scenarios.fleet_plan import FleetChange, FleetInjection, FleetPlan, make_fleet_plan
from detector.bench.scenarios.generate import _label, _Synth
from detector.bench.scenarios.model import Label, Scenario, write_scenario
from detector.bench.scenarios.plan import MIN, Change, Injection, initial_versions

__all__ = ["generate_fleet", "write_fleet"]

_Canary = tuple[float, dict[str, str]]


class _FleetSynth(_Synth):
    """:class:`_Synth` with weekly route shapes, canaries, ramps and late flushes."""

    def __init__(self, seed: int, days: int, plan: FleetPlan, routes: list[FleetRoute]) -> None:
        super().__init__(seed, days, plan)
        self.fplan = plan
        self.start_ms = FLEET_START_MS
        self.ttft_routes = frozenset(r.name for r in routes if r.ttft)

    def route(self, r: RouteSpec) -> None:
        assert isinstance(r, FleetRoute)
        rng = self.rng
        changes = [c for c in self.plan.changes if c.route == r.name]
        injs = [i for i in self.fplan.injections if i.route == r.name]
        versions = initial_versions(r)
        canary: _Canary | None = None
        ci = 0
        counts = self.np.poisson(route_rates(r, self.days))
        trace, tenant = self.hexid("tr"), rng.choice(r.tenants)
        for m in range(self.days * 1440):
            lo, hi = m * MIN, (m + 1) * MIN
            active: list[Injection] = []
            for i in injs:
                if i.start_ms < hi and i.end_ms > lo:
                    active.append(i.at(lo + MIN // 2) if isinstance(i, FleetInjection) and i.ramp_ms else i)
            n = int(counts[m])
            if not n and not any(i.loop_per_min for i in active):
                while ci < len(changes) and changes[ci].at_ms < hi:
                    canary = self.switch(changes[ci], versions, canary)
                    ci += 1
                continue
            times = sorted(lo + int(rng.random() * MIN) for _ in range(n))
            arrivals: list[tuple[int, bool, Injection | None]] = [(t, False, None) for t in times]
            for inj in active:
                if inj.loop_per_min:
                    k = int(self.np.poisson(inj.loop_per_min))
                    arrivals += [(lo + int(rng.random() * MIN), True, inj) for _ in range(k)]
            arrivals.sort(key=lambda a: a[0])
            for t, loop, looper in arrivals:
                while ci < len(changes) and changes[ci].at_ms <= t:
                    canary = self.switch(changes[ci], versions, canary)
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
                v = versions
                if canary is not None and rng.random() < canary[0]:
                    v = canary[1]  # this request goes to the canary (and meets its effects, if any)
                else:
                    effects = [e for e in effects if not getattr(e, "canary_share", 0.0)]
                self.request(r, t, v, effects, trace, tenant)
            while ci < len(changes) and changes[ci].at_ms < hi:
                canary = self.switch(changes[ci], versions, canary)
                ci += 1

    def switch(self, c: Change, versions: dict[str, str], canary: _Canary | None) -> _Canary | None:
        """Emit change ``c``; a canary start leaves ``versions`` alone and returns the canary."""
        if isinstance(c, FleetChange) and c.share > 0.0:
            self.change(c, versions)
            key = f"tool:{c.tool}" if c.kind == "tool" else c.kind
            return c.share, {**versions, key: c.to_version}
        self.apply_change(c, versions)
        return None if c.role in ("rollback", "promote") else canary

    def arrivals(self) -> list[tuple[int, int, dict[str, Any]]]:
        """As :meth:`_Synth.arrivals`, with each late flush's events moved to its arrival time
        (keeping their order) and events past the end (trailing reviews) dropped."""
        keyed = super().arrivals()
        horizon = self.days * 1440 * MIN
        flushes: dict[str, list[tuple[int, int, int]]] = {}
        for f in self.fplan.flushes:
            flushes.setdefault(f.route, []).append((f.start_ms, f.end_ms, f.arrive_ms))
        out = self.out
        kept: list[tuple[int, int, dict[str, Any]]] = []
        for k in keyed:
            t0, ev = out[k[1]]
            if t0 >= horizon:
                continue
            spans = flushes.get(ev["route"])
            if spans is not None and ev["type"] != "change":
                for a, b, arrive in spans:
                    if a <= t0 < b:
                        k = (arrive, k[1], k[2])
                        break
            kept.append(k)
        return kept


def _fleet_label(inj: FleetInjection, loop_trace: str | None) -> Label:
    lb = _label(inj, loop_trace, FLEET_START_MS)
    details = dict(lb.details)
    desc = lb.description
    if inj.canary_share and inj.change is not None:
        c = inj.change
        details["canary"] = {
            "share": inj.canary_share,
            "kind": c.kind,
            "from_version": c.from_version,
            "to_version": c.to_version,
        }
        desc = desc.replace(" after ", f" on a {round(inj.canary_share * 100)}% canary after ", 1)
    if inj.ramp_ms:
        details["ramp_min"] = inj.ramp_ms // MIN
        desc = desc[:-1] + f", ramp {inj.ramp_ms // MIN} min)"
    if inj.group:
        details["group"] = dict(inj.group)
        desc = desc.replace("provider outage", f"{inj.group['value']} outage", 1)
    if inj.optional:
        details["optional"] = True
    day = weekday_name(inj.start_ms // MIN)
    return Label(
        route=lb.route,
        incident_type=lb.incident_type,
        start_ms=lb.start_ms,
        end_ms=lb.end_ms,
        rollback=lb.rollback,
        description=f"{desc} [{day}]",
        variant=lb.variant,
        signal=lb.signal,
        details=details,
    )


def _route_info(r: FleetRoute) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": r.kind, "provider": r.provider, "peak_per_min": r.peak_per_min}
    if r.kind == "business":
        info.update(utc_offset_h=r.utc_offset_h, weekend=round(r.weekend, 3))
    elif r.kind == "batch":
        info.update(
            window_start_min=r.window_start_min, window_len_min=r.window_len_min, weekdays_only=r.weekdays_only
        )
    else:
        info.update(peak_hour=round(r.peak_hour, 2), weekend=round(r.weekend, 3))
    return info


def _change_info(c: Change) -> dict[str, Any]:
    d: dict[str, Any] = {
        "at_ms": FLEET_START_MS + c.at_ms,
        "route": c.route,
        "kind": c.kind,
        "role": c.role,
        "from_version": c.from_version,
        "to_version": c.to_version,
    }
    if isinstance(c, FleetChange) and c.share:
        d["share"] = c.share
    return d


def generate_fleet(seed: int, days: int = 7, routes: int | None = None) -> Scenario:
    """The fleet scenario of ``seed``: same seed, days and routes, identical events and labels.

    ``routes`` keeps only that many routes (every kind, none busier than 25 requests a
    minute: see :func:`~detector.bench.scenarios.fleet.subset`) for small, fast runs.
    """
    if days < 1:
        raise ValueError("days must be >= 1")
    fleet = make_fleet(seed)
    if routes is not None:
        fleet = subset(fleet, routes)
    plan = make_fleet_plan(random.Random(seed * 31 + 7), fleet, days)
    synth = _FleetSynth(seed, days, plan, fleet)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small dicts: the cyclic GC only slows this down
    try:
        for r in fleet:
            synth.route(r)
        events = synth.file_order()
    finally:
        if gc_was_enabled:
            gc.enable()
    labels = [
        _fleet_label(i, synth.loop_traces.get(id(i))) for i in plan.injections if isinstance(i, FleetInjection)
    ]
    extra = {
        "suite": "fleet",
        "start_weekday": weekday_name(0),
        "route_info": {r.name: _route_info(r) for r in fleet},
        "changes": [_change_info(c) for c in plan.changes],
        "late_flushes": [
            {k: v + FLEET_START_MS if k.endswith("_ms") else v for k, v in asdict(f).items()}
            for f in plan.flushes
        ],
    }
    return Scenario(
        seed=seed,
        days=days,
        start_ms=FLEET_START_MS,
        events=events,
        labels=labels,
        routes=[r.name for r in fleet],
        canaries=synth.canaries,
        route_kinds={r.name: r.kind for r in fleet},
        extra=extra,
    )


def write_fleet(seed: int, out_dir: str | Path, days: int = 7, routes: int | None = None) -> tuple[Path, Path]:
    """Generate the fleet scenario of ``seed`` and write ``events.jsonl`` + ``labels.json``."""
    return write_scenario(generate_fleet(seed, days, routes), out_dir)
