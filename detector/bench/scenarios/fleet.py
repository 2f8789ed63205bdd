"""The fleet's cast: 28-30 gateway routes of four traffic kinds, and their weekly shapes.

A route's expected requests per minute is ``peak_per_min * shape(minute)``, where the
shape depends on its kind:

* ``business``: office hours (08:00-18:00 in the route's own UTC offset, a lunch dip),
  near zero at night, weekends at 0.1-0.35 of a weekday;
* ``consumer``: a smooth diurnal curve every day (peak hour per route), weekends alike or
  a little busier;
* ``batch``: a nightly job window of 1-3 h starting between 00:00 and 04:00 UTC, every
  night or weekdays only, and exactly zero outside it;
* ``steady``: internal API traffic, flat with a mild diurnal ripple.

Peak rates are log-uniform between 0.05 and 120 requests a minute (both ends pinned); the
draw is repeated until the week's expected volume is 1.5-3 million events. Minute 0 is
:data:`FLEET_START_MS`, a Thursday, so the first weekend comes after two days of history.

>>> fleet = make_fleet(101)
>>> 28 <= len(fleet) <= 30, sorted({r.kind for r in fleet})
(True, ['batch', 'business', 'consumer', 'steady'])
>>> r = next(r for r in fleet if r.kind == "batch")
>>> rates = route_rates(r, 7)
>>> bool(rates[r.window_start_min + r.window_len_min + 5 : 1440].any())
False
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from detector.bench.scenarios.catalog import MODEL_PROVIDER, RouteSpec

__all__ = [
    "FLEET_START_MS",
    "START_WEEKDAY",
    "KINDS",
    "FleetRoute",
    "make_fleet",
    "route_rates",
    "weekday_name",
    "expected_events",
    "subset",
]

FLEET_START_MS = 1_741_219_200_000  # 2025-03-06T00:00:00Z, a Thursday
START_WEEKDAY = 3  # Monday = 0
KINDS: tuple[str, ...] = ("business", "consumer", "batch", "steady")
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MIN_RATE, MAX_RATE = 0.05, 120.0
EVENTS_PER_WEEK = (1_500_000, 3_000_000)

# name, workflow, prompt prefix, flags: R retrieval, T tools, S structured output,
# V heavily reviewed, v lightly reviewed, A multi-step agent, F streamed (ttft)
_TEMPLATES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "business": (
        ("crm-summarize", "sales-crm", "crm", "Tv"),
        ("meeting-notes", "collaboration", "notes", "v"),
        ("hr-policy-qa", "hr-helpdesk", "hrqa", "Rv"),
        ("sales-email-draft", "sales-outreach", "email", "V"),
        ("contract-review", "legal-review", "legal", "RSV"),
        ("expense-audit", "finance-ops", "expense", "TS"),
        ("doc-translate", "localization", "translate", "v"),
        ("code-review-assist", "eng-productivity", "codereview", "T"),
        ("ticket-agent", "it-helpdesk", "agent", "TAv"),
        ("finance-report-draft", "fp-and-a", "finrep", "RV"),
        ("recruiting-screen", "talent", "screen", "SV"),
        ("board-deck-draft", "exec-office", "deck", "v"),
    ),
    "consumer": (
        ("support-chat", "customer-support", "support", "vF"),
        ("shop-assistant", "ecommerce", "shop", "TF"),
        ("search-answer", "site-search", "search", "RF"),
        ("travel-planner", "travel", "travel", "TA"),
        ("tutor-chat", "education", "tutor", "vF"),
        ("product-qa", "ecommerce", "pqa", "R"),
        ("review-summarize", "ecommerce", "revsum", "S"),
        ("voice-assistant", "mobile-app", "voice", "TF"),
        ("recipe-chat", "content", "recipe", "F"),
        ("fitness-coach", "health-app", "coach", "vF"),
    ),
    "batch": (
        ("invoice-extract", "ap-automation", "invoice", "TS"),
        ("catalog-enrich", "merch-ops", "catalog", "S"),
        ("transcript-summarize", "call-center", "transcript", "v"),
        ("churn-report", "analytics", "churn", "R"),
        ("log-digest", "sre", "logdigest", ""),
        ("embedding-backfill", "search-infra", "embed", "R"),
        ("contract-ingest", "legal-ops", "ingest", "RS"),
        ("email-classify-batch", "support-ops", "classify", "S"),
    ),
    "steady": (
        ("moderation-check", "trust-safety", "moderate", "S"),
        ("pii-redact", "privacy", "pii", "S"),
        ("intent-classify", "router", "intent", "S"),
        ("spam-score", "trust-safety", "spam", "S"),
        ("lang-detect", "platform", "lang", ""),
        ("entity-extract", "data-platform", "entity", "ST"),
        ("query-rewrite", "site-search", "rewrite", "R"),
        ("kb-answer", "internal-kb", "kb", "Rv"),
        ("agent-tools", "platform", "tools", "TA"),
        ("alert-summarize", "sre", "alert", "v"),
    ),
}
_TOOLS = (
    "crm.lookup", "ticket.update", "kb.search", "erp.lookup_vendor", "ocr.extract", "calendar.book",
    "payments.refund", "catalog.search", "flight.search", "sql.query", "jira.create", "slack.post",
)  # fmt: skip
_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"),
    "anthropic": ("claude-3-5-haiku-20241022", "claude-3-5-sonnet-20241022"),
    "google": ("gemini-1.5-flash-001", "gemini-1.5-pro-001"),
}
_PROVIDER_WEIGHTS = {"openai": 0.42, "anthropic": 0.38, "google": 0.20}
_LATENCY_MS = {"mini": 900.0, "4o": 1800.0, "haiku": 1100.0, "sonnet": 2600.0, "flash": 700.0, "pro": 2000.0}
_TENANT_PREFIX = {"business": "org", "consumer": "app", "batch": "job", "steady": "svc"}


@dataclass(frozen=True)
class FleetRoute(RouteSpec):
    """A :class:`RouteSpec` with its traffic kind and the parameters of its weekly shape."""

    kind: str = "steady"
    utc_offset_h: int = 0  # business: office hours are local to this offset
    weekend: float = 1.0  # weekend traffic relative to a weekday
    peak_hour: float = 15.0  # consumer, steady: UTC hour of the daily peak
    floor: float = 0.1  # consumer, steady: trough relative to peak
    window_start_min: int = 0  # batch: UTC minute the nightly job starts
    window_len_min: int = 0  # batch: how long it runs
    weekdays_only: bool = False  # batch: no run on Saturday and Sunday (UTC)
    ttft: bool = False  # streamed responses report time to first token

    @property
    def provider(self) -> str:
        return MODEL_PROVIDER[self.model]


def weekday_name(rel_min: int) -> str:
    """Short UTC weekday name of a scenario minute (minute 0 is a Thursday).

    >>> weekday_name(0), weekday_name(2 * 1440 + 5), weekday_name(4 * 1440)
    ('Thu', 'Sat', 'Mon')
    """
    return DAY_NAMES[(START_WEEKDAY + rel_min // 1440) % 7]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    c: np.ndarray = np.clip(x, 0.0, 1.0)
    out: np.ndarray = c * c * (3.0 - 2.0 * c)
    return out


def _bump(minutes: np.ndarray, peak_hour: float) -> np.ndarray:
    """0..1 cosine bump peaking at ``peak_hour`` UTC."""
    return 0.5 + 0.5 * np.cos(2.0 * math.pi * (minutes % 1440 - peak_hour * 60.0) / 1440.0)


def route_rates(r: FleetRoute, days: int) -> np.ndarray:
    """Expected requests in each minute of the scenario (length ``days * 1440``)."""
    m = np.arange(days * 1440, dtype=np.float64)
    day = (START_WEEKDAY + m // 1440) % 7
    if r.kind == "business":
        local = m + 60.0 * r.utc_offset_h
        h = (local % 1440) / 60.0
        office = _smoothstep((h - 7.0) / 2.0) * (1.0 - _smoothstep((h - 17.0) / 2.0))
        office = office * (1.0 - 0.15 * np.exp(-(((h - 12.5) / 0.6) ** 2)))
        shape = 0.04 + 0.96 * office
        local_day = (START_WEEKDAY + np.floor(local / 1440)) % 7
        shape = np.where(local_day >= 5, shape * r.weekend, shape)
    elif r.kind == "batch":
        t = m % 1440
        inside = (t >= r.window_start_min) & (t < r.window_start_min + r.window_len_min)
        if r.weekdays_only:
            inside &= day < 5
        shape = inside.astype(np.float64)
    elif r.kind == "consumer":
        shape = r.floor + (1.0 - r.floor) * _bump(m, r.peak_hour) ** 1.5
        shape = np.where(day >= 5, shape * r.weekend, shape)
    else:  # steady
        shape = r.floor + (1.0 - r.floor) * _bump(m, r.peak_hour)
        shape = np.where(day >= 5, shape * r.weekend, shape)
    out: np.ndarray = r.peak_per_min * shape
    return out


def _events_per_request(r: RouteSpec) -> float:
    return 3.02 + r.review_share


def expected_events(routes: list[FleetRoute], days: int = 7) -> float:
    """Expected number of events (usage, latency, cost, errors, reviews) over ``days``."""
    return float(sum(route_rates(r, days).sum() * _events_per_request(r) for r in routes))


def _rates(rng: random.Random, n: int) -> list[float]:
    lo, hi = math.log(MIN_RATE), math.log(MAX_RATE)
    mid = [round(math.exp(rng.uniform(lo, hi)), 3) for _ in range(n - 2)]
    return [MAX_RATE, MIN_RATE, *mid]


def _kind_counts(rng: random.Random, n: int) -> dict[str, int]:
    while True:
        counts = {"business": rng.randint(7, 10), "consumer": rng.randint(6, 9), "batch": rng.randint(4, 6)}
        counts["steady"] = n - sum(counts.values())
        if 4 <= counts["steady"] <= len(_TEMPLATES["steady"]):
            return counts


def _route(rng: random.Random, kind: str, tpl: tuple[str, str, str, str], rate: float) -> FleetRoute:
    name, workflow, prefix, flags = tpl
    provider = rng.choices(list(_PROVIDER_WEIGHTS), weights=list(_PROVIDER_WEIGHTS.values()))[0]
    big = rng.random() < (0.45 if kind == "business" else 0.25)
    model = _MODELS[provider][1 if big else 0]
    family = next(f for f in _LATENCY_MS if f in model)
    agent = "A" in flags
    in_lo, in_hi = {"batch": (1000, 9000), "steady": (100, 1500)}.get(kind, (300, 5000))
    tools = tuple(rng.sample(_TOOLS, k=rng.randint(1, 3))) if "T" in flags else ()
    review = rng.uniform(0.25, 1.0) if "V" in flags else rng.uniform(0.02, 0.1) if "v" in flags else 0.0
    shape: dict[str, float | int | bool] = {}
    if kind == "business":
        shape = {"utc_offset_h": rng.choice((-8, -5, -4, 0, 1, 2, 8, 9)), "weekend": rng.uniform(0.1, 0.35)}
    elif kind == "consumer":
        shape = {
            "peak_hour": rng.uniform(12.0, 21.0),
            "floor": rng.uniform(0.06, 0.15),
            "weekend": rng.uniform(0.95, 1.25),
        }
    elif kind == "steady":
        shape = {
            "peak_hour": rng.uniform(10.0, 18.0),
            "floor": rng.uniform(0.6, 0.8),
            "weekend": rng.uniform(0.85, 1.0),
        }
    else:
        shape = {
            "window_start_min": 5 * rng.randint(0, 47),
            "window_len_min": 5 * rng.randint(12, 36),
            "weekdays_only": rng.random() < 0.4,
        }
    n_tenants = {"business": (5, 25), "consumer": (20, 60), "batch": (1, 4), "steady": (3, 12)}[kind]
    return FleetRoute(
        name=name,
        peak_per_min=rate,
        workflow=workflow,
        model=model,
        prompt_prefix=prefix,
        prompt_n=rng.randint(1, 30),
        config_n=rng.randint(1, 60),
        latency_ms=round(_LATENCY_MS[family] * rng.uniform(0.7, 1.6) * (1.6 if agent else 1.0), 1),
        latency_sigma=round(rng.uniform(0.35, 0.55), 2),
        input_tokens=int(math.exp(rng.uniform(math.log(in_lo), math.log(in_hi)))),
        output_tokens=rng.randint(20, 900),
        tenants=tuple(f"{_TENANT_PREFIX[kind]}-{prefix}-{i:03d}" for i in range(rng.randint(*n_tenants))),
        source_index=f"{prefix}-idx-2025030{rng.randint(1, 5)}" if "R" in flags else None,
        tools=tools,
        review_share=round(review, 3),
        structured="S" in flags,
        service_account=f"svc-{name}" if rng.random() < 0.75 or "R" in flags else None,
        multi_step=0.3 if agent else 0.0,
        timeout_ms=60000.0 if big else 30000.0,
        kind=kind,
        ttft="F" in flags,
        **shape,  # type: ignore[arg-type]
    )


def make_fleet(seed: int) -> list[FleetRoute]:
    """The routes of ``seed`` (same seed, same routes), sorted by name."""
    rng = random.Random(seed * 1_000_003 + 17)
    for _ in range(200):
        n = rng.randint(28, 30)
        counts = _kind_counts(rng, n)
        rates = _rates(rng, n)
        # batch jobs run hot inside their short window: they take most of the highest rates
        rates.sort(reverse=True)
        batch_rates = rng.sample(rates[: counts["batch"] + 3], counts["batch"])
        rest = list(rates)
        for x in batch_rates:
            rest.remove(x)
        rng.shuffle(rest)
        routes: list[FleetRoute] = []
        for kind in KINDS:
            tpls = rng.sample(_TEMPLATES[kind], counts[kind])
            for tpl in tpls:
                rate = batch_rates.pop() if kind == "batch" else rest.pop()
                routes.append(_route(rng, kind, tpl, rate))
        providers = [r.provider for r in routes]
        if min(providers.count(p) for p in _MODELS) < 3:
            continue
        if EVENTS_PER_WEEK[0] <= expected_events(routes) <= EVENTS_PER_WEEK[1]:
            return sorted(routes, key=lambda r: r.name)
    raise RuntimeError(f"no fleet within the volume bounds for seed {seed}")  # pragma: no cover


def subset(routes: list[FleetRoute], n: int, max_rate: float = 25.0) -> list[FleetRoute]:
    """``n`` routes covering every kind (for small, fast runs): per kind, the busiest routes
    not above ``max_rate`` requests a minute, taken kind by kind in turn.

    >>> small = subset(make_fleet(101), 8)
    >>> len(small), sorted({r.kind for r in small})
    (8, ['batch', 'business', 'consumer', 'steady'])
    """
    if n >= len(routes):
        return list(routes)
    queues = {
        k: sorted((r for r in routes if r.kind == k), key=lambda r: (r.peak_per_min > max_rate, -r.peak_per_min))
        for k in KINDS
    }
    out: list[FleetRoute] = []
    while len(out) < n:
        for k in KINDS:
            if queues[k] and len(out) < n:
                out.append(queues[k].pop(0))
    return sorted(out, key=lambda r: r.name)
