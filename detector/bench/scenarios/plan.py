"""Planning a scenario: which incidents, on which routes, when; which releases.

The plan is made before any event exists. It is a list of
:class:`Injection` (what each incident does to the traffic of its route) and
a list of :class:`Change` (benign releases, incident-causing releases and
their rollbacks), with versions resolved along each route's timeline so that
every rollback target is the version that was live just before the change.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from detector.bench.scenarios.catalog import (
    EXPENSIVE_UPGRADE,
    MODEL_PRICES,
    ROUTES,
    SNAPSHOT_UPGRADE,
    RouteSpec,
    diurnal,
    expected_requests,
)
from detector.bench.scenarios.model import INCIDENT_TYPES

__all__ = ["Change", "Injection", "Plan", "make_plan", "VARIANTS", "CHANGE_KIND"]

MIN = 60_000
# Which change (if any) causes each variant.
CHANGE_KIND: dict[str, str | None] = {
    "prompt_review": "prompt",
    "validation_burst": None,
    "prompt_validation": "prompt",
    "index_change": "source_index",
    "ingestion_stall": None,
    "tool_change": "tool",
    "connector_outage": None,
    "permission_revoked": None,
    "config_change": "config",
    "model_snapshot": "model",
    "timeouts": None,
    "rate_limited": None,
    "provider_errors": None,
    "traffic_stop": None,
    "runaway_loop": None,
    "expensive_model": "model",
    "prompt_bloat": "prompt",
}
VARIANTS: dict[str, tuple[str, ...]] = {
    "bad_output": ("prompt_review", "validation_burst", "prompt_validation"),
    "retrieval_failure": ("index_change", "ingestion_stall"),
    "tool_failure": ("tool_change", "connector_outage"),
    "access_privacy": ("permission_revoked", "config_change"),
    "performance": ("model_snapshot", "traffic_stop", "timeouts", "rate_limited", "provider_errors"),
    "cost": ("runaway_loop", "expensive_model", "prompt_bloat"),
}
GAP_MIN = 150  # minutes kept free between an incident and other incidents/changes on its route


@dataclass
class Change:
    """A `change` event; versions are filled in by :func:`_resolve_versions`."""

    at_ms: int
    route: str
    kind: str
    role: str  # "benign", "cause" or "rollback"
    tool: str | None = None
    from_version: str = ""
    to_version: str = ""
    target_model: str | None = None  # for model changes: which model to switch to


@dataclass
class Injection:
    """What one incident does to its route's traffic between start and end."""

    route: str
    incident_type: str
    variant: str
    start_ms: int
    end_ms: int
    error_rates: dict[str, float] = field(default_factory=dict)
    error_tool: str | None = None
    latency_mult: float = 1.0
    reject_rate: float | None = None
    traffic_mult: float = 1.0
    input_token_mult: float = 1.0
    loop_per_min: float = 0.0
    signal: str = ""
    change: Change | None = None
    rollback: Change | None = None

    def active(self, rel_ms: int) -> bool:
        """True when ``rel_ms`` (ms since scenario start) is inside the incident."""
        return self.start_ms <= rel_ms < self.end_ms


@dataclass
class Plan:
    """Injections and changes of one scenario (times in ms since scenario start)."""

    injections: list[Injection]
    changes: list[Change]


def _capable(route: RouteSpec, variant: str) -> bool:
    if variant == "prompt_review":
        return route.review_share > 0
    if variant in ("validation_burst", "prompt_validation"):
        return route.structured
    if variant in ("index_change", "ingestion_stall"):
        return route.source_index is not None
    if variant in ("tool_change", "connector_outage"):
        return bool(route.tools)
    if variant in ("permission_revoked", "config_change"):
        return route.service_account is not None
    return True


def _enough_volume(route: RouteSpec, inj: Injection, start_min: int, end_min: int) -> bool:
    """True when the incident would be clearly visible in the route's traffic in that window."""
    exp = expected_requests(route, start_min, end_min)
    variant = inj.variant
    if variant == "traffic_stop":
        return exp >= 100 and route.peak_per_min * diurnal(start_min % 1440) >= 2.0
    if variant == "runaway_loop":
        return True
    if inj.reject_rate is not None:
        return exp * route.review_share * inj.reject_rate >= 10
    if inj.error_rates:
        share = 1.0 / len(route.tools) if inj.error_tool else 1.0
        return exp >= 30 and exp * share * sum(inj.error_rates.values()) >= 10
    return exp >= 30


