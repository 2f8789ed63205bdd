"""OpenTelemetry GenAI spans -> telemetry events (SPEC 2c), from OTLP protobuf or OTLP/JSON messages as the
OpenTelemetry Collector's Kafka exporter writes them (``TracesData``: resourceSpans / scopeSpans / spans).

Every span whose ``gen_ai.operation.name`` is set becomes a ``usage`` and a ``latency`` event, an
``error`` event when its status code is 2 (error) or ``error.type`` is set, and a ``cost`` event when
its model has a price in the config. Spans without GenAI attributes are ignored (counted, not an error).
Attribute names changed between releases of the GenAI conventions: :data:`ATTRIBUTES` lists, per field,
the current name first and the older ones after it. Event ids come from the trace and span ids, so a
redelivered message is still deduplicated.

Pure: bytes in, SPEC section 1 event dicts (or a rejection with its reason) out; never raises.

>>> import json
>>> msg = {"resourceSpans": [{"resource": {"attributes": [
...     {"key": "service.name", "value": {"stringValue": "support.reply"}}]},
...   "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
...     "name": "chat gpt-4o", "startTimeUnixNano": "1767225600000000000", "endTimeUnixNano": "1767225601250000000",
...     "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
...                    {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
...                    {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
...                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}}]}]}]}]}
>>> out = Translator("otlp_json").translate(json.dumps(msg).encode())
>>> [(e["type"], e["route"]) for e in out.events], out.ignored
([('usage', 'support.reply'), ('latency', 'support.reply')], 0)
>>> out.events[0]["provider"], out.events[0]["input_tokens"], out.events[1]["latency_ms"]
('openai', 1200, 1250.0)
>>> Translator("otlp_proto").translate(b"\\x0a\\xff").rejection.reason
'not_otlp'
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from detector.config import InputConfig, OtlpInput, Price
from detector.ingest.decode import Rejection

__all__ = ["ATTRIBUTES", "Span", "Translated", "Translator", "error_class", "spans_from_json", "spans_from_proto",
           "translator_for"]

#: Field -> attribute names, the current convention's first.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "operation": ("gen_ai.operation.name",),
    "provider": ("gen_ai.provider.name", "gen_ai.system"),
    "response_model": ("gen_ai.response.model",),
    "request_model": ("gen_ai.request.model",),
    "input_tokens": ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"),
    "output_tokens": ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"),
    "tool": ("gen_ai.tool.name",),
    "error_type": ("error.type",),
    "status_code": ("http.response.status_code", "http.status_code"),
}
#: ``error.type`` values -> error class, before the config's table.
DEFAULT_ERROR_TYPES: dict[str, str] = {
    "timeout": "timeout", "TimeoutError": "timeout", "APITimeoutError": "timeout", "deadline_exceeded": "timeout",
    "RateLimitError": "rate_limited", "rate_limit_exceeded": "rate_limited",
    "AuthenticationError": "access_denied", "PermissionDeniedError": "access_denied",
    "InternalServerError": "provider_error", "APIConnectionError": "provider_error",
    "ServiceUnavailableError": "provider_error",
}
#: Tokens above this in one span are absurd (a counter bug): the span is rejected.
MAX_TOKENS = 10_000_000
#: Spans in one message, at most.
MAX_SPANS = 10_000


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    start_ns: int
    end_ns: int
    #: OTLP status code: 0 unset, 1 ok, 2 error.
    status: int
    attrs: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Translated:
    """What one message gave: events, GenAI-less spans ignored, spans rejected, or the whole message rejected."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    rejection: Rejection | None = None


def error_class(error_type: str | None, status_code: int | None, tool: bool, table: Mapping[str, str]) -> str:
    """The SPEC error class of a failed span.

    >>> error_class("429", None, False, {}), error_class(None, 503, False, {}), error_class("boom", None, True, {})
    ('rate_limited', 'provider_error', 'tool_error')
    >>> error_class("boom", None, False, {"boom": "validation_error"})
    'validation_error'
    """
    if error_type is not None:
        got = table.get(error_type) or DEFAULT_ERROR_TYPES.get(error_type)
        if got is not None:
            return got
        if error_type.isdigit():
            status_code = int(error_type)
    if status_code is not None:
        if status_code == 429:
            return "rate_limited"
        if status_code in (401, 403):
            return "access_denied"
        if status_code in (408, 504):
            return "timeout"
        if 500 <= status_code < 600:
            return "provider_error"
    return "tool_error" if tool else "other"


