"""Wire models: telemetry events in (SPEC section 1), incident events out (section 2).

The models are ``msgspec.Struct`` types: one decode validates the whole
message at about five times the speed of ``json.loads`` alone, which keeps
the hot path cheap. The JSON Schemas in ``schemas/`` are generated from
these classes (``python -m detector.schemas``), so the code and the contract
cannot drift apart.

Telemetry is a tagged union on ``type``; unknown fields are ignored:

>>> import msgspec
>>> ev = msgspec.json.decode(
...     b'{"event_id":"e1","type":"latency","ts":1700000000000,'
...     b'"route":"support.draft","latency_ms":840,"prompt":"ignored"}',
...     type=TelemetryEvent)
>>> type(ev).__name__, ev.latency_ms
('LatencyEvent', 840.0)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

__all__ = [
    "ERROR_CLASSES",
    "REVIEW_OUTCOMES",
    "CHANGE_KINDS",
    "VERSION_FIELDS",
    "tool_identity",
    "INCIDENT_TYPES",
    "ACTIONS",
    "TelemetryEvent",
    "UsageEvent",
    "ErrorEvent",
    "LatencyEvent",
    "CostEvent",
    "ReviewEvent",
    "ChangeEvent",
    "IncidentEvent",
    "SignalEntry",
    "BlastRadius",
    "Evidence",
    "Recommendation",
    "RollbackTarget",
]

ERROR_CLASSES = (
    "timeout",
    "rate_limited",
    "provider_error",
    "tool_error",
    "validation_error",
    "access_denied",
    "retrieval_empty",
    "retrieval_stale",
    "other",
)
REVIEW_OUTCOMES = ("accepted", "edited", "rejected", "escalated", "overridden")
CHANGE_KINDS = ("prompt", "model", "config", "source_index", "tool", "route")
#: Change kind -> the context field of ordinary events that carries its version.
VERSION_FIELDS = {
    "prompt": "prompt_version",
    "model": "model",
    "config": "config_version",
    "source_index": "source_index",
    "tool": "tool",
}
def tool_identity(value: str) -> str:
    """The tool a ``tool`` value names: the part before ``@``, or the whole value.

    >>> tool_identity("ocr.extract@1.5.0"), tool_identity("erp.lookup_vendor")
    ('ocr.extract', 'erp.lookup_vendor')
    """
    return value.split("@", 1)[0] if "@" in value else value



# Bounds that make a value absurd rather than merely large. A message beyond
# them is rejected (and dead-lettered) instead of poisoning a baseline.
MAX_COUNT = 1_000_000
MAX_TOKENS = 100_000_000
MAX_LATENCY_MS = 86_400_000.0  # a day
MAX_COST_USD = 1_000_000.0

EventId = Annotated[str, Meta(min_length=1, max_length=128)]
Route = Annotated[str, Meta(min_length=1, max_length=256)]
Context = Annotated[str, Meta(max_length=256)]
Count = Annotated[int, Meta(ge=0, le=MAX_COUNT)]
Tokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]
#: RFC 3339 text (decoded by msgspec, in C) or epoch milliseconds; ``ingest.decode`` turns
#: either into epoch milliseconds and rejects text without a UTC offset.
Timestamp = datetime | float


class _Base(msgspec.Struct, tag_field="type", frozen=True, kw_only=True, gc=False):
    """Fields every telemetry event carries (SPEC section 1)."""

    event_id: EventId
    ts: Timestamp
    route: Route
    model: Context | None = None
    provider: Context | None = None
    prompt_version: Context | None = None
    config_version: Context | None = None
    source_index: Context | None = None
    tool: Context | None = None
    workflow: Context | None = None
    tenant: Context | None = None
    service_account: Context | None = None
    request_id: Context | None = None
    trace_id: Context | None = None


class UsageEvent(_Base, tag="usage", frozen=True):
    """One request handled by the route."""

    requests: Annotated[int, Meta(ge=1, le=MAX_COUNT)] = 1
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    retries: Count = 0


class ErrorEvent(_Base, tag="error", frozen=True):
    """One failed request or tool call; an unknown class is read as ``other``."""

    error_class: Context = "other"
    status_code: Annotated[int, Meta(ge=0, le=999)] | None = None


class LatencyEvent(_Base, tag="latency", frozen=True):
    """End-to-end latency of one request."""

    latency_ms: Annotated[float, Meta(ge=0, le=MAX_LATENCY_MS)]
    ttft_ms: Annotated[float, Meta(ge=0, le=MAX_LATENCY_MS)] | None = None


class CostEvent(_Base, tag="cost", frozen=True):
    """Spend attributed to one request or batch."""

    cost_usd: Annotated[float, Meta(ge=0, le=MAX_COST_USD)]


class ReviewEvent(_Base, tag="review", frozen=True):
    """A human reviewed an AI output. ``reason`` is free text: never copied."""

    outcome: Literal["accepted", "edited", "rejected", "escalated", "overridden"]
    reason: str | None = None


class ChangeEvent(_Base, tag="change", frozen=True):
    """A release or configuration change on the route. ``actor`` is never copied."""

    change_kind: Literal["prompt", "model", "config", "source_index", "tool", "route"]
    from_version: Context | None = None
    to_version: Context | None = None
    actor: str | None = None


TelemetryEvent = UsageEvent | ErrorEvent | LatencyEvent | CostEvent | ReviewEvent | ChangeEvent


# -- incident events (output) -------------------------------------------------

IncidentType = Literal["bad_output", "retrieval_failure", "tool_failure", "access_privacy", "performance", "cost"]
Severity = Literal["critical", "high", "medium", "low"]
Action = Literal[
    "pause_feature",
    "draft_only",
    "manual_review",
    "rollback",
    "disable_tool",
    "narrow_sources",
    "rate_limit",
    "failover_route",
]
INCIDENT_TYPES: tuple[str, ...] = get_args(IncidentType)
ACTIONS: tuple[str, ...] = get_args(Action)


class _Out(msgspec.Struct, kw_only=True, omit_defaults=False):
    pass


class SignalEntry(_Out):
    """One detector firing that supports the incident."""

    signal: str
    detector: str
    observed: float
    baseline: float
    threshold: float
    score: float
    window_start: str
    window_end: str


class BlastRadius(_Out):
    """Who and what is affected, over the incident's anomalous windows."""

    requests: int
    tenants: int
    share: float


