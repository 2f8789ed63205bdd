"""OpenTelemetry GenAI spans as input (SPEC 2c), made by the real SDK and encoded by the OTLP exporters'
own encoder (protobuf) and protobuf's JSON printer (with the ids in hex, as the Collector writes them).

What these protect: each GenAI span becomes usage + latency (+ error, + cost when priced) events with the
conventions' current and older attribute names; spans without GenAI attributes are ignored and counted;
event ids are stable; bad input (truncated protobuf, no route, absurd tokens) is rejected with its reason
and dead-lettered; and such traffic with an injected incident opens the right incident through
`detector replay --format otlp_proto` and `--format otlp_json`, the same in both.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (dev extra) is not installed")

from google.protobuf.json_format import MessageToDict  # noqa: E402
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import Status, StatusCode  # noqa: E402

from detector.config import InputConfig  # noqa: E402
from detector.ingest.otlp import Translator  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns


def make_spans(service: str, specs: list[dict[str, Any]]) -> Any:
    """Finished SDK spans of one service: each spec gives start/end (ns), attributes, error."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for s in specs:
        span = tracer.start_span(s.get("name", "chat"), start_time=s["start"], attributes=s.get("attrs", {}))
        if s.get("error"):
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=s["end"])
    provider.shutdown()
    return exporter.get_finished_spans()


def proto_bytes(spans: Any) -> bytes:
    return bytes(encode_spans(spans).SerializeToString())


def json_bytes(spans: Any) -> bytes:
    doc = MessageToDict(encode_spans(spans))
    for rs in doc.get("resourceSpans", []):  # the Collector writes ids in hex, protobuf's printer in base64
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        import base64
                        sp[k] = base64.b64decode(sp[k]).hex()
    return json.dumps(doc).encode()


def chat(start_ns: int, ms: float, **attrs: Any) -> dict[str, Any]:
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 900, "gen_ai.usage.output_tokens": 200}
    return {"start": start_ns, "end": start_ns + int(ms * 1e6), "attrs": {**base, **attrs}}


def test_genai_spans_become_events_with_old_and_new_attribute_names() -> None:
    spans = make_spans("support.reply", [
        chat(T0, 1200, **{"gen_ai.provider.name": "openai", "gen_ai.response.model": "gpt-4o-mini-2024-07-18"}),
        {**chat(T0 + 10**9, 300, **{"gen_ai.system": "anthropic", "gen_ai.usage.prompt_tokens": 50,
                                    "error.type": "RateLimitError"}), "error": True},
        {"start": T0, "end": T0 + 10**6, "name": "GET /health", "attrs": {"http.method": "GET"}},
        {**chat(T0 + 2 * 10**9, 50, **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "crm.write"}),
         "error": True},
    ])
    cfg = InputConfig.model_validate({"prices": {"gpt-4o-mini-2024-07-18": {"input_per_1k": 0.15,
                                                                           "output_per_1k": 0.6}}})
    for fmt, raw in (("otlp_proto", proto_bytes(spans)), ("otlp_json", json_bytes(spans))):
        out = Translator(fmt, cfg).translate(raw)
        assert out.rejection is None and out.rejected == [] and out.ignored == 1
        kinds = [(e["type"], e.get("error_class")) for e in out.events]
        assert kinds == [("usage", None), ("latency", None), ("cost", None), ("usage", None), ("latency", None),
                         ("error", "rate_limited"), ("usage", None), ("latency", None), ("error", "tool_error")]
        first = out.events[0]
        assert (first["route"], first["provider"], first["model"]) == (
            "support.reply", "openai", "gpt-4o-mini-2024-07-18")
        assert out.events[3]["provider"] == "anthropic" and out.events[3]["input_tokens"] == 900
        assert out.events[1]["latency_ms"] == 1200.0 and out.events[2]["cost_usd"] == round(0.9 * 0.15 + 0.2 * 0.6, 8)
        assert out.events[6]["tool"] == "crm.write"
        assert len(first["trace_id"]) == 32 and first["event_id"].startswith(f"otel-{first['trace_id']}-")
        assert len({e["event_id"] for e in out.events}) == len(out.events)
        again = Translator(fmt, cfg).translate(raw)
        assert [e["event_id"] for e in again.events] == [e["event_id"] for e in out.events]  # stable ids


