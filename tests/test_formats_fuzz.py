"""The other input formats' decoders never raise, whatever a message holds (SPEC 2c: bad input is rejected
with a reason, never stops the service).

What this protects: arbitrary JSON shaped around OTLP/JSON and LiteLLM payloads (wrong types anywhere,
missing parts, absurd numbers) and arbitrary bytes as OTLP protobuf give events, ignored spans or
rejections, and never an exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.ingest.litellm import LiteLLMTranslator
from detector.ingest.otlp import Translator

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=12)
attr = st.fixed_dictionaries({"key": st.sampled_from(["gen_ai.operation.name", "service.name", "error.type",
                                                       "gen_ai.usage.input_tokens", "x"]),
                              "value": st.one_of(values, st.fixed_dictionaries({"stringValue": values}),
                                                 st.fixed_dictionaries({"intValue": values}))})
span = st.dictionaries(st.sampled_from(["traceId", "spanId", "startTimeUnixNano", "endTimeUnixNano", "status",
                                        "attributes", "name"]),
                       st.one_of(values, st.lists(attr, max_size=3)), max_size=7)
otlp_doc = st.fixed_dictionaries({"resourceSpans": st.one_of(values, st.lists(st.fixed_dictionaries({
    "resource": st.one_of(values, st.fixed_dictionaries({"attributes": st.one_of(values, st.lists(attr))})),
    "scopeSpans": st.one_of(values, st.lists(st.fixed_dictionaries({"spans": st.one_of(values,
                                                                                        st.lists(span))})))}),
    max_size=2))})
litellm_doc = st.dictionaries(st.sampled_from(["id", "model_group", "startTime", "endTime", "prompt_tokens",
                                               "completion_tokens", "response_cost", "status", "error_information",
                                               "metadata", "trace_id", "model"]), values, max_size=12)


@settings(max_examples=300, deadline=None)
@given(otlp_doc)
def test_otlp_json_never_raises(doc: Any) -> None:
    out = Translator("otlp_json").translate(json.dumps(doc).encode())
    assert out.rejection is not None or isinstance(out.events, list)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_otlp_proto_never_raises(raw: bytes) -> None:
    out = Translator("otlp_proto").translate(raw)
    assert out.rejection is not None or isinstance(out.events, list)


@settings(max_examples=300, deadline=None)
@given(st.one_of(litellm_doc, st.lists(litellm_doc, max_size=3), values))
def test_litellm_never_raises(doc: Any) -> None:
    out = LiteLLMTranslator().translate(json.dumps(doc).encode())
    assert out.rejection is not None or isinstance(out.events, list)


@pytest.mark.parametrize("field", ["startTimeUnixNano", "endTimeUnixNano"])
def test_otlp_json_infinite_times_are_rejected_not_raised(field: str) -> None:
    """json.loads accepts ``Infinity``; a span timed at infinity is a bad span, never an exception (CI found it)."""
    raw = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "ab", "%s": Infinity}]}]}]}' % field.encode()
    out = Translator("otlp_json").translate(raw)
    assert out.events == []


def test_otlp_json_infinite_numbers_in_attributes_are_dropped() -> None:
    """An infinite token count or status code is dropped from the span's events; the span still counts."""
    attrs = [{"key": "service.name", "value": {"stringValue": "r"}},
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"doubleValue": float("inf")}},
             {"key": "error.type", "value": {"stringValue": "boom"}},
             {"key": "http.response.status_code", "value": {"doubleValue": float("inf")}}]
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "ab", "spanId": "cd", "startTimeUnixNano": "1767225600000000000",
        "endTimeUnixNano": "1767225601000000000", "attributes": attrs}]}]}]}
    out = Translator("otlp_json").translate(json.dumps(doc).encode())
    by_type = {e["type"]: e for e in out.events}
    assert by_type["usage"]["input_tokens"] == 0
    assert "status_code" not in by_type["error"]


def test_otlp_json_infinite_int_value_is_dropped_not_raised() -> None:
    """``{"intValue": Infinity}`` (json.loads accepts it) is no integer: the attribute is dropped, the span still
    counts (the fuzz test above found it: ``int(inf)`` raised OverflowError out of the translator)."""
    attrs = [{"key": "service.name", "value": {"stringValue": "r"}},
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"intValue": float("inf")}}]
    doc = {"resourceSpans": [{"resource": {"attributes": [{"key": "x", "value": {"intValue": float("-inf")}}]},
                              "scopeSpans": [{"spans": [{
                                  "traceId": "ab", "spanId": "cd", "startTimeUnixNano": "1767225600000000000",
                                  "endTimeUnixNano": "1767225601000000000", "attributes": attrs}]}]}]}
    out = Translator("otlp_json").translate(json.dumps(doc).encode())
    by_type = {e["type"]: e for e in out.events}
    assert by_type["usage"]["input_tokens"] == 0