def _effects(inj: Injection, route: RouteSpec, rng: random.Random) -> str:
    """Fill the injection's effect parameters; return the signal name."""

    def u(lo: float, hi: float) -> float:
        """Quiet routes (< 2 req/min at peak) get the upper half of each range."""
        return rng.uniform((lo + hi) / 2 if route.peak_per_min < 2.0 else lo, hi)

    v = inj.variant
    if v == "prompt_review":
        inj.reject_rate = round(u(0.30, 0.45), 3)
        if route.structured:
            inj.error_rates["validation_error"] = round(u(0.05, 0.1), 3)
        return "review_rejection"
    if v in ("validation_burst", "prompt_validation"):
        inj.error_rates["validation_error"] = round(u(0.15, 0.3), 3)
        return "error_rate"
    if v == "index_change":
        inj.error_rates.update(
            retrieval_empty=round(u(0.15, 0.3), 3), retrieval_stale=round(u(0.02, 0.06), 3)
        )
        return "error_rate"
    if v == "ingestion_stall":
        inj.error_rates.update(
            retrieval_stale=round(u(0.15, 0.3), 3), retrieval_empty=round(u(0.02, 0.05), 3)
        )
        return "error_rate"
    if v in ("tool_change", "connector_outage"):
        inj.error_tool = rng.choice(route.tools)
        inj.error_rates["tool_error"] = round(u(0.45, 0.75) if v == "tool_change" else u(0.5, 0.85), 3)
        return "tool_error_rate"
    if v in ("permission_revoked", "config_change"):
        inj.error_rates["access_denied"] = round(u(0.15, 0.4), 3)
        return "error_rate"
    if v == "model_snapshot":
        inj.latency_mult = round(u(2.0, 3.2), 2)
        return "latency"
    if v in ("timeouts", "rate_limited", "provider_errors"):
        cls = {"timeouts": "timeout", "rate_limited": "rate_limited", "provider_errors": "provider_error"}[v]
        inj.error_rates[cls] = round(u(0.15, 0.35), 3)
        return "error_rate"
    if v == "traffic_stop":
        inj.traffic_mult = 0.0
        return "traffic_stop"
    if v == "runaway_loop":
        inj.loop_per_min = round(u(6.0, 15.0), 1)
        return "runaway_trace"
    if v == "prompt_bloat":
        # input tokens grow until the cost per request is x3.5..x5 (output tokens unchanged)
        p_in, p_out = MODEL_PRICES[route.model]
        c_in, c_out = route.input_tokens * p_in, route.output_tokens * p_out
        inj.input_token_mult = round((u(3.5, 5.0) * (c_in + c_out) - c_out) / c_in, 2)
        return "cost_per_request"
    return "cost_per_request"  # expensive_model


def _pick_variants(rng: random.Random, seed: int, days: int) -> list[tuple[str, str]]:
    """One incident of each type (variants rotate with the seed, so consecutive seeds
    cover every recipe), plus one or two extra incidents of random type and variant."""
    picked = [(t, VARIANTS[t][(seed - 1) % len(VARIANTS[t])]) for t in INCIDENT_TYPES]
    if days >= 2:
        extra = rng.sample(INCIDENT_TYPES, k=rng.randint(1, 2))
        picked += [(t, rng.choice(VARIANTS[t])) for t in extra]
    # At least two change-caused incidents per scenario, so rollbacks are always exercised.
    order = list(range(len(picked)))
    rng.shuffle(order)
    for i in order:
        if sum(CHANGE_KIND[v] is not None for _, v in picked) >= 2:
            break
        t, v = picked[i]
        if CHANGE_KIND[v] is None:
            caused = [w for w in VARIANTS[t] if CHANGE_KIND[w] is not None]
            if caused:
                picked[i] = (t, rng.choice(caused))
    rng.shuffle(picked)
    return picked


def _busy(taken: dict[str, list[tuple[int, int]]], route: str, a: int, b: int) -> bool:
    return any(a < e + GAP_MIN and s < b + GAP_MIN for s, e in taken.get(route, []))


def _benign_changes(rng: random.Random, days: int) -> list[Change]:
    horizon = days * 1440
    out: list[Change] = []
    for r in ROUTES:
        if r.source_index and r.name == "kb-answer":  # nightly index refresh
            for d in range(days):
                out.append(
                    Change((d * 1440 + 120 + rng.randint(0, 20)) * MIN, r.name, "source_index", "benign")
                )
    late = max(18 * 60, horizon - 1440 + 60)
    for i in range(rng.randint(3, 5)):
        r = rng.choice(ROUTES)
        lo = late if i < 2 else 120  # at least two releases in the incident period
        kind = rng.choice(("prompt", "prompt", "config"))
        out.append(Change(rng.randint(lo, horizon - 60) * MIN, r.name, kind, "benign"))
    return out


