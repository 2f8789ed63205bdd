"""The fixed cast of a scenario: routes, models and their prices, traffic shape.

Routes differ in volume by two orders of magnitude on purpose: a detector
that only works on the busy chat route is not good enough, the 0.5 req/min
contract route matters as much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "RouteSpec",
    "ROUTES",
    "MODEL_PRICES",
    "MODEL_PROVIDER",
    "BASE_ERROR_RATES",
    "diurnal",
    "expected_requests",
]

# USD per 1k tokens: (input, output).
MODEL_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini-2024-07-18": (0.00015, 0.0006),
    "gpt-4o-mini-2025-01-15": (0.00015, 0.0006),
    "gpt-4o-2024-08-06": (0.0025, 0.01),
    "gpt-4o-2024-11-20": (0.0025, 0.01),
    "o1-2024-12-17": (0.015, 0.06),
    "claude-3-5-haiku-20241022": (0.0008, 0.004),
    "claude-3-5-haiku-20250301": (0.0008, 0.004),
    "claude-3-5-sonnet-20241022": (0.003, 0.015),
    "claude-3-5-sonnet-20250219": (0.003, 0.015),
    "claude-3-opus-20240229": (0.015, 0.075),
    "gemini-1.5-flash-001": (0.000075, 0.0003),
    "gemini-1.5-flash-002": (0.000075, 0.0003),
    "gemini-1.5-pro-001": (0.00125, 0.005),
    "gemini-1.5-pro-002": (0.00125, 0.005),
}

MODEL_PROVIDER: dict[str, str] = {
    m: ("openai" if m.startswith(("gpt", "o1")) else "google" if m.startswith("gemini") else "anthropic")
    for m in MODEL_PRICES
}

# Same price, newer snapshot: a model change that only moves latency.
SNAPSHOT_UPGRADE: dict[str, str] = {
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini-2025-01-15",
    "gpt-4o-2024-08-06": "gpt-4o-2024-11-20",
    "claude-3-5-haiku-20241022": "claude-3-5-haiku-20250301",
    "claude-3-5-sonnet-20241022": "claude-3-5-sonnet-20250219",
    "gemini-1.5-flash-001": "gemini-1.5-flash-002",
    "gemini-1.5-pro-001": "gemini-1.5-pro-002",
}

# A pricier model: a model change that moves cost (x3.75 .. x16).
EXPENSIVE_UPGRADE: dict[str, str] = {
    "gpt-4o-mini-2024-07-18": "gpt-4o-2024-08-06",
    "gpt-4o-2024-08-06": "o1-2024-12-17",
    "claude-3-5-haiku-20241022": "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet-20241022": "claude-3-opus-20240229",
    "gemini-1.5-flash-001": "gemini-1.5-pro-001",
}

# Background probability per request of each error class (about 1% in all).
BASE_ERROR_RATES: dict[str, float] = {
    "timeout": 0.003,
    "rate_limited": 0.003,
    "provider_error": 0.002,
    "other": 0.0005,
    "access_denied": 0.0003,
}
TOOL_ERROR_RATE = 0.004
RETRIEVAL_EMPTY_RATE = 0.004
RETRIEVAL_STALE_RATE = 0.001
VALIDATION_ERROR_RATE = 0.004


@dataclass(frozen=True)
class RouteSpec:
    """One route's steady-state behaviour."""

    name: str
    peak_per_min: float
    workflow: str
    model: str
    prompt_prefix: str
    prompt_n: int
    config_n: int
    latency_ms: float
    latency_sigma: float
    input_tokens: int
    output_tokens: int
    tenants: tuple[str, ...]
    source_index: str | None = None
    tools: tuple[str, ...] = ()
    review_share: float = 0.0
    structured: bool = False
    service_account: str | None = None
    multi_step: float = 0.0
    timeout_ms: float = 30000.0


def _tenants(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}-{i:03d}" for i in range(n))


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "support-chat",
        60.0,
        "customer-support",
        "gpt-4o-mini-2024-07-18",
        "support",
        12,
        41,
        1100.0,
        0.45,
        900,
        220,
        _tenants("acme", 40),
        review_share=0.02,
        service_account="svc-support-gw",
    ),
    RouteSpec(
        "kb-answer",
        15.0,
        "internal-kb",
        "claude-3-5-haiku-20241022",
        "kb",
        7,
        18,
        2300.0,
        0.5,
        2600,
        300,
        _tenants("dept", 12),
        source_index="kb-idx-20250302",
        review_share=0.08,
        service_account="svc-kb-reader",
    ),
    RouteSpec(
        "invoice-extract",
        5.0,
        "ap-automation",
        "gpt-4o-mini-2024-07-18",
        "invoice",
        4,
        9,
        1800.0,
        0.4,
        1500,
        400,
        _tenants("ap", 6),
        tools=("ocr.extract", "erp.lookup_vendor"),
        structured=True,
        service_account="svc-ap-bot",
    ),
    RouteSpec(
        "ticket-agent",
        3.0,
        "it-helpdesk",
        "gpt-4o-2024-08-06",
        "agent",
        21,
        5,
        4200.0,
        0.55,
        3200,
        450,
        _tenants("it", 8),
        tools=("crm.lookup", "ticket.update", "kb.search"),
        review_share=0.25,
        service_account="svc-ticket-agent",
        multi_step=0.3,
        timeout_ms=45000.0,
    ),
    RouteSpec(
        "email-draft",
        1.2,
        "sales-outreach",
        "claude-3-5-haiku-20241022",
        "email",
        3,
        2,
        2600.0,
        0.45,
        700,
        350,
        _tenants("sales", 5),
        review_share=0.6,
    ),
    RouteSpec(
        "contract-review",
        0.5,
        "legal-review",
        "claude-3-5-sonnet-20241022",
        "legal",
        9,
        3,
        8500.0,
        0.5,
        9000,
        900,
        _tenants("legal", 3),
        source_index="legal-idx-v14",
        review_share=1.0,
        structured=True,
        service_account="svc-legal-rag",
        timeout_ms=60000.0,
    ),
)


def diurnal(minute_of_day: float) -> float:
    """Traffic shape in (0, 1]: trough around 03:00 UTC, peak around 15:00 UTC.

    >>> round(diurnal(15 * 60), 2), round(diurnal(3 * 60 + 30), 2)
    (1.0, 0.1)
    """
    phase = 2.0 * math.pi * (minute_of_day - 15 * 60) / 1440.0
    bump = 0.5 + 0.5 * math.cos(phase)
    return 0.1 + 0.9 * float(bump**1.5)


def expected_requests(route: RouteSpec, start_min: float, end_min: float) -> float:
    """Expected number of requests on ``route`` between two scenario minutes."""
    total = 0.0
    m = start_min
    while m < end_min:
        total += route.peak_per_min * diurnal(m % 1440)
        m += 1.0
    return total