class ChangeRef(_Out):
    """A change event in or shortly before the incident window (no actor, no free text)."""

    at: str
    kind: str
    from_version: str | None
    to_version: str | None
    event_id: str


class Evidence(_Out):
    """Bounded, redacted evidence. Identifiers only; never free text."""

    request_ids: list[str]
    trace_ids: list[str]
    models: dict[str, int]
    prompt_versions: dict[str, int]
    config_versions: dict[str, int]
    source_indexes: dict[str, int]
    tools: dict[str, int]
    error_classes: dict[str, int]
    changes: list[ChangeRef]
    versions_before: dict[str, list[str]] = {}


class RollbackTarget(_Out):
    """Where to roll back to: the last version seen healthy on the route."""

    kind: Literal["prompt", "model", "config", "source_index", "tool", "route"]
    to_version: str


class Recommendation(_Out):
    """One containment action, in priority order."""

    action: Action
    target: RollbackTarget | str | None
    rationale: str
    auto_applicable: bool


class GroupCause(_Out):
    """What the related incidents share."""

    kind: Literal["provider", "model", "tool", "source_index", "feed"]
    value: str


class IncidentGroup(_Out):
    """Incidents on several routes that share one cause (SPEC 2a)."""

    group_id: str
    cause: GroupCause
    routes: list[str]


class IncidentEvent(_Out):
    """One message on the incidents topic (SPEC section 2)."""

    schema_version: Literal["1"]
    event: Literal["opened", "updated", "escalated", "acknowledged", "contained", "resolved"]
    incident_id: str
    seq: int
    route: str
    incident_type: IncidentType
    severity: Severity
    status: Literal["open", "acknowledged", "contained", "resolved"]
    started_at: str
    detected_at: str
    at: str
    resolved_at: str | None
    signals: list[SignalEntry]
    blast_radius: BlastRadius
    evidence: Evidence
    recommendations: list[Recommendation]
    owner: str | None
    escalation: str | None
    summary: str
    #: Related incidents on other routes with the same cause (SPEC 2a); null when alone.
    group: IncidentGroup | None = None
    #: Who gave the operator command behind this message, and their note (SPEC 2b); null otherwise.
    by: str | None = None
    note: str | None = None
