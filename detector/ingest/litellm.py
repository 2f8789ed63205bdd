"""LiteLLM's ``StandardLoggingPayload`` -> telemetry events (SPEC 2c): one object, a JSON array of them, or
NDJSON in one message.

Each payload is one request: a ``usage`` event (``prompt_tokens``, ``completion_tokens``), a ``latency``
event (``endTime - startTime``), a ``cost`` event (``response_cost``), and an ``error`` event when
``status`` is ``failure`` (class from ``error_information``: its ``error_class``, else its
``error_code``). The route is read at ``[input.litellm] route_key`` (a dotted path, ``model_group``
by default; ``metadata.some_key`` for a metadata key), the tenant at ``tenant_key``
(``metadata.user_api_key_team_id``). ``id`` is the request id and names the events, so a redelivered
payload is deduplicated. Messages, responses and error texts are free text and never read.

>>> import json
>>> p = {"id": "chatcmpl-1", "trace_id": "t-1", "status": "success", "model": "gpt-4o-mini", "model_group": "support",
...      "custom_llm_provider": "openai", "startTime": 1767225600.0, "endTime": 1767225600.8,
...      "prompt_tokens": 10, "completion_tokens": 20, "response_cost": 1.35e-05,
...      "metadata": {"user_api_key_team_id": "team-a"}, "messages": [{"content": "never read"}]}
>>> out = LiteLLMTranslator().translate(json.dumps(p).encode())
>>> [(e["type"], e["route"], e["tenant"]) for e in out.events][:2]
[('usage', 'support', 'team-a'), ('latency', 'support', 'team-a')]
>>> out.events[1]["latency_ms"], out.events[2]["cost_usd"]
(800.0, 1.35e-05)
>>> LiteLLMTranslator().translate(json.dumps({**p, "model_group": ""}).encode()).rejection.detail
'$.model_group: the route, required'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from detector.config import InputConfig
from detector.ingest.decode import Rejection
from detector.ingest.otlp import MAX_TOKENS, Translated, error_class

__all__ = ["LiteLLMTranslator"]

#: Payloads in one message, at most.
MAX_PAYLOADS = 10_000


def _at(doc: Mapping[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v in (float("inf"), float("-inf")):
        return None
    return float(v)


class LiteLLMTranslator:
    """``translate(raw)``: the events of one message of LiteLLM payloads."""

    def __init__(self, config: InputConfig | None = None):
        cfg = (config or InputConfig()).litellm
        self.route_key = cfg.route_key
        self.tenant_key = cfg.tenant_key
        self.errors = dict((config or InputConfig()).otlp.error_types)

    def translate(self, raw: bytes) -> Translated:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Translated(rejection=Rejection("not_json", "not valid UTF-8"))
        try:
            doc: Any = json.loads(text)
            docs = doc if isinstance(doc, list) else [doc]
        except (ValueError, RecursionError):
            try:  # NDJSON
                docs = [json.loads(line) for line in text.splitlines() if line.strip()]
            except (ValueError, RecursionError):
                return Translated(rejection=Rejection("not_json", "not valid JSON or NDJSON"))
        if len(docs) > MAX_PAYLOADS:
            return Translated(rejection=Rejection("too_large", f"more than {MAX_PAYLOADS} payloads"))
        out = Translated()
        for d in docs:
            if not isinstance(d, dict):
                out.rejected.append(Rejection("not_object", "$: a LiteLLM payload is an object"))
                continue
            got = self._events(d)
            if isinstance(got, Rejection):
                out.rejected.append(got)
            else:
                out.events.extend(got)
        if not out.events and out.rejected and len(docs) == len(out.rejected):
            out.rejection, out.rejected = out.rejected[0], out.rejected[1:]
        return out

    def _events(self, p: Mapping[str, Any]) -> list[dict[str, Any]] | Rejection:
        route = _at(p, self.route_key)
        if not isinstance(route, str) or not route:
            return Rejection("missing_field", f"$.{self.route_key}: the route, required")
        pid = p.get("id")
        if not isinstance(pid, str) or not pid:
            return Rejection("missing_field", "$.id: required (it names the events)")
        start, end = _num(p.get("startTime")), _num(p.get("endTime"))
        if start is None or end is None or end < start or not 946_684_800 <= end < 7_258_118_400:
            return Rejection("bad_timestamp", "$.endTime: missing, out of range, or before startTime")
        tin, tout = _num(p.get("prompt_tokens")) or 0.0, _num(p.get("completion_tokens")) or 0.0
        if not (0 <= tin <= MAX_TOKENS and 0 <= tout <= MAX_TOKENS):
            return Rejection("invalid_field", "$.prompt_tokens/completion_tokens: out of range")
        cost = _num(p.get("response_cost"))
        if cost is not None and not 0 <= cost <= 1_000_000:
            return Rejection("invalid_field", "$.response_cost: out of range")
        ctx: dict[str, Any] = {"route": route[:256], "ts": int(end * 1000), "request_id": pid[:256]}
        for name, value in (("trace_id", p.get("trace_id")), ("model", p.get("model")),
                            ("provider", p.get("custom_llm_provider")), ("tenant", _at(p, self.tenant_key))):
            if isinstance(value, str) and value:
                ctx[name] = value[:256]
        base = f"litellm-{pid[:200]}"
        events: list[dict[str, Any]] = [
            {"event_id": f"{base}-u", "type": "usage", **ctx, "input_tokens": int(tin), "output_tokens": int(tout)},
            {"event_id": f"{base}-l", "type": "latency", **ctx, "latency_ms": round((end - start) * 1000, 3)},
        ]
        if cost:
            events.append({"event_id": f"{base}-c", "type": "cost", **ctx, "cost_usd": cost})
        if p.get("status") == "failure":
            info = p.get("error_information") if isinstance(p.get("error_information"), Mapping) else {}
            assert isinstance(info, Mapping)
            cls_name, code = info.get("error_class") or None, str(info.get("error_code") or "")
            status = int(code) if code.isdigit() and 100 <= int(code) <= 599 else None
            err: dict[str, Any] = {"event_id": f"{base}-e", "type": "error", **ctx,
                                   "error_class": error_class(cls_name if isinstance(cls_name, str) else None,
                                                              status, False, self.errors)}
            if status is not None:
                err["status_code"] = status
            events.append(err)
        return events