def test_bad_otlp_input_is_rejected_with_its_reason() -> None:
    good = proto_bytes(make_spans("r", [chat(T0, 100)]))
    assert Translator("otlp_proto").translate(good[: len(good) // 2]).rejection.reason == "not_otlp"  # type: ignore[union-attr]
    assert Translator("otlp_json").translate(b"{nope").rejection.reason == "not_json"  # type: ignore[union-attr]
    cfg = InputConfig.model_validate({"otlp": {"route_attribute": "app.route"}})
    no_route = Translator("otlp_proto", cfg).translate(good)
    assert [r.reason for r in no_route.rejected] == ["missing_field"] and "app.route" in no_route.rejected[0].detail
    absurd = Translator("otlp_proto").translate(
        proto_bytes(make_spans("r", [chat(T0, 100, **{"gen_ai.usage.input_tokens": 10**12})])))
    assert [r.reason for r in absurd.rejected] == ["invalid_field"] and absurd.events == []


def traffic(minutes: int, bad_from: int, seed: int = 5) -> list[Any]:
    """A minute of spans per message: three routes; from ``bad_from`` a third of chat.assistant's calls
    are rate limited by the provider."""
    rng = random.Random(seed)
    out = []
    for m in range(minutes):
        msg = []
        for service, rpm in (("chat.assistant", 30), ("docs.search", 20), ("claims.summary", 8)):
            specs = []
            for _ in range(rpm):
                start = T0 + m * 60 * 10**9 + rng.randrange(55 * 10**9)
                spec = chat(start, rng.lognormvariate(6.5, 0.3), **{"gen_ai.provider.name": "openai"})
                if service == "chat.assistant" and m >= bad_from and rng.random() < 0.35:
                    spec = {**spec, "error": True, "attrs": {**spec["attrs"], "error.type": "429"}}
                specs.append(spec)
            msg.append(make_spans(service, specs))
        out.append([s for group in msg for s in group])
    return out


def delimited(raw: bytes) -> bytes:
    """A varint length, then the message."""
    n, head = len(raw), bytearray()
    while True:
        head.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(head) + raw


def replay(tmp: Path, fmt: str, path: Path) -> list[dict[str, Any]]:
    out = tmp / f"inc-{fmt}.jsonl"
    res = subprocess.run([sys.executable, "-m", "detector.cli", "replay", "--format", fmt, "--events", str(path),
                          "--out", str(out), "--dead-letters", str(tmp / f"dl-{fmt}.jsonl")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "spans: 0 without GenAI attributes ignored, 1 rejected" in res.stderr
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


def test_replay_reads_otlp_files_and_finds_the_injected_incident(tmp_path: Path) -> None:
    minutes = traffic(100, bad_from=80)
    proto = tmp_path / "spans.bin"
    with proto.open("wb") as fh:  # length-delimited, as writeDelimitedTo
        for spans in minutes:
            fh.write(delimited(proto_bytes(spans)))
        # a span with negative tokens: rejected, dead-lettered
        fh.write(delimited(proto_bytes(make_spans("x", [chat(T0, 5, **{"gen_ai.usage.output_tokens": -5})]))))
    lines = tmp_path / "spans.jsonl"
    lines.write_bytes(b"\n".join([json_bytes(s) for s in minutes] + [json_bytes(make_spans(
        "x", [chat(T0, 5, **{"gen_ai.usage.output_tokens": -5})]))]) + b"\n")
    by_proto = replay(tmp_path, "otlp_proto", proto)
    by_json = replay(tmp_path, "otlp_json", lines)
    assert by_proto == by_json
    opened = [(m["route"], m["incident_type"]) for m in by_proto if m["event"] == "opened"]
    assert opened == [("chat.assistant", "performance")]
    inc = next(m for m in by_proto if m["event"] == "opened")
    assert inc["evidence"]["error_classes"].get("rate_limited", 0) > 0
    dead = [json.loads(x) for x in (tmp_path / "dl-otlp_proto.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [d["reason"] for d in dead] == ["invalid_field"]


def test_detector_run_reads_an_otlp_topic(broker: Any) -> None:
    """`detector run` with `[input.formats] "otel.spans" = "otlp_proto"`: the Collector's messages (one per
    minute of spans, key = none) open the injected incident; a truncated message is dead-lettered."""
    from tests.kafka_util import run_format_topic

    messages = [proto_bytes(spans) for spans in traffic(100, bad_from=80)]
    good = messages[0]
    messages.insert(50, good[: len(good) // 3])  # truncated
    published, dead = run_format_topic(broker.bootstrap, "otel.spans", "otlp_proto", messages)
    opened = [(m["route"], m["incident_type"]) for m in published if m["event"] == "opened"]
    assert opened == [("chat.assistant", "performance")]
    assert [dict(m.headers)["detector.reason"] for m in dead] == [b"not_otlp"]
    assert dict(dead[0].headers)["detector.source"] == b"otel.spans/0/50"
