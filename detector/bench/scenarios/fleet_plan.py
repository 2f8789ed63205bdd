"""Planning a fleet week: incidents, canaries, provider outages, ramps, releases, late flushes.

Like :mod:`detector.bench.scenarios.plan`, the plan is made before any event exists, on the
routes' expected rates (:func:`~detector.bench.scenarios.fleet.route_rates`), so an incident is
only placed where its route has the volume to show it at that time of day and week (never
a traffic stop on a batch route outside its window, or on a business route at night). At
most one incident is active per route, with :data:`~detector.bench.scenarios.plan.GAP_MIN`
minutes kept free around it; the first 18 hours are clean.

Besides the six types of :data:`~detector.bench.scenarios.plan.VARIANTS` a week holds:

* canary regressions: a change sends 10-30% of the route's requests to a new version and
  only those are bad; a rollback change ends it. Benign canaries are healthy and end with
  a ``promote`` change (the same ``from -> to``, now for all traffic);
* provider outages: one provider fails on every route of it that has traffic, at once; a
  benign release lands on one of those routes 5-20 min before (a rollback trap);
* ramps: an error rate or latency rising linearly, then holding;
* slow review rejections after a prompt change, on a route with few reviews;
* late log flushes: a stretch of a route's events arriving later in one burst.

>>> from detector.bench.scenarios.fleet import make_fleet, subset
>>> plan = make_fleet_plan(random.Random(1), subset(make_fleet(101), 8), days=2)
>>> any(i.canary_share for i in plan.injections), len(plan.flushes) >= 1
(True, True)
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from detector.bench.scenarios.catalog import EXPENSIVE_UPGRADE, MODEL_PRICES, SNAPSHOT_UPGRADE
from detector.bench.scenarios.fleet import FleetRoute, route_rates
from detector.bench.scenarios.model import INCIDENT_TYPES
from detector.bench.scenarios.plan import (
    CHANGE_KIND,
    MIN,
    VARIANTS,
    Change,
    Injection,
    Plan,
    _busy,
    _capable,
    _effects,
    _resolve_versions,
)

__all__ = ["FleetInjection", "FleetChange", "LateFlush", "FleetPlan", "make_fleet_plan", "BASE_REJECT"]

FULL_ROUTES = 29  # the fleet size the counts below are meant for
FULL_MINUTES = 7 * 1440 - 75 - 18 * 60  # minutes open to incidents in a week
BASE_REJECT = 0.05  # rejected + escalated share of reviews when nothing is wrong
EARLY_MIN = 15  # a step incident's first minutes...
EARLY_BAD = 5  # ...hold this many bad events (errors) expected
EARLY_REQUESTS = 15  # ...or this many requests (latency, cost)
CANARY_SIGNALS: dict[str, tuple[str, tuple[str, ...]]] = {  # signal -> (type, change kinds)
    "latency": ("performance", ("model", "config")),
    "error_rate": ("bad_output", ("prompt", "config")),
    "review_rejection": ("bad_output", ("prompt",)),
    "cost_per_request": ("cost", ("model", "prompt")),
}
RAMPS: dict[str, tuple[str, str]] = {  # variant -> (type, signal)
    "ramp_latency": ("performance", "latency"),
    "ramp_timeouts": ("performance", "error_rate"),
    "ramp_provider_errors": ("performance", "error_rate"),
    "ramp_tool_errors": ("tool_failure", "tool_error_rate"),
    "ramp_retrieval": ("retrieval_failure", "error_rate"),
}


@dataclass
class FleetInjection(Injection):
    """An :class:`Injection` that may hit only a canary share, ramp up, or belong to a group."""

    canary_share: float = 0.0  # > 0: only this share of requests (the canary) is affected
    ramp_ms: int = 0  # > 0: effects grow linearly from nothing over this long, then hold
    group: dict[str, str] | None = None  # e.g. {"kind": "provider", "value": "openai"}
    optional: bool = False  # too little traffic to expect a detection (provider outages)

    def level(self, rel_ms: int) -> float:
        """How far the ramp has got at ``rel_ms`` (1.0 without a ramp).

        >>> FleetInjection("r", "performance", "ramp_latency", 0, 100, ramp_ms=40).level(10)
        0.25
        """
        if not self.ramp_ms:
            return 1.0
        return min(1.0, max(0.0, (rel_ms - self.start_ms) / self.ramp_ms))

    def at(self, rel_ms: int) -> Injection:
        """The effects in force at ``rel_ms`` (a scaled copy while ramping up)."""
        f = self.level(rel_ms)
        if f >= 1.0:
            return self
        reject = None if self.reject_rate is None else BASE_REJECT + f * (self.reject_rate - BASE_REJECT)
        return dataclasses.replace(
            self,
            error_rates={k: p * f for k, p in self.error_rates.items()},
            latency_mult=1.0 + (self.latency_mult - 1.0) * f,
            reject_rate=reject,
        )


@dataclass
class FleetChange(Change):
    """A :class:`Change`; ``share > 0`` makes it a canary start (that share gets ``to_version``)."""

    share: float = 0.0


@dataclass(frozen=True)
class LateFlush:
    """Every event of ``route`` with time in [start, end) arrives at ``arrive`` (ms since start)."""

    route: str
    start_ms: int
    end_ms: int
    arrive_ms: int


@dataclass
class FleetPlan(Plan):
    """A :class:`Plan` plus the late log flushes."""

    flushes: list[LateFlush] = field(default_factory=list)


class _Planner:
    def __init__(self, rng: random.Random, routes: list[FleetRoute], days: int) -> None:
        self.rng = rng
        self.routes = routes
        self.days = days
        self.rates = {r.name: route_rates(r, days) for r in routes}
        self.cum = {k: np.concatenate(([0.0], np.cumsum(v))) for k, v in self.rates.items()}
        self.taken: dict[str, list[tuple[int, int]]] = {}
        self.injections: list[FleetInjection] = []
        self.changes: list[Change] = []
        self.first, self.last = 18 * 60, days * 1440 - 75
        avail = max(0, self.last - self.first)
        self.scale = min(1.0, avail / FULL_MINUTES) * min(1.0, len(routes) / FULL_ROUTES)

    def count(self, lo: int, hi: int, at_least: int = 0) -> int:
        return max(at_least, round(self.rng.randint(lo, hi) * self.scale))

    # -- traffic ---------------------------------------------------------------------------
    def expected(self, r: FleetRoute, s: int, e: int) -> float:
        n = len(self.rates[r.name])
        c = self.cum[r.name]
        return float(c[min(max(e, 0), n)] - c[min(max(s, 0), n)])

    def min_rate(self, r: FleetRoute, s: int, e: int) -> float:
        a = self.rates[r.name][max(s, 0) : max(e, s + 1)]
        return float(a.min()) if len(a) else 0.0

    def visible(self, r: FleetRoute, inj: FleetInjection, s: int, e: int) -> bool:
        """Enough traffic, at that time of day and week, for the incident to show (cf. plan)."""
        if self.min_rate(r, s, e) <= 0.0:
            return False  # e.g. a batch route outside its window
        exp = self.expected(r, s, e) * (inj.canary_share or 1.0)
        if inj.variant == "traffic_stop":
            floor = max(2.0, 0.3 * r.peak_per_min)  # busy for this route, before and after
            return exp >= 100 and self.min_rate(r, s - 30, e + 30) >= floor
        if inj.variant == "runaway_loop":
            return True
        level = 1.0 - inj.ramp_ms / MIN / 2 / max(1, e - s)  # mean effect over a ramp and hold
        # a plain step (no ramp, no canary share) must show within its first minutes: a label with one
        # bad event expected in its first quarter hour is undetectable there by any test
        step = not inj.ramp_ms and not inj.canary_share
        early = self.expected(r, s, min(e, s + EARLY_MIN))
        if inj.reject_rate is not None:
            extra = (inj.reject_rate - BASE_REJECT) * level
            return exp * r.review_share * extra >= 10
        if inj.error_rates:
            tool = 1.0 / len(r.tools) if inj.error_tool else 1.0
            bad = tool * sum(inj.error_rates.values())
            return exp >= 30 and exp * bad * level >= 10 and (not step or early * bad >= EARLY_BAD)
        return exp >= 30 and (not step or early >= EARLY_REQUESTS)

    # -- bookkeeping -------------------------------------------------------------------------
    def busy(self, r: FleetRoute, s: int, e: int) -> bool:
        return _busy(self.taken, r.name, s, e)

    def reserve(self, route: str, s: int, e: int) -> None:
        self.taken.setdefault(route, []).append((s, e))

    def start(self, dur: int) -> int | None:
        if self.last - dur < self.first:
            return None
        return self.rng.randint(self.first, self.last - dur)

    def add(self, inj: FleetInjection, kind: str | None = None, target: str | None = None) -> None:
        """Keep ``inj``; with ``kind`` it is caused by that change (rolled back at its end)."""
        if kind is not None:
            share = inj.canary_share
            inj.change = FleetChange(inj.start_ms, inj.route, kind, "cause", inj.error_tool, share=share)
            inj.change.target_model = target
            inj.rollback = FleetChange(inj.end_ms, inj.route, kind, "rollback", inj.error_tool)
            self.changes += [inj.change, inj.rollback]
        self.reserve(inj.route, inj.start_ms // MIN, inj.end_ms // MIN)
        self.injections.append(inj)

    def try_place(
        self,
        routes: list[FleetRoute],
        build: Callable[[FleetRoute, int, int], FleetInjection | None],
        durations: tuple[int, int],
        tries: int = 40,
    ) -> FleetInjection | None:
        """Try routes in turn for a free, visible window; ``build(route, s, dur)`` makes the
        injection (its own end may differ from ``s + dur``)."""
        for r in routes:
            for _ in range(tries):
                dur = self.rng.randint(*durations)
                s = self.start(dur)
                if s is None or self.busy(r, s, s + dur):
                    continue
                inj = build(r, s, dur)
                if inj is None:
                    continue
                e = inj.end_ms // MIN
                if e <= self.last and not self.busy(r, s, e) and self.visible(r, inj, s, e):
                    return inj
        return None

    def spread(self, routes: list[FleetRoute]) -> list[FleetRoute]:
        """Routes in random order, those with the fewest incidents so far first."""
        out = list(routes)
        self.rng.shuffle(out)
        out.sort(key=lambda r: sum(i.route == r.name for i in self.injections))
        return out

    # -- releases ----------------------------------------------------------------------------
    def benign(self) -> None:
        rng = self.rng
        indexed = [r for r in self.routes if r.source_index and r.kind != "batch"] or [
            r for r in self.routes if r.source_index
        ]
        for r in rng.sample(indexed, k=min(len(indexed), rng.randint(1, 2))):  # nightly refresh
            for d in range(self.days):
                self.changes.append(FleetChange((d * 1440 + 120 + rng.randint(0, 20)) * MIN, r.name,
                                                "source_index", "benign"))
        horizon = self.days * 1440
        for i in range(self.count(5, 10, at_least=1)):
            r = rng.choice(self.routes)
            lo = self.first if i % 2 == 0 else 120  # most releases after the learning period
            kind = rng.choice(("prompt", "prompt", "config", "config", "model"))
            release = FleetChange(rng.randint(lo, horizon - 60) * MIN, r.name, kind, "benign")
            if kind == "model":
                if r.model not in SNAPSHOT_UPGRADE:
                    continue
                release.target_model = SNAPSHOT_UPGRADE[r.model]
            self.changes.append(release)
        for c in self.changes:
            self.reserve(c.route, c.at_ms // MIN, c.at_ms // MIN)

    # -- incidents ---------------------------------------------------------------------------
    def outage(self, max_labels: int = 8) -> int:
        """One provider failing on all its routes with traffic; returns the labels it made."""
        rng = self.rng
        done = {i.group["value"] for i in self.injections if i.group}
        providers = sorted({r.provider for r in self.routes} - done) or sorted({r.provider for r in self.routes})
        best: list[FleetInjection] = []
        for _ in range(300):
            provider = rng.choice(providers)
            dur = rng.randint(20, 60)
            s = self.start(dur)
            if s is None:
                break
            cls = rng.choice(("provider_error", "timeout", "rate_limited"))
            rate = round(rng.uniform(0.2, 0.5), 3)
            mine = [r for r in self.routes if r.provider == provider and self.expected(r, s, s + dur) >= 1.0]
            if not mine or any(self.busy(r, s, s + dur) for r in mine):
                continue
            injs = []
            for r in mine:
                inj = FleetInjection(r.name, "performance", "provider_outage", s * MIN, (s + dur) * MIN,
                                     error_rates={cls: rate}, signal="error_rate",
                                     group={"kind": "provider", "value": provider})
                inj.optional = not self.visible(r, inj, s, s + dur)
                injs.append(inj)
            required = [i for i in injs if not i.optional]
            if 2 <= len(required) <= max_labels:  # a group needs two routes (SPEC 2a: null when alone)
                best = injs
                break
        if not best:
            return 0
        for inj in best:
            self.add(inj)
        trap = rng.choice([i for i in best if not i.optional])
        kind = rng.choice(("config", "prompt"))
        self.changes.append(FleetChange(trap.start_ms - rng.randint(5, 20) * MIN, trap.route, kind, "benign"))
        return sum(not i.optional for i in best)

    def canary(self, low_volume: bool, signal: str | None) -> bool:
        """A canary regression; ``signal`` (if not None) is the one to move."""
        rng = self.rng
        routes = [
            r
            for r in self.routes
            if (not low_volume or 1.0 <= r.peak_per_min <= 5.0) and (signal is None or _canary_capable(r, signal))
        ]

        def build(r: FleetRoute, s: int, dur: int) -> FleetInjection | None:
            sig = signal or rng.choice([sig for sig in CANARY_SIGNALS if _canary_capable(r, sig)])
            itype, kinds = CANARY_SIGNALS[sig]
            kind = rng.choice([k for k in kinds if k != "model" or _model_target(r, sig)])
            inj = FleetInjection(r.name, itype, f"canary_{sig}", s * MIN, (s + dur) * MIN, signal=sig,
                                 canary_share=round(rng.uniform(0.1, 0.3), 2))
            if sig == "latency":
                inj.latency_mult = round(rng.uniform(2.0, 3.0), 2)
            elif sig == "error_rate":
                inj.error_rates["validation_error"] = round(rng.uniform(0.15, 0.3), 3)
            elif sig == "review_rejection":
                inj.reject_rate = round(rng.uniform(0.3, 0.45), 3)
            elif kind == "prompt":  # cost: a bloated prompt, x3.5..x5 per request
                p_in, p_out = MODEL_PRICES[r.model]
                c_in, c_out = r.input_tokens * p_in, r.output_tokens * p_out
                inj.input_token_mult = round((rng.uniform(3.5, 5.0) * (c_in + c_out) - c_out) / c_in, 2)
            inj.change = FleetChange(0, r.name, kind, "cause")  # kind carrier until add()
            return inj

        inj = self.try_place(self.spread(routes), build, (40, 120))
        if inj is None:
            return False
        assert inj.change is not None
        kind = inj.change.kind
        self.add(inj, kind, _model_target(self._route(inj.route), inj.signal) if kind == "model" else None)
        return True

    def benign_canary(self) -> bool:
        rng = self.rng
        for r in self.spread([r for r in self.routes if r.peak_per_min >= 0.5]):
            for _ in range(30):
                dur = rng.randint(40, 120)
                s = self.start(dur)
                if s is None or self.busy(r, s, s + dur):
                    continue
                share = round(rng.uniform(0.1, 0.3), 2)
                if self.expected(r, s, s + dur) * share < 30:
                    continue
                kind = rng.choice(("prompt", "config", "model") if r.model in SNAPSHOT_UPGRADE else ("prompt",))
                start = FleetChange(s * MIN, r.name, kind, "canary", share=share)
                start.target_model = SNAPSHOT_UPGRADE.get(r.model) if kind == "model" else None
                self.changes += [start, FleetChange((s + dur) * MIN, r.name, kind, "promote")]
                self.reserve(r.name, s, s + dur)
                return True
        return False

    def slow_review(self) -> bool:
        rng = self.rng
        routes = [r for r in self.routes if 0.0 < r.review_share <= 0.12]

        def build(r: FleetRoute, s: int, dur: int) -> FleetInjection:
            return FleetInjection(r.name, "bad_output", "slow_review", s * MIN, (s + dur) * MIN,
                                  reject_rate=round(rng.uniform(0.35, 0.5), 3), signal="review_rejection",
                                  ramp_ms=rng.randint(60, 120) * MIN)

        inj = self.try_place(self.spread(routes), build, (180, 360))
        if inj is not None:
            self.add(inj, "prompt")
        return inj is not None

    def ramp(self) -> bool:
        rng = self.rng

        def build(r: FleetRoute, s: int, dur: int) -> FleetInjection | None:
            ok = [v for v in RAMPS if _ramp_capable(r, v)]
            v = rng.choice(ok)
            itype, sig = RAMPS[v]
            ramp, hold = rng.randint(30, 60), rng.randint(20, 40)
            inj = FleetInjection(r.name, itype, v, s * MIN, (s + ramp + hold) * MIN, signal=sig,
                                 ramp_ms=ramp * MIN)
            if v == "ramp_latency":
                inj.latency_mult = round(rng.uniform(2.5, 3.5), 2)
            elif v in ("ramp_timeouts", "ramp_provider_errors"):
                inj.error_rates["timeout" if v == "ramp_timeouts" else "provider_error"] = round(
                    rng.uniform(0.2, 0.35), 3)
            elif v == "ramp_tool_errors":
                inj.error_tool = rng.choice(r.tools)
                inj.error_rates["tool_error"] = round(rng.uniform(0.4, 0.7), 3)
            else:
                inj.error_rates["retrieval_stale"] = round(rng.uniform(0.2, 0.3), 3)
            return inj

        inj = self.try_place(self.spread(self.routes), build, (50, 100))
        if inj is not None:
            self.add(inj)
        return inj is not None

    def regular(self, itype: str) -> bool:
        rng = self.rng
        variant = rng.choice(VARIANTS[itype])

        def build(r: FleetRoute, s: int, dur: int) -> FleetInjection | None:
            if not (_capable(r, variant) and _model_ok(r, variant)):
                return None
            dur = dur if variant != "prompt_review" else max(dur, 45)
            inj = FleetInjection(r.name, itype, variant, s * MIN, (s + dur) * MIN)
            inj.signal = _effects(inj, r, rng)
            return inj

        routes = [r for r in self.spread(self.routes) if _capable(r, variant) and _model_ok(r, variant)]
        inj = self.try_place(routes, build, (20, 90), tries=25)
        if inj is None:
            return False
        kind = CHANGE_KIND[variant]
        target = None
        if kind == "model":
            table = SNAPSHOT_UPGRADE if variant == "model_snapshot" else EXPENSIVE_UPGRADE
            target = table[self._route(inj.route).model]
        self.add(inj, kind, target)
        return True

    # -- late flushes --------------------------------------------------------------------------
    def flushes(self) -> list[LateFlush]:
        rng = self.rng
        n = self.count(2, 4, at_least=1)
        out: list[LateFlush] = []
        for i in range(n):
            beyond = n >= 2 and i == n - 1  # one flush arrives after the allowed lateness
            for _ in range(200):
                r = rng.choice(self.routes)
                length = rng.randint(3, 10)
                s = rng.randint(120, self.days * 1440 - 30)
                if self.min_rate(r, s, s + length) < 1.0 or any(
                    f.route == r.name and abs(f.start_ms // MIN - s) < 60 for f in out
                ):
                    continue
                if any(j.route == r.name and j.start_ms // MIN - 60 < s + length and s < j.end_ms // MIN + 60
                       for j in self.injections):
                    continue
                delay_s = rng.randint(130, 300) if beyond else rng.randint(60, 110)
                end = (s + length) * MIN
                out.append(LateFlush(r.name, s * MIN, end, end + delay_s * 1000))
                break
        return out

    def _route(self, name: str) -> FleetRoute:
        return next(r for r in self.routes if r.name == name)


def _canary_capable(r: FleetRoute, sig: str) -> bool:
    if sig == "error_rate":
        return r.structured
    if sig == "review_rejection":
        return r.review_share >= 0.2
    if sig == "latency":
        return True
    return True  # cost: a bloated prompt works anywhere


def _model_target(r: FleetRoute, sig: str) -> str | None:
    table = SNAPSHOT_UPGRADE if sig == "latency" else EXPENSIVE_UPGRADE if sig == "cost_per_request" else {}
    return table.get(r.model)


def _model_ok(r: FleetRoute, variant: str) -> bool:
    if variant == "model_snapshot":
        return r.model in SNAPSHOT_UPGRADE
    if variant == "expensive_model":
        return r.model in EXPENSIVE_UPGRADE
    return True


def _ramp_capable(r: FleetRoute, variant: str) -> bool:
    if variant == "ramp_tool_errors":
        return bool(r.tools)
    if variant == "ramp_retrieval":
        return r.source_index is not None
    return True


def make_fleet_plan(rng: random.Random, routes: list[FleetRoute], days: int) -> FleetPlan:
    """Choose the week's incidents, canaries, releases and late flushes for ``routes``.

    About 35-40 labelled incidents for the full fleet over 7 days; fewer, in proportion,
    for fewer routes or days (but at least one canary regression, benign canary, provider
    outage and late flush whenever they fit).
    """
    p = _Planner(rng, routes, days)
    p.benign()
    target = p.count(35, 40)
    labels = 0
    for i in range(p.count(1, 2, at_least=1)):
        labels += p.outage(max_labels=max(3, round(8 * p.scale)) if i == 0 else 6)
    n_canary = p.count(3, 5, at_least=1)
    signals = list(CANARY_SIGNALS)
    rng.shuffle(signals)
    for i in range(n_canary):
        low = i < max(1, n_canary // 2)  # some on quiet routes: the majority version flips
        labels += p.canary(low, signals[i % len(signals)]) or p.canary(low, None) or p.canary(False, None)
    for _ in range(p.count(1, 2)):
        labels += p.slow_review()
    for _ in range(p.count(2, 4)):
        labels += p.ramp()
    for _ in range(p.count(2, 4, at_least=1)):
        p.benign_canary()
    types = list(INCIDENT_TYPES)
    rng.shuffle(types)
    tried = misses = 0
    while labels < target and misses < 20:  # the six types in turn
        if p.regular(types[tried % len(types)]):
            labels += 1
        else:
            misses += 1
        tried += 1
    _resolve_versions(p.changes, routes)
    p.injections.sort(key=lambda i: (i.start_ms, i.route))
    changes = sorted(p.changes, key=lambda c: (c.at_ms, c.route))
    return FleetPlan(list(p.injections), changes, flushes=p.flushes())

