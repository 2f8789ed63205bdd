"""Decoding never raises, and every kind of malformed input gets its own reason."""

from __future__ import annotations

import json

import pytest

from detector.ingest.decode import Decoded, Decoder, Rejection
from detector.ingest.dedup import DuplicateFilter

GOOD = {"event_id": "e1", "type": "usage", "ts": "2026-11-27T09:00:00Z", "route": "r"}


def enc(d: object) -> bytes:
    return json.dumps(d).encode()


@pytest.mark.parametrize(
    ("raw", "reason", "path"),
    [
        (b"{not json", "not_json", ""),  # truncated / malformed JSON
        (b"\xff\xfe\x00garbage", "not_json", ""),  # not UTF-8
        (b'{"event_id":"a","type":"usage","ts":1795770000000,"route":"\xff"}', "not_json", ""),  # bad UTF-8 in a string
        (b"[" * 60_000, "not_object", ""),  # nested past any sane depth: no crash
        (b"", "not_json", ""),  # empty message
        (b"[1, 2]", "not_object", ""),  # valid JSON, not an object
        (b'"usage"', "not_object", ""),
        (enc({k: v for k, v in GOOD.items() if k != "event_id"}), "missing_field", "$.event_id"),
        (enc({k: v for k, v in GOOD.items() if k != "type"}), "missing_field", "$.type"),
        (enc({**GOOD, "type": "telepathy"}), "invalid_field", "$.type"),
        (enc({**GOOD, "event_id": ""}), "invalid_field", "$.event_id"),
        (enc({**GOOD, "event_id": "x" * 129}), "invalid_field", "$.event_id"),
        (enc({**GOOD, "route": 42}), "invalid_field", "$.route"),
        (enc({**GOOD, "requests": 0}), "invalid_field", "$.requests"),
        (enc({**GOOD, "requests": 2.5}), "invalid_field", "$.requests"),
        (enc({**GOOD, "input_tokens": -1}), "invalid_field", "$.input_tokens"),
        (enc({**GOOD, "input_tokens": 10**12}), "invalid_field", "$.input_tokens"),  # absurd
        (enc({**GOOD, "type": "latency", "latency_ms": -5}), "invalid_field", "$.latency_ms"),
        (enc({**GOOD, "type": "latency", "latency_ms": 1e12}), "invalid_field", "$.latency_ms"),  # absurd
        (enc({**GOOD, "type": "latency"}), "missing_field", "$.latency_ms"),
        (enc({**GOOD, "type": "cost", "cost_usd": "cheap"}), "invalid_field", "$.cost_usd"),
        (enc({**GOOD, "type": "review", "outcome": "meh"}), "invalid_field", "$.outcome"),
        (enc({**GOOD, "type": "change", "change_kind": "vibes"}), "invalid_field", "$.change_kind"),
        (enc({**GOOD, "model": "m" * 300}), "invalid_field", "$.model"),
        (enc({**GOOD, "ts": "yesterday"}), "bad_timestamp", "$.ts"),
        (enc({**GOOD, "ts": "2026-11-27T09:00:00"}), "bad_timestamp", "$.ts"),  # no offset
        (enc({**GOOD, "ts": True}), "bad_timestamp", "$.ts"),
        (enc({**GOOD, "ts": 1}), "bad_timestamp", "$.ts"),  # 1970: seconds sent as ms
        (enc({**GOOD, "ts": 9e15}), "bad_timestamp", "$.ts"),  # year 287,000
    ],
)
def test_rejection_reasons(raw: bytes, reason: str, path: str) -> None:
    """Each malformed message is rejected with its reason and the bad field's path."""
    res = Decoder().decode(raw)
    assert isinstance(res, Rejection)
    assert res.reason == reason
    assert res.detail.startswith(path)


def test_too_large() -> None:
    """Messages over the size limit are rejected before parsing."""
    raw = enc({**GOOD, "pad": "x" * 70_000})
    res = Decoder(max_bytes=65536).decode(raw)
    assert isinstance(res, Rejection) and res.reason == "too_large"


@pytest.mark.parametrize("value", ["secret-canary-text", "it's a secret-canary-text", 'say "secret-canary-text"'])
@pytest.mark.parametrize("field", ["outcome", "type", "change_kind"])
def test_rejection_detail_holds_no_values(field: str, value: str) -> None:
    """A rejection's detail names the field but never echoes the (possibly private) value, quoted or not."""
    res = Decoder().decode(enc({**GOOD, "type": "review", field: value}))
    assert isinstance(res, Rejection)
    assert "secret-canary-text" not in res.detail


def test_valid_forms() -> None:
    """Both timestamp forms decode; unknown error classes read as `other`; unknown fields are ignored."""
    d = Decoder()
    a = d.decode(enc({**GOOD, "ts": 1795770000000, "surprise": {"nested": [1]}}))
    b = d.decode(enc({**GOOD, "type": "error", "error_class": "cosmic_ray"}))
    assert isinstance(a, Decoded) and a.ts_ms == 1795770000000
    assert isinstance(b, Decoded) and b.event.error_class == "other"  # type: ignore[union-attr]


def test_dedup_bounded() -> None:
    """The duplicate filter never holds more than its capacity, and remembers recent ids."""
    f = DuplicateFilter(capacity=100)
    for i in range(10_000):
        assert not f.seen(f"id{i}")
        assert len(f) <= 100
    assert f.seen("id9999") and f.seen("id9960")
    assert not f.seen("id0")