# -- OTLP/JSON ---------------------------------------------------------------------------------------
def _json_value(v: Any) -> Any:
    if not isinstance(v, dict):
        return None
    for k in ("stringValue", "boolValue", "doubleValue"):
        if k in v:
            return v[k]
    if "intValue" in v:  # 64-bit integers arrive as strings
        try:
            return int(v["intValue"])
        except (TypeError, ValueError, OverflowError):  # not a number, or an infinite one
            return None
    return None


def _json_attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for kv in items:
            if isinstance(kv, dict) and isinstance(kv.get("key"), str):
                out[kv["key"]] = _json_value(kv.get("value"))
    return out


def _json_id(v: Any) -> str:
    """OTLP/JSON ids are hex; a base64 id (protobuf's own JSON printer) is turned into hex too."""
    if not isinstance(v, str):
        return ""
    try:
        bytes.fromhex(v)
        return v.lower()
    except ValueError:
        try:
            return base64.b64decode(v, validate=True).hex()
        except (binascii.Error, ValueError):
            return ""


def spans_from_json(raw: bytes) -> list[Span] | Rejection:
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return Rejection("not_json", "not valid JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        return Rejection("not_otlp", "$: not an OTLP TracesData object (resourceSpans)")
    out: list[Span] = []
    for rs in doc.get("resourceSpans") or []:
        if not isinstance(rs, dict):
            continue
        res = rs.get("resource")
        resource = _json_attrs(res.get("attributes") if isinstance(res, dict) else None)
        scopes = rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or []
        for ss in scopes if isinstance(scopes, list) else []:
            spans = ss.get("spans") if isinstance(ss, dict) else None
            for sp in spans if isinstance(spans, list) else []:
                if not isinstance(sp, dict):
                    continue
                try:
                    start, end = int(sp.get("startTimeUnixNano", 0)), int(sp.get("endTimeUnixNano", 0))
                except (TypeError, ValueError, OverflowError):  # Infinity is valid to json.loads
                    start = end = -1
                code = sp["status"].get("code", 0) if isinstance(sp.get("status"), dict) else 0
                status = 2 if code in (2, "STATUS_CODE_ERROR") else 1 if code in (1, "STATUS_CODE_OK") else 0
                out.append(Span(_json_id(sp.get("traceId")), _json_id(sp.get("spanId")), start, end, status,
                                _json_attrs(sp.get("attributes")), resource))
                if len(out) > MAX_SPANS:
                    return Rejection("too_large", f"more than {MAX_SPANS} spans")
    return out


# -- OTLP protobuf --------------------------------------------------------------------------------------
def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    return None


def spans_from_proto(raw: bytes) -> list[Span] | Rejection:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    msg = TracesData()
    try:
        msg.ParseFromString(raw)
    except (DecodeError, ValueError, RecursionError):
        return Rejection("not_otlp", "not an OTLP TracesData protobuf message")
    out: list[Span] = []
    for rs in msg.resource_spans:
        resource = {kv.key: _pb_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                out.append(Span(sp.trace_id.hex(), sp.span_id.hex(), sp.start_time_unix_nano, sp.end_time_unix_nano,
                                int(sp.status.code), {kv.key: _pb_value(kv.value) for kv in sp.attributes},
                                resource))
                if len(out) > MAX_SPANS:
                    return Rejection("too_large", f"more than {MAX_SPANS} spans")
    return out


# -- spans -> events -------------------------------------------------------------------------------------
def _get(attrs: Mapping[str, Any], name: str) -> Any:
    for key in ATTRIBUTES[name]:
        v = attrs.get(key)
        if v is not None:
            return v
    return None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float) and math.isfinite(v):
        return int(v)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return None


class Translator:
    """One topic's (or file's) format: ``translate(raw)`` gives the SPEC section 1 events of one message."""

    def __init__(self, fmt: str, config: InputConfig | None = None):
        if fmt not in ("otlp_json", "otlp_proto"):
            raise ValueError(f"no OTLP translator for the format {fmt}")
        self.fmt = fmt
        cfg = config or InputConfig()
        self.otlp: OtlpInput = cfg.otlp
        self.prices: dict[str, Price] = dict(cfg.prices)
        self.errors: dict[str, str] = dict(cfg.otlp.error_types)

    def translate(self, raw: bytes) -> Translated:
        spans = spans_from_json(raw) if self.fmt == "otlp_json" else spans_from_proto(raw)
        if isinstance(spans, Rejection):
            return Translated(rejection=spans)
        out = Translated()
        for sp in spans:
            if _get(sp.attrs, "operation") is None:
                out.ignored += 1
                continue
            got = self._events(sp)
            if isinstance(got, Rejection):
                out.rejected.append(got)
            else:
                out.events.extend(got)
        return out

    def _attr(self, sp: Span, key: str | None) -> Any:
        if key is None:
            return None
        v = sp.attrs.get(key)
        return sp.resource.get(key) if v is None else v

    def _events(self, sp: Span) -> list[dict[str, Any]] | Rejection:
        route = self._attr(sp, self.otlp.route_attribute)
        if not isinstance(route, str) or not route:
            return Rejection("missing_field", f"$.attributes.{self.otlp.route_attribute}: the route, required")
        if not sp.trace_id or not sp.span_id:
            return Rejection("missing_field", "$.traceId/spanId: required for the event ids")
        if sp.end_ns <= 0 or sp.start_ns < 0 or sp.end_ns < sp.start_ns:
            return Rejection("bad_timestamp", "$.endTimeUnixNano: missing, or before startTimeUnixNano")
        tin, tout = _int(_get(sp.attrs, "input_tokens")) or 0, _int(_get(sp.attrs, "output_tokens")) or 0
        if not (0 <= tin <= MAX_TOKENS and 0 <= tout <= MAX_TOKENS):
            return Rejection("invalid_field", "$.attributes.gen_ai.usage: token count out of range")
        ts = sp.end_ns // 1_000_000
        ctx: dict[str, Any] = {"route": route, "ts": ts, "trace_id": sp.trace_id, "request_id": sp.span_id}
        model = _get(sp.attrs, "response_model") or _get(sp.attrs, "request_model")
        for name, value in (("model", model), ("provider", _get(sp.attrs, "provider")),
                            ("tool", _get(sp.attrs, "tool")),
                            ("tenant", self._attr(sp, self.otlp.tenant_attribute))):
            if isinstance(value, str) and value:
                ctx[name] = value[:256]
        base = f"otel-{sp.trace_id}-{sp.span_id}"
        events: list[dict[str, Any]] = [
            {"event_id": f"{base}-u", "type": "usage", **ctx, "input_tokens": tin, "output_tokens": tout},
            {"event_id": f"{base}-l", "type": "latency", **ctx, "latency_ms": (sp.end_ns - sp.start_ns) / 1e6},
        ]
        etype = _get(sp.attrs, "error_type")
        if sp.status == 2 or etype is not None:
            status = _int(_get(sp.attrs, "status_code"))
            cls = error_class(None if etype is None else str(etype), status,
                              str(_get(sp.attrs, "operation")) == "execute_tool", self.errors)
            err: dict[str, Any] = {"event_id": f"{base}-e", "type": "error", **ctx, "error_class": cls}
            if status is not None and 100 <= status <= 599:
                err["status_code"] = status
            events.append(err)
        price = self.prices.get(str(model)) if model is not None else None
        if price is not None and (tin or tout):
            cost = tin / 1000 * price.input_per_1k + tout / 1000 * price.output_per_1k
            events.append({"event_id": f"{base}-c", "type": "cost", **ctx, "cost_usd": round(cost, 8)})
        return events


class _Translating(Protocol):
    def translate(self, raw: bytes) -> Translated: ...


def translator_for(fmt: str, config: InputConfig | None = None) -> _Translating:
    """The translator of an input format other than ``native``."""
    if fmt == "litellm":
        from detector.ingest.litellm import LiteLLMTranslator

        return LiteLLMTranslator(config)
    return Translator(fmt, config)