def make_plan(rng: random.Random, seed: int, days: int) -> Plan:
    """Choose incidents, routes, windows and releases for one scenario."""
    changes = _benign_changes(rng, days)
    taken: dict[str, list[tuple[int, int]]] = {}
    for c in changes:
        taken.setdefault(c.route, []).append((c.at_ms // MIN, c.at_ms // MIN))
    clean = rng.choice(ROUTES).name
    first, last = 18 * 60, days * 1440 - 75
    injections: list[Injection] = []
    for itype, variant in _pick_variants(rng, seed, days) if last - first >= 60 else []:
        routes = [r for r in ROUTES if r.name != clean and _capable(r, variant)]
        rng.shuffle(routes)
        routes.sort(key=lambda r: sum(i.route == r.name for i in injections))  # spread incidents
        placed = False
        for route in routes:
            for _ in range(60):
                dur = rng.randint(20, 90) if variant != "prompt_review" else rng.randint(45, 90)
                s = rng.randint(first, max(first, last - dur))
                if s + dur > last or _busy(taken, route.name, s, s + dur):
                    continue
                inj = Injection(route.name, itype, variant, s * MIN, (s + dur) * MIN)
                inj.signal = _effects(inj, route, rng)
                if not _enough_volume(route, inj, s, s + dur):
                    continue
                kind = CHANGE_KIND[variant]
                if kind is not None:
                    inj.change = Change(inj.start_ms, route.name, kind, "cause", tool=inj.error_tool)
                    inj.rollback = Change(inj.end_ms, route.name, kind, "rollback", tool=inj.error_tool)
                    if kind == "model":
                        table = SNAPSHOT_UPGRADE if variant == "model_snapshot" else EXPENSIVE_UPGRADE
                        inj.change.target_model = table[route.model]
                    changes += [inj.change, inj.rollback]
                taken.setdefault(route.name, []).append((s, s + dur))
                injections.append(inj)
                placed = True
                break
            if placed:
                break
    _resolve_versions(changes)
    injections.sort(key=lambda i: (i.start_ms, i.route))
    return Plan(injections, sorted(changes, key=lambda c: (c.at_ms, c.route)))


def bump(version: str, top: int | None = None) -> str:
    """Next version: the trailing number plus one (or ``top + 1``).

    >>> bump("support-v12"), bump("crm.lookup@1.4.0"), bump("cfg-9", top=11)
    ('support-v13', 'crm.lookup@1.5.0', 'cfg-12')
    """
    m = re.search(r"(\d+)(\D*)$", version) if "@" not in version else re.search(r"(\d+)(\.\d+)$", version)
    if m is None:
        return version + "-2"
    n = (top if top is not None else int(m.group(1))) + 1
    return version[: m.start(1)] + str(n) + m.group(2)


def _num(version: str) -> int:
    m = re.search(r"(\d+)(\.\d+)$", version) if "@" in version else re.search(r"(\d+)\D*$", version)
    return int(m.group(1)) if m else 0


def initial_versions(route: RouteSpec) -> dict[str, str]:
    """The versions live on a route at scenario start (keys: change kinds, ``tool:<name>``)."""
    v = {
        "prompt": f"{route.prompt_prefix}-v{route.prompt_n}",
        "config": f"cfg-{route.config_n}",
        "model": route.model,
    }
    if route.source_index:
        v["source_index"] = route.source_index
    for t in route.tools:
        v[f"tool:{t}"] = f"{t}@1.4.0"
    return v


def _resolve_versions(changes: list[Change], routes: Iterable[RouteSpec] = ROUTES) -> None:
    """Walk each route's changes in time order and fill from/to versions.

    Roles: ``benign`` bumps; ``cause`` and ``canary`` bump and remember the version they
    replaced; ``rollback`` goes back to it; ``promote`` (a canary going to 100%) repeats
    the canary's ``from -> to`` and keeps the new version.
    """
    by_route = {r.name: r for r in routes}
    state = {name: initial_versions(r) for name, r in by_route.items()}
    top: dict[tuple[str, str], int] = {}
    undo: dict[tuple[str, str], str] = {}
    for c in sorted(changes, key=lambda c: (c.at_ms, c.role != "rollback")):
        key = f"tool:{c.tool}" if c.kind == "tool" else c.kind
        cur = state[c.route][key]
        hi = max(top.get((c.route, key), 0), _num(cur))
        if c.role == "rollback":
            new = undo.pop((c.route, key))
        elif c.role == "promote":
            cur, new = undo.pop((c.route, key)), cur
        elif c.kind == "model":
            new = c.target_model or cur
            if new == cur:
                # the route already runs the target (an earlier release upgraded it): a change to the version
                # serving is no change, so it goes back to the route's first model (no random draw: every
                # other change of the week stays as it was)
                new = initial_versions(by_route[c.route])["model"]
        else:
            new = bump(cur, top=hi)
        if c.role in ("cause", "canary"):
            undo[(c.route, key)] = cur
        top[(c.route, key)] = max(hi, _num(new))
        c.from_version, c.to_version = cur, new
        state[c.route][key] = new
